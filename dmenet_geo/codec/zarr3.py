"""``DMENetZarrCodec``: DMENet as a Zarr v3 array-to-bytes codec (a ``serializer``) named ``dmenet``.

Its configuration is the numcodecs codec's (``quality``, ``nodata``, ``model``, ``weights_sha256``,
``value_range``, ``refine``). Arrays are (bands, y, x) or (y, x). Zarr hands the codec a batch of chunks at a
time (``codec_pipeline.batch_size``); the batch goes through the model together, in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import JSON, parse_named_configuration

from dmenet_geo.codec.bitstream import DTYPES, MAX_BANDS, MAX_SIDE, DMENetCodecError
from dmenet_geo.codec.numcodecs import DMENetCodec

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.dtype.wrapper import TBaseDType, TBaseScalar, ZDType

__all__ = ["DMENetZarrCodec"]


@dataclass(frozen=True)
class DMENetZarrCodec(ArrayBytesCodec):
    """Zarr v3 serializer wrapping :class:`DMENetCodec`."""

    is_fixed_size = False
    inner: DMENetCodec

    def __init__(self, **configuration: Any) -> None:
        object.__setattr__(self, "inner", DMENetCodec(**configuration))

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(data, "dmenet", require_configuration=False)
        return cls(**(configuration or {}))

    def to_dict(self) -> dict[str, JSON]:
        config = self.inner.get_config()
        config.pop("id")
        return {"name": "dmenet", "configuration": config}

    def validate(
        self, *, shape: tuple[int, ...], dtype: ZDType[TBaseDType, TBaseScalar], chunk_grid: ChunkGrid
    ) -> None:
        native = np.dtype(dtype.to_native_dtype())
        if native.name not in DTYPES:
            raise DMENetCodecError(f"dmenet supports dtypes {', '.join(DTYPES)}, not {native.name}")
        if len(shape) not in (2, 3):
            raise DMENetCodecError(f"dmenet arrays are (bands, y, x) or (y, x), got {len(shape)} dimensions")
        chunk_shape = getattr(chunk_grid, "chunk_shape", None)
        if chunk_shape is not None:
            *bands, h, w = chunk_shape
            if bands and not 1 <= bands[0] <= MAX_BANDS:
                raise DMENetCodecError(f"dmenet chunks hold 1..{MAX_BANDS} bands, got {bands[0]}")
            if not (h <= MAX_SIDE and w <= MAX_SIDE):
                raise DMENetCodecError(f"dmenet chunks are at most {MAX_SIDE}x{MAX_SIDE}")

    async def decode(
        self, chunks_and_specs: Iterable[tuple[Buffer | None, ArraySpec]]
    ) -> Iterable[NDBuffer | None]:
        items = list(chunks_and_specs)
        present = [(i, buf, spec) for i, (buf, spec) in enumerate(items) if buf is not None]
        arrays = await asyncio.to_thread(
            self.inner.decode_batch, [buf.as_numpy_array() for _, buf, _ in present]
        )
        out: list[NDBuffer | None] = [None] * len(items)
        for (i, _, spec), arr in zip(present, arrays, strict=False):
            native = arr.astype(spec.dtype.to_native_dtype(), copy=False).reshape(spec.shape)
            out[i] = spec.prototype.nd_buffer.from_ndarray_like(native)
        return out

    async def encode(
        self, chunks_and_specs: Iterable[tuple[NDBuffer | None, ArraySpec]]
    ) -> Iterable[Buffer | None]:
        items = list(chunks_and_specs)
        present = [(i, arr, spec) for i, (arr, spec) in enumerate(items) if arr is not None]
        encoded = await asyncio.to_thread(
            self.inner.encode_batch, [np.asarray(arr.as_numpy_array()) for _, arr, _ in present]
        )
        out: list[Buffer | None] = [None] * len(items)
        for (i, _, spec), data in zip(present, encoded, strict=False):
            out[i] = spec.prototype.buffer.from_bytes(data)
        return out

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        (result,) = await self.decode([(chunk_bytes, chunk_spec)])
        assert result is not None
        return result

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        (result,) = await self.encode([(chunk_array, chunk_spec)])
        return result

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("dmenet chunks have a variable size")
