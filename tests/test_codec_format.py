"""The chunk container's layout: format 2's compact header, its range encodings, reading format 1.

The format-1 writer below is an independent re-statement of the old layout, so chunks written by
earlier versions of the package keep decoding.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from codec_helpers import chunk_regions, raster, read_varint, reseal

from dmenet_geo.codec import DMENetCodec, DMENetCodecError
from dmenet_geo.codec.bitstream import Chunk, pack_chunk, unpack_chunk

FIXED_OVERHEAD = 27  # header 19, digest 4, CRC 4: a 3-band uint8 chunk's bytes besides its strings


def _payload(data: bytes) -> int:
    return sum(r.stop - r.start for r in chunk_regions(data) if r.name.endswith((".z", ".y")))


@pytest.mark.parametrize("side,most", [(16, 29), (256, 31)], ids=["16px", "256px"])
def test_rgb_uint8_overhead(side: int, most: int) -> None:
    """27 fixed bytes plus the two string lengths as varints (one byte each below 128)."""
    data = DMENetCodec(quality=1).encode(raster(3, side, side, "uint8", seed=3))
    chunk = unpack_chunk(data)
    varints = sum(1 + (n.bit_length() - 1) // 7 for g in chunk.groups for n in (len(g.z), len(g.y)))
    assert len(data) - _payload(data) == FIXED_OVERHEAD + varints <= most


CASES = {  # codec, dtype, expected range mode (flags bits 2-3)
    "uint8-implied": (DMENetCodec(), "uint8", 0),
    "uint16-int32": (DMENetCodec(), "uint16", 1),
    "int16-int32": (DMENetCodec(), "int16", 1),
    "float32-f32": (DMENetCodec(), "float32", 2),
    "value-range-f64": (DMENetCodec(value_range=[[0.1, 300.7]]), "uint16", 3),
    "value-range-int": (DMENetCodec(value_range=[[0, 4095]]), "uint16", 1),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_range_encoding_is_the_smallest_exact_one(name: str) -> None:
    codec, dtype, mode = CASES[name]
    arr = raster(2, 20, 24, dtype, seed=5)
    data = codec.encode(arr)
    assert data[5] >> 2 & 3 == mode
    ranges = unpack_chunk(data).header.ranges
    if codec.value_range:
        assert ranges == tuple(tuple(p) for p in codec.value_range) * 2
    elif dtype == "uint8":
        assert ranges == ((0.0, 255.0),) * 2
    else:
        valid = arr.astype(np.float64)
        assert ranges == tuple((float(b.min()), float(b.max())) for b in valid)


def test_quality_is_coded_at_its_float32_value() -> None:
    arr = raster(3, 32, 32, "uint8", seed=7)
    codec = DMENetCodec(quality=4.3)
    data = codec.encode(arr)
    assert unpack_chunk(data).header.quality == float(np.float32(4.3))
    same = DMENetCodec(quality=float(np.float32(4.3))).encode(arr)
    assert same == data
    assert codec.decode(data).shape == (3, 32, 32)


def test_pack_refuses_a_quality_that_is_not_float32() -> None:
    chunk = unpack_chunk(DMENetCodec().encode(raster(3, 8, 8, "uint8")))
    header = chunk.header.__class__(**{**chunk.header.__dict__, "quality": 4.3})
    with pytest.raises(DMENetCodecError, match="float32"):
        pack_chunk(Chunk(header, chunk.groups, chunk.mask, chunk.nan_mask))


LENGTH_FORGERIES = {
    "overlong": lambda n: bytes([n | 0x80, 0]),  # the same value with a superfluous zero byte
    "six-bytes": lambda n: b"\xff" * 5 + b"\x01",
}


@pytest.mark.parametrize("name", list(LENGTH_FORGERIES), ids=list(LENGTH_FORGERIES))
def test_non_canonical_lengths_are_refused(name: str) -> None:
    data = DMENetCodec().encode(raster(3, 16, 16, "uint8", seed=2))
    lengths = next(r for r in chunk_regions(data) if r.name == "group0.lengths")
    len_z, after_z = read_varint(data, lengths.start + 4)
    assert len_z < 128, "test assumes a one-byte z length"
    forged = data[: lengths.start + 4] + LENGTH_FORGERIES[name](len_z) + data[after_z:]
    with pytest.raises(DMENetCodecError, match="shortest form|longer than"):
        unpack_chunk(reseal(forged))


def _write_v1(chunk: Chunk, sha: bytes) -> bytes:
    """Format 1, as the first version of the package wrote it."""
    h = chunk.header
    flags = (1 if chunk.mask is not None else 0) | (2 if chunk.nan_mask is not None else 0)
    dtype = ("uint8", "uint16", "int16", "float32").index(h.dtype)
    parts = [struct.pack("<4sBBBBHHd8sHH", b"DMNT", 1, flags, dtype, h.bands, h.height, h.width,
                         h.quality, sha[:8], *h.z_shape)]
    parts += [struct.pack("<dd", lo, hi) for lo, hi in h.ranges]
    for g in chunk.groups:
        parts += [struct.pack("<III", g.digest, len(g.z), len(g.y)), g.z, g.y]
    for mask in (chunk.mask, chunk.nan_mask):
        if mask is not None:
            packed = zlib.compress(np.packbits(mask, axis=None).tobytes())
            parts += [struct.pack("<I", len(packed)), packed]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    "dtype,bands,nodata", [("uint8", 3, None), ("int16", 4, -32768.0), ("float32", 1, None)],
    ids=["uint8-rgb", "int16-4band-nodata", "float32-nan"],
)
def test_format_1_chunks_still_decode(dtype: str, bands: int, nodata: float | None) -> None:
    arr = raster(bands, 24, 40, dtype, seed=11)
    if nodata is not None:
        arr[:, :4, :6] = nodata
    if dtype == "float32":
        arr[0, 3, 3] = np.nan
    codec = DMENetCodec(nodata=nodata, quality=3)
    v2 = codec.encode(arr)
    v1 = _write_v1(unpack_chunk(v2), bytes.fromhex(codec.weights_sha256))
    assert v1[4] == 1 and len(v1) > len(v2)
    assert unpack_chunk(v1).header.model_id == bytes.fromhex(codec.weights_sha256)[:8]
    np.testing.assert_array_equal(codec.decode(v1), codec.decode(v2))
