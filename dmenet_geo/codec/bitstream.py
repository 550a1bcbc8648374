"""The DMENet chunk container (format 1). Pure Python and NumPy: no torch.

Layout, little-endian::

    magic      4s   b"DMNT"
    version    u8   format version (1)
    flags      u8   bit 0: a nodata mask follows the groups; bit 1: a NaN mask follows that
    dtype      u8   0 uint8, 1 uint16, 2 int16, 3 float32
    bands      u8   1..16
    height     u16  1..4096
    width      u16  1..4096
    quality    f64  the quality the chunk was encoded at
    model_id   8s   first 8 bytes of the weights' SHA-256
    z_h, z_w   u16  hyper-latent height and width
    per band:  lo f64, hi f64   (value = lo + x * (hi - lo), x in [0, 1] is what the model codes)
    per group of 3 bands (ceil(bands / 3) groups):
               digest u32 (CRC32 of the integer latents), len_z u32, len_y u32, z bytes, y bytes
    if flags & 1: len_mask u32, zlib(packbits(mask))  (mask of shape (bands, height, width))
    if flags & 2: the same for the NaN mask (float32 chunks)
    crc32      u32  over every byte before it

Any inconsistency raises :class:`DMENetCodecError`; the checksum is verified before anything else
is parsed, so truncated or corrupted chunks never reach the entropy decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DMENetCodecError",
    "ChunkHeader",
    "GroupPayload",
    "Chunk",
    "pack_chunk",
    "unpack_chunk",
    "FORMAT_VERSION",
    "MAGIC",
    "DTYPES",
    "MAX_BANDS",
    "MAX_SIDE",
]

MAGIC = b"DMNT"
FORMAT_VERSION = 1
MAX_BANDS = 16
MAX_SIDE = 4096
DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32")

_HEAD = struct.Struct("<4sBBBBHHd8sHH")
_BAND = struct.Struct("<dd")
_GROUP = struct.Struct("<III")
_U32 = struct.Struct("<I")


class DMENetCodecError(ValueError):
    """A chunk or a codec configuration that cannot be used; the message says why."""


@dataclass(frozen=True)
class ChunkHeader:
    dtype: str
    bands: int
    height: int
    width: int
    quality: float
    model_id: bytes
    z_shape: tuple[int, int]
    ranges: tuple[tuple[float, float], ...]

    @property
    def groups(self) -> int:
        return -(-self.bands // 3)


@dataclass(frozen=True)
class GroupPayload:
    digest: int
    z: bytes
    y: bytes


@dataclass(frozen=True)
class Chunk:
    header: ChunkHeader
    groups: tuple[GroupPayload, ...]
    mask: np.ndarray | None  # bool (bands, height, width): True where the pixel is nodata
    nan_mask: np.ndarray | None = None  # bool (bands, height, width): True where the pixel is NaN


def _check_header(h: ChunkHeader) -> None:
    if h.dtype not in DTYPES:
        raise DMENetCodecError(f"unsupported dtype {h.dtype!r}")
    if not 1 <= h.bands <= MAX_BANDS:
        raise DMENetCodecError(f"band count {h.bands} outside 1..{MAX_BANDS}")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise DMENetCodecError(f"chunk size {h.height}x{h.width} outside 1..{MAX_SIDE}")
    if len(h.model_id) != 8:
        raise DMENetCodecError("model id must be 8 bytes")
    if len(h.ranges) != h.bands:
        raise DMENetCodecError("one value range per band is required")
    expect = (-(-h.height // 64), -(-h.width // 64))
    if tuple(h.z_shape) != expect:
        raise DMENetCodecError(f"hyper-latent shape {h.z_shape} does not fit a {h.height}x{h.width} chunk")


def pack_chunk(chunk: Chunk) -> bytes:
    h = chunk.header
    _check_header(h)
    if len(chunk.groups) != h.groups:
        raise DMENetCodecError(f"{h.bands} bands need {h.groups} groups, got {len(chunk.groups)}")
    flags = (1 if chunk.mask is not None else 0) | (2 if chunk.nan_mask is not None else 0)
    parts = [
        _HEAD.pack(
            MAGIC,
            FORMAT_VERSION,
            flags,
            DTYPES.index(h.dtype),
            h.bands,
            h.height,
            h.width,
            h.quality,
            h.model_id,
            h.z_shape[0],
            h.z_shape[1],
        )
    ]
    parts += [_BAND.pack(lo, hi) for lo, hi in h.ranges]
    for g in chunk.groups:
        parts += [_GROUP.pack(g.digest, len(g.z), len(g.y)), g.z, g.y]
    for mask in (chunk.mask, chunk.nan_mask):
        if mask is not None:
            if mask.shape != (h.bands, h.height, h.width):
                raise DMENetCodecError("mask shape does not match the chunk")
            packed = zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes(), 6)
            parts += [_U32.pack(len(packed)), packed]
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.pos = 0
        self.end = end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise DMENetCodecError(f"chunk is truncated (while reading {what})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> tuple:  # type: ignore[type-arg]
        return st.unpack(self.take(st.size, what))


def read_version(data: bytes) -> int:
    """Check the magic and return the format version (before the checksum is known good)."""
    if len(data) < 5 or data[:4] != MAGIC:
        raise DMENetCodecError("not a DMENet chunk (bad magic bytes)")
    return data[4]


def unpack_chunk(data: bytes | bytearray | memoryview) -> Chunk:
    data = bytes(data)
    version = read_version(data)
    if version > FORMAT_VERSION:
        raise DMENetCodecError(
            f"chunk uses format version {version}; this dmenet_geo reads up to {FORMAT_VERSION}: upgrade it"
        )
    if version != FORMAT_VERSION:
        raise DMENetCodecError(f"unknown chunk format version {version}")
    if len(data) < _HEAD.size + _U32.size:
        raise DMENetCodecError("chunk is truncated (shorter than its header)")
    (stored,) = _U32.unpack(data[-4:])
    if zlib.crc32(data[:-4]) != stored:
        raise DMENetCodecError("chunk checksum mismatch: the bytes are corrupted or truncated")
    r = _Reader(data, len(data) - 4)
    _, _, flags, dtype_code, bands, height, width, quality, model_id, zh, zw = r.unpack(_HEAD, "header")
    if flags & ~3:
        raise DMENetCodecError(f"unknown flags {flags:#x}")
    if dtype_code >= len(DTYPES):
        raise DMENetCodecError(f"unknown dtype code {dtype_code}")
    if not 1 <= bands <= MAX_BANDS:
        raise DMENetCodecError(f"band count {bands} outside 1..{MAX_BANDS}")
    ranges = tuple(r.unpack(_BAND, "value ranges") for _ in range(bands))
    header = ChunkHeader(DTYPES[dtype_code], bands, height, width, quality, model_id, (zh, zw), ranges)
    _check_header(header)
    groups = []
    for _ in range(header.groups):
        digest, len_z, len_y = r.unpack(_GROUP, "group header")
        groups.append(GroupPayload(digest, r.take(len_z, "z string"), r.take(len_y, "y string")))
    masks: list[np.ndarray | None] = []
    for bit, what in ((1, "nodata mask"), (2, "NaN mask")):
        masks.append(_read_mask(r, (bands, height, width), what) if flags & bit else None)
    if r.pos != r.end:
        raise DMENetCodecError(f"{r.end - r.pos} unexpected trailing bytes in chunk")
    return Chunk(header, tuple(groups), masks[0], masks[1])


def _read_mask(r: _Reader, shape: tuple[int, int, int], what: str) -> np.ndarray:
    (length,) = r.unpack(_U32, f"{what} length")
    try:
        bits = np.frombuffer(zlib.decompress(r.take(length, what)), dtype=np.uint8)
    except zlib.error as exc:
        raise DMENetCodecError(f"{what} is corrupted: {exc}") from None
    count = shape[0] * shape[1] * shape[2]
    if bits.size != -(-count // 8):
        raise DMENetCodecError(f"{what} has the wrong size")
    return np.unpackbits(bits, count=count).astype(bool).reshape(shape)
