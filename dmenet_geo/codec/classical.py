"""A classical baseline in the same chunk layout: JPEG 2000 (OpenJPEG through imagecodecs).

``Jpeg2kCodec`` (numcodecs id ``dmenet_geo.jpeg2k``) codes a ``(bands, height, width)`` chunk as one
planar JPEG 2000 codestream (the colour transform applies to the first three bands), and
``Jpeg2kZarrCodec`` is the same codec as a Zarr v3 array-to-bytes codec (a ``serializer``) named
``dmenet_geo.jpeg2k``. Both are registered by :func:`dmenet_geo.codec.register_codecs` and through
entry points, so stores written with them open in any process that has dmenet_geo installed.

Config: ``level``, the PSNR (dB) OpenJPEG aims at (its fixed-quality mode; ``0`` or ``None``:
lossless, reversible 5/3 wavelet), and ``reversible`` (force the reversible wavelet, or null for
OpenJPEG's choice). Dtypes: uint8, uint16, int16 (JPEG 2000 codes integers only). Nodata pixels are
coded like any other pixel (exact only when lossless).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import JSON, parse_named_configuration

from dmenet_geo.codec.bitstream import MAX_BANDS, DMENetCodecError

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.dtype.wrapper import TBaseDType, TBaseScalar, ZDType

__all__ = ["JPEG2K_ID", "JPEG2K_DTYPES", "Jpeg2kCodec", "Jpeg2kZarrCodec"]

JPEG2K_ID = "dmenet_geo.jpeg2k"
JPEG2K_DTYPES = ("uint8", "uint16", "int16")


class Jpeg2kCodec(Codec):
    """JPEG 2000 for (bands, height, width) chunks; ``level`` is a PSNR target in dB (0: lossless)."""

    codec_id = JPEG2K_ID

    def __init__(self, level: float | None = 40.0, reversible: bool | None = None) -> None:
        if level is not None:
            if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
                raise DMENetCodecError(f"level must be a PSNR in dB (a number) or null, got {level!r}")
            level = float(level)
            if not math.isfinite(level) or level < 0:
                raise DMENetCodecError(f"level must be a finite PSNR >= 0 dB, got {level!r}")
        if reversible is not None and not isinstance(reversible, bool):
            raise DMENetCodecError(f"reversible must be true, false or null, got {reversible!r}")
        self.level = level
        self.reversible = reversible

    @staticmethod
    def _check(arr: np.ndarray) -> np.ndarray:
        if arr.dtype == object:
            raise TypeError("JPEG 2000 cannot encode object arrays")
        if arr.dtype.name not in JPEG2K_DTYPES:
            raise DMENetCodecError(
                f"JPEG 2000 codes {', '.join(JPEG2K_DTYPES)} chunks, not {arr.dtype.name}"
            )
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[0] <= MAX_BANDS):
            raise DMENetCodecError(f"expected a (bands, height, width) or (height, width) chunk, "
                                   f"got {arr.shape}")
        return np.ascontiguousarray(arr)

    def encode(self, buf: Any) -> bytes:
        import imagecodecs

        arr = self._check(np.asarray(buf))
        level = None if not self.level else self.level  # OpenJPEG takes a float PSNR (typed int)
        return bytes(imagecodecs.jpeg2k_encode(arr, level=level, planar=arr.ndim == 3,  # type: ignore[arg-type]
                                               reversible=self.reversible, numthreads=1))

    def decode(self, buf: Any, out: Any = None) -> Any:
        import imagecodecs

        data = ensure_contiguous_ndarray(buf).view(np.uint8).tobytes()
        arr = imagecodecs.jpeg2k_decode(data, planar=True, numthreads=1)
        if out is None:
            return arr
        return ndarray_copy(arr, out)

    # the same batch API as DMENetCodec (the write pipeline calls these)
    def encode_batch(self, arrays: Sequence[Any]) -> list[bytes]:
        return [self.encode(a) for a in arrays]

    def decode_batch(self, buffers: Sequence[Any]) -> list[np.ndarray]:
        """Each chunk as (bands, height, width), like ``DMENetCodec.decode_batch``."""
        out = [self.decode(b) for b in buffers]
        return [a if a.ndim == 3 else a.reshape(1, *a.shape[-2:]) for a in out]


@dataclass(frozen=True)
class Jpeg2kZarrCodec(ArrayBytesCodec):
    """Zarr v3 serializer wrapping :class:`Jpeg2kCodec` (arrays are (bands, y, x) or (y, x))."""

    is_fixed_size = False
    inner: Jpeg2kCodec

    def __init__(self, **configuration: Any) -> None:
        object.__setattr__(self, "inner", Jpeg2kCodec(**configuration))

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(data, JPEG2K_ID, require_configuration=False)
        return cls(**(configuration or {}))

    def to_dict(self) -> dict[str, JSON]:
        config = self.inner.get_config()
        config.pop("id")
        return {"name": JPEG2K_ID, "configuration": config}

    def validate(self, *, shape: tuple[int, ...], dtype: ZDType[TBaseDType, TBaseScalar],
                 chunk_grid: ChunkGrid) -> None:
        native = np.dtype(dtype.to_native_dtype())
        if native.name not in JPEG2K_DTYPES:
            raise DMENetCodecError(f"{JPEG2K_ID} supports dtypes {', '.join(JPEG2K_DTYPES)}, "
                                   f"not {native.name}")
        if len(shape) not in (2, 3):
            raise DMENetCodecError(f"{JPEG2K_ID} arrays are (bands, y, x) or (y, x), "
                                   f"got {len(shape)} dimensions")

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        arr = await asyncio.to_thread(self.inner.decode, chunk_bytes.as_numpy_array())
        native = arr.astype(chunk_spec.dtype.to_native_dtype(), copy=False).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(native)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        data = await asyncio.to_thread(self.inner.encode, np.asarray(chunk_array.as_numpy_array()))
        return chunk_spec.prototype.buffer.from_bytes(data)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("JPEG 2000 chunks have a variable size")
