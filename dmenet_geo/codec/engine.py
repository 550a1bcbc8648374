"""Arrays <-> DMENet chunks: value scaling, band grouping, nodata, and batched model calls.

Bands are coded in groups of three (the model is an RGB model): bands 0-2, 3-5, ...; a last group
with fewer than three bands repeats its last band, so a single band is coded as a grey image.

Scaling: uint8 is coded as ``v / 255``. Other dtypes are mapped per band to ``(v - lo) / (hi - lo)``
with ``lo, hi`` the band's valid minimum and maximum in the chunk (or the codec's ``value_range``),
stored in the chunk header. Reconstruction errors therefore scale with ``(hi - lo)``: an error of
``e`` in the model's [0, 1] range is ``e * (hi - lo)`` in data units (rounded for integer dtypes).

Nodata: pixels equal to ``nodata`` (compared in the chunk's dtype) and, in float32 chunks, NaN
pixels are recorded in two lossless masks, replaced by the band's valid mean before coding, and
restored exactly on decode; a valid pixel that
would decode to the nodata value is moved one step (one integer, or one float ulp) towards the band's
range, so no other pixel decodes to nodata.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from dmenet_geo.codec.bitstream import (
    DTYPES,
    MAX_BANDS,
    MAX_SIDE,
    Chunk,
    ChunkHeader,
    DMENetCodecError,
    GroupPayload,
)

__all__ = ["Runtime", "runtime", "set_runtime", "encode_arrays", "decode_chunks", "prepare"]


@dataclass
class Runtime:
    """Where and how chunks run: not part of any codec config (stores stay device-independent)."""

    device: str | None = None  # None: CUDA when available, else CPU
    batch_size: int = 16

    def resolved_device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


runtime = Runtime(device=os.environ.get("DMENET_DEVICE") or None)


def set_runtime(device: str | None = None, batch_size: int | None = None) -> Runtime:
    """Choose the device (``"cpu"``, ``"cuda"``, ``"cuda:1"``) and the model batch size."""
    if device is not None:
        runtime.device = device
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        runtime.batch_size = batch_size
    return runtime


@dataclass
class Prepared:
    """One chunk ready for the model: its header fields and its 3-band groups in [0, 1]."""

    dtype: str
    shape: tuple[int, int, int]
    ranges: tuple[tuple[float, float], ...]
    groups: list[np.ndarray]  # each (3, H, W) float32
    mask: np.ndarray | None
    nan_mask: np.ndarray | None


def _as_chunk_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == object:
        raise TypeError("DMENet cannot encode object arrays")
    if arr.ndim == 1:
        arr = arr.reshape(1, 1, -1)
    elif arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise DMENetCodecError(f"expected a (bands, height, width) array, got shape {arr.shape}")
    if arr.dtype.name not in DTYPES:
        raise DMENetCodecError(f"unsupported dtype {arr.dtype.name}; supported: {', '.join(DTYPES)}")
    b, h, w = arr.shape
    if not 1 <= b <= MAX_BANDS:
        raise DMENetCodecError(f"{b} bands: DMENet chunks hold 1..{MAX_BANDS} bands")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise DMENetCodecError(f"chunk of {h}x{w} pixels: height and width must be in 1..{MAX_SIDE}")
    return arr


def prepare(
    arr: np.ndarray,
    nodata: float | None,
    value_range: tuple[tuple[float, float], ...] | None,
) -> Prepared:
    arr = _as_chunk_array(np.asarray(arr))
    b, h, w = arr.shape
    data = arr.astype(np.float64)
    nodata_mask = np.zeros(arr.shape, dtype=bool)
    nan_mask = np.zeros(arr.shape, dtype=bool)
    if arr.dtype == np.float32:
        nan_mask = np.isnan(data)
        if np.isinf(data).any():
            raise DMENetCodecError("float32 chunks must not hold infinities")
    if nodata is not None and not math.isnan(nodata):
        nodata_mask = arr == _in_dtype(nodata, arr.dtype)
    mask = nodata_mask | nan_mask
    ranges = []
    groups_in = np.empty((b, h, w), dtype=np.float32)
    for i in range(b):
        valid = data[i][~mask[i]]
        if arr.dtype == np.uint8 and value_range is None:
            lo, hi = 0.0, 255.0
        elif value_range is not None:
            lo, hi = value_range[i] if len(value_range) > 1 else value_range[0]
        else:
            lo, hi = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
        ranges.append((float(lo), float(hi)))
        span = hi - lo
        band = np.clip((data[i] - lo) / span, 0.0, 1.0) if span > 0 else np.zeros((h, w))
        if mask[i].any():
            fill = float(band[~mask[i]].mean()) if (~mask[i]).any() else 0.0
            band = np.where(mask[i], fill, band)
        groups_in[i] = band
    groups = []
    for start in range(0, b, 3):
        idx = [min(start + k, b - 1) for k in range(3)]
        groups.append(groups_in[idx])
    return Prepared(
        arr.dtype.name,
        (b, h, w),
        tuple(ranges),
        groups,
        nodata_mask if nodata_mask.any() else None,
        nan_mask if nan_mask.any() else None,
    )


def _in_dtype(value: float, dtype: np.dtype) -> float | np.floating:
    """``value`` as the chunk's dtype stores it (float32 nodata like 0.1 is not 0.1 in float64)."""
    if dtype.kind == "f":
        return np.float32(value)
    return value


