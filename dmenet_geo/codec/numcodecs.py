"""``DMENetCodec``: the numcodecs codec (id ``dmenet``) for (bands, height, width) chunks.

Config (all JSON): ``quality`` (float in [1, levels]; integers are the trained operating points),
``nodata`` (restored exactly, or null), ``model`` (a shipped model name), ``weights_sha256`` (the
SHA-256 the weights must have; defaults to the shipped model's; a store written before ``model``
was retrained or renamed names the earlier weights, which the package keeps shipping and finds by
this SHA-256), ``value_range`` (null, or
``[[lo, hi], ...]`` one pair per band or a single pair for all bands: a fixed scaling for non-uint8
data instead of each chunk's own minimum and maximum), ``refine`` (0 to 1000 gradient steps that
optimise each chunk's latent before coding: about 0.12 s per step and 3x256x256 group on one CPU
core; fewer bits at the same quality, any decoder reads the result; 0, the default, turns it off).

The torch model is loaded on the first encode or decode, not when the codec is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy

from dmenet_geo.codec.bitstream import DMENetCodecError, model_id_for, pack_chunk, unpack_chunk
from dmenet_geo.codec.engine import decode_chunks, encode_arrays

__all__ = ["DMENetCodec"]

MAX_REFINE = 1000  # = dmenet_geo.model.refine.MAX_REFINE_STEPS, repeated so this module needs no torch


def _shipped(model: str) -> tuple[str, int]:
    """SHA-256 and number of quality levels of a shipped model, from its JSON sidecar (no torch)."""
    from dmenet_geo.weights import WEIGHTS_DIR, read_sidecar, shipped_names

    sidecar = WEIGHTS_DIR / f"{model}.json"
    if not sidecar.exists():
        raise DMENetCodecError(f"unknown model {model!r}; shipped: {', '.join(shipped_names())}")
    meta = read_sidecar(sidecar)
    return str(meta["sha256"]), len(meta["config"]["lambdas"])


def _weights_named(model: str, sha256: str) -> str | None:
    """The shipped weights with this SHA-256: ``model`` itself, or, for chunks written before
    ``model`` was retrained or renamed, the weights the package still ships under another name."""
    from dmenet_geo.weights import WEIGHTS_DIR, read_sidecar, weights_path

    for sidecar in (WEIGHTS_DIR / f"{model}.json", *sorted(WEIGHTS_DIR.glob("*.json"))):
        shipped = sidecar.exists() and weights_path(sidecar).exists()
        if shipped and read_sidecar(sidecar).get("sha256") == sha256:
            return sidecar.stem
    return None


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DMENetCodecError(f"{name} must be a number, got {value!r}")
    return float(value)


class DMENetCodec(Codec):
    """Learned lossy compression of raster chunks with the DMENet model."""

    codec_id = "dmenet"

    def __init__(
        self,
        quality: float = 4.0,
        nodata: float | None = None,
        model: str = "default",
        weights_sha256: str | None = None,
        value_range: Sequence[Sequence[float]] | None = None,
        refine: int = 0,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise DMENetCodecError("model must be a non-empty model name")
        if nodata is not None:
            nodata = _check_number("nodata", nodata)
            if nodata.is_integer() and not math.isnan(nodata):
                nodata = float(nodata)
        if weights_sha256 is not None:
            if not isinstance(weights_sha256, str) or len(weights_sha256) != 64:
                raise DMENetCodecError("weights_sha256 must be a 64-character hex SHA-256")
            try:
                bytes.fromhex(weights_sha256)
            except ValueError:
                raise DMENetCodecError("weights_sha256 must be hexadecimal") from None
            weights_sha256 = weights_sha256.lower()
        # the shipped weights with that SHA-256 (``model``'s own, earlier ones, or ``model`` renamed)
        # give the quality levels; without any, ``model`` must be shipped
        found = _weights_named(model, weights_sha256) if weights_sha256 else None
        shipped_sha, levels = _shipped(found or model)
        weights_sha256 = weights_sha256 or shipped_sha
        q = _check_number("quality", quality)
        if not 1.0 <= q <= levels:
            raise DMENetCodecError(f"quality must be in [1, {levels}], got {quality!r}")
        ranges = None
        if value_range is not None:
            try:
                ranges = [[float(lo), float(hi)] for lo, hi in value_range]
            except (TypeError, ValueError):
                raise DMENetCodecError("value_range must be a list of [lo, hi] pairs") from None
            if not ranges or any(not hi > lo for lo, hi in ranges):
                raise DMENetCodecError("value_range pairs need hi > lo")
        integer = isinstance(refine, (int, np.integer)) and not isinstance(refine, bool)
        if not integer or not 0 <= refine <= MAX_REFINE:
            raise DMENetCodecError(f"refine must be an integer in 0..{MAX_REFINE}, got {refine!r}")
        self.quality = q
        self.nodata = nodata
        self.model = model
        self.weights_sha256 = weights_sha256
        self.value_range = ranges
        self.refine = int(refine)

    def get_config(self) -> dict[str, Any]:
        """The JSON config; ``refine`` only when on (an encoder setting: stores written without it keep
        the config earlier versions of this package read)."""
        config = super().get_config()
        if not self.refine:
            config.pop("refine")
        return config

    # ---------------------------------------------------------------- helpers
    @property
    def _model_id(self) -> bytes:
        return model_id_for(self.weights_sha256)

    def _weights(self) -> str:
        """The shipped weights' name to load: ``model``'s, or the earlier weights with this SHA-256."""
        name = _weights_named(self.model, self.weights_sha256)
        if name is None:
            shipped, _ = _shipped(self.model)
            raise DMENetCodecError(
                f"these chunks need model {self.model!r} with weights SHA-256 {self.weights_sha256[:16]}..., "
                f"but the installed weights are {shipped[:16]}...; install the dmenet_geo version that "
                "wrote them"
            )
        return name

    def _ranges(self, bands: int) -> tuple[tuple[float, float], ...] | None:
        if self.value_range is None:
            return None
        if len(self.value_range) not in (1, bands):
            raise DMENetCodecError(f"value_range has {len(self.value_range)} pairs for {bands} bands")
        return tuple((lo, hi) for lo, hi in self.value_range)

    @staticmethod
    def _to_array(buf: Any) -> np.ndarray:
        if isinstance(buf, np.ndarray):
            if buf.dtype == object:
                raise TypeError("DMENet cannot encode object arrays")
            return np.ascontiguousarray(buf)
        return ensure_contiguous_ndarray(buf).view(np.uint8).reshape(-1)

    # ------------------------------------------------------------------- API
    def encode_batch(self, arrays: Sequence[Any]) -> list[bytes]:
        """Encode several chunks at once (batched on the model's device)."""
        weights = self._weights()
        arrs = [self._to_array(a) for a in arrays]
        bands = [1 if a.ndim < 3 else a.shape[0] for a in arrs]
        if self.value_range is not None:
            for b in bands:
                self._ranges(b)
        chunks = encode_arrays(
            arrs,
            quality=self.quality,
            nodata=self.nodata,
            value_range=self._ranges(max(bands)) if self.value_range else None,
            model_name=weights,
            model_id=self._model_id,
            refine=self.refine,
        )
        return [pack_chunk(c) for c in chunks]

    def decode_batch(self, buffers: Sequence[Any]) -> list[np.ndarray]:
        """Decode several chunks at once; each comes back as (bands, height, width)."""
        chunks = []
        for buf in buffers:
            if isinstance(buf, np.ndarray) and buf.dtype == object:
                raise TypeError("cannot decode an object array")
            data = ensure_contiguous_ndarray(buf).view(np.uint8).tobytes()
            chunk = unpack_chunk(data)
            if not bytes.fromhex(self.weights_sha256).startswith(chunk.header.model_id):
                raise DMENetCodecError(
                    f"chunk was encoded with weights {chunk.header.model_id.hex()}..., this codec uses "
                    f"{self.weights_sha256[:16]}..."
                )
            chunks.append(chunk)
        return decode_chunks(chunks, model_name=self._weights(), nodata=self.nodata)

    def encode(self, buf: Any) -> bytes:
        return self.encode_batch([buf])[0]

    def decode(self, buf: Any, out: Any = None) -> Any:
        if out is not None and isinstance(out, np.ndarray) and out.dtype == object:
            raise TypeError("cannot decode into an object array")
        arr = self.decode_batch([buf])[0]
        if out is None:
            return arr
        return ndarray_copy(arr, out)