def _model(name: str):  # type: ignore[no-untyped-def]
    from dmenet_geo.model.zoo import get_model

    return get_model(name, runtime.resolved_device())


def encode_arrays(
    arrays: list[np.ndarray],
    *,
    quality: float,
    nodata: float | None,
    value_range: tuple[tuple[float, float], ...] | None,
    model_name: str,
    model_id: bytes,
    refine: int = 0,
) -> list[Chunk]:
    """Encode chunks; groups of equal size are batched through the model. ``refine`` > 0 spends
    that many optimisation steps on each group's latent (:mod:`dmenet_geo.model.refine`)."""
    import torch

    quality = float(np.float32(quality))  # the chunk header stores quality as f32: code at that value
    prepared = [prepare(a, nodata, value_range) for a in arrays]
    model = _model(model_name)
    by_size: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for ci, p in enumerate(prepared):
        for gi in range(len(p.groups)):
            by_size[p.shape[1:]].append((ci, gi))
    payloads: dict[tuple[int, int], GroupPayload] = {}
    z_shapes: dict[int, tuple[int, int]] = {}
    for items in by_size.values():
        for start in range(0, len(items), runtime.batch_size):
            batch = items[start : start + runtime.batch_size]
            x = torch.from_numpy(np.stack([prepared[ci].groups[gi] for ci, gi in batch]))
            latents = model.compress(x, quality, refine_steps=refine)
            for k, (ci, gi) in enumerate(batch):
                payloads[(ci, gi)] = GroupPayload(
                    latents.digests[k], latents.z_strings[k], latents.y_strings[k]
                )
                z_shapes[ci] = latents.z_shape
    chunks = []
    for ci, p in enumerate(prepared):
        header = ChunkHeader(
            p.dtype, p.shape[0], p.shape[1], p.shape[2], quality, model_id, z_shapes[ci], p.ranges
        )
        groups = tuple(payloads[(ci, gi)] for gi in range(len(p.groups)))
        chunks.append(Chunk(header, groups, p.mask, p.nan_mask))
    return chunks


def _restore(chunk: Chunk, groups: list[np.ndarray], nodata: float | None) -> np.ndarray:
    h = chunk.header
    x = np.concatenate(groups, axis=0)[: h.bands].astype(np.float64)
    dtype = np.dtype(h.dtype)
    out = np.empty((h.bands, h.height, h.width), dtype=dtype)
    for i, (lo, hi) in enumerate(h.ranges):
        v = lo + x[i] * (hi - lo)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            out[i] = np.clip(np.rint(v), info.min, info.max)
        else:
            out[i] = v
    if chunk.nan_mask is not None:
        out[chunk.nan_mask] = np.nan
    if nodata is None or math.isnan(nodata):
        if chunk.mask is not None:
            out[chunk.mask] = np.nan
        return out
    fill = _in_dtype(nodata, dtype)
    for i, (lo, hi) in enumerate(h.ranges):
        band = out[i]
        clash = band == fill
        if chunk.mask is not None:
            clash &= ~chunk.mask[i]
        if clash.any():
            toward = (lo + hi) / 2
            if dtype.kind in "iu":
                band[clash] = fill + (1 if toward >= fill else -1)
            else:
                band[clash] = np.nextafter(np.float32(fill), np.float32(toward))
        if chunk.mask is not None:
            band[chunk.mask[i]] = fill
    return out


def decode_chunks(chunks: list[Chunk], *, model_name: str, nodata: float | None) -> list[np.ndarray]:
    """Decode parsed chunks (batched by size); raises if any latent digest does not match."""
    from dmenet_geo.model.dmenet import CompressedLatents

    model = _model(model_name)
    by_size: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for ci, c in enumerate(chunks):
        for gi in range(len(c.groups)):
            by_size[(c.header.height, c.header.width)].append((ci, gi))
    decoded: dict[tuple[int, int], np.ndarray] = {}
    for (hh, ww), items in by_size.items():
        for start in range(0, len(items), runtime.batch_size):
            batch = items[start : start + runtime.batch_size]
            groups = [chunks[ci].groups[gi] for ci, gi in batch]
            latents = CompressedLatents(
                y_strings=[g.y for g in groups],
                z_strings=[g.z for g in groups],
                z_shape=chunks[batch[0][0]].header.z_shape,
                image_shape=(hh, ww),
                qualities=[chunks[ci].header.quality for ci, _ in batch],
                digests=[g.digest for g in groups],
            )
            try:
                x_hat, digests = model.decompress(latents)
            except (ValueError, RuntimeError) as exc:
                raise DMENetCodecError(f"entropy decoding failed: {exc}") from None
            for k, (ci, gi) in enumerate(batch):
                if digests[k] != groups[k].digest:
                    raise DMENetCodecError(
                        "decoded latents do not match the encoder's (digest mismatch): the chunk was "
                        "written with different weights or arithmetic; refusing to return wrong pixels"
                    )
                decoded[(ci, gi)] = x_hat[k].numpy()
    return [
        _restore(c, [decoded[(ci, gi)] for gi in range(len(c.groups))], nodata) for ci, c in enumerate(chunks)
    ]
