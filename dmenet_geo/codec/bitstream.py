"""The DMENet chunk container. Pure Python and NumPy: no torch.

Format 2 (written now), little-endian::

    magic      4s   b"DMNT"
    version    u8   2
    flags      u8   bit 0: a nodata mask follows the groups; bit 1: a NaN mask follows that;
                    bits 2-3: how the value ranges are stored (0: none, every band is 0..255;
                    1: i32 pairs; 2: f32 pairs; 3: f64 pairs)
    kind       u8   dtype code << 4 | (bands - 1); dtype 0 uint8, 1 uint16, 2 int16, 3 float32
    height     u16  1..4096
    width      u16  1..4096
    quality    f32  the quality the chunk was encoded at (the encoder codes at this f32 value)
    model_id   4s   first 4 bytes of the weights' SHA-256
    per band:  lo, hi in the range encoding of the flags  (value = lo + x * (hi - lo), x in [0, 1]
               is what the model codes)
    per group of 3 bands (ceil(bands / 3) groups):
               digest u32 (CRC32 of the integer latents), len_z varint, len_y varint, z bytes, y bytes
    if flags & 1: len_mask varint, zlib(packbits(mask))  (mask of shape (bands, height, width))
    if flags & 2: the same for the NaN mask (float32 chunks)
    crc32      u32  over every byte before it

varint: unsigned LEB128 in its shortest form, at most 5 bytes. The hyper-latent shape is not
stored: it is ``ceil(height / 64) x ceil(width / 64)``. Besides its two entropy-coded strings an
RGB uint8 chunk carries 27 bytes plus the two lengths, 31 in all for a 256x256 chunk; format 1
carried 96.

Format 1 (the first format) is still read: the same fields with fixed widths (f64 quality, 8-byte
model id, stored hyper-latent shape, f64 value ranges, u32 lengths).

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
    "read_version",
    "FORMAT_VERSION",
    "MAGIC",
    "MODEL_ID_BYTES",
    "model_id_for",
    "DTYPES",
    "MAX_BANDS",
    "MAX_SIDE",
]

MAGIC = b"DMNT"
FORMAT_VERSION = 2
MODEL_ID_BYTES = 4
MAX_BANDS = 16
MAX_SIDE = 4096
HYPER_STRIDE = 64
DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32")


def model_id_for(weights_sha256: str) -> bytes:
    """The header's model id for weights with this SHA-256 (hex): its first MODEL_ID_BYTES bytes."""
    return bytes.fromhex(weights_sha256)[:MODEL_ID_BYTES]


_HEAD = struct.Struct("<4sBBBHHf4s")
_HEAD_V1 = struct.Struct("<4sBBBBHHd8sHH")
_RANGE_FORMATS = ("", "<ii", "<ff", "<dd")  # index = range mode in flags bits 2-3
_U32 = struct.Struct("<I")
_MAX_VARINT_BYTES = 5


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


def hyper_shape(height: int, width: int) -> tuple[int, int]:
    return (-(-height // HYPER_STRIDE), -(-width // HYPER_STRIDE))


def _check_header(h: ChunkHeader) -> None:
    if h.dtype not in DTYPES:
        raise DMENetCodecError(f"unsupported dtype {h.dtype!r}")
    if not 1 <= h.bands <= MAX_BANDS:
        raise DMENetCodecError(f"band count {h.bands} outside 1..{MAX_BANDS}")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise DMENetCodecError(f"chunk size {h.height}x{h.width} outside 1..{MAX_SIDE}")
    if len(h.model_id) not in (MODEL_ID_BYTES, 8):
        raise DMENetCodecError(f"model id must be {MODEL_ID_BYTES} (or, in format 1, 8) bytes")
    if len(h.ranges) != h.bands:
        raise DMENetCodecError("one value range per band is required")
    if tuple(h.z_shape) != hyper_shape(h.height, h.width):
        raise DMENetCodecError(f"hyper-latent shape {h.z_shape} does not fit a {h.height}x{h.width} chunk")


def _range_mode(ranges: tuple[tuple[float, float], ...]) -> int:
    """The smallest range encoding that stores every bound exactly."""
    values = [float(v) for pair in ranges for v in pair]
    if all(pair == (0.0, 255.0) for pair in ranges):
        return 0
    if all(v.is_integer() and -(2**31) <= v < 2**31 for v in values):
        return 1
    if all(np.isfinite(v) and float(np.float32(v)) == v for v in values):
        return 2
    return 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pack_chunk(chunk: Chunk) -> bytes:
    """Serialise a chunk in the current format (2)."""
    h = chunk.header
    _check_header(h)
    if len(chunk.groups) != h.groups:
        raise DMENetCodecError(f"{h.bands} bands need {h.groups} groups, got {len(chunk.groups)}")
    if float(np.float32(h.quality)) != h.quality:
        raise DMENetCodecError(f"quality {h.quality!r} is not a float32 value: encode at float32(quality)")
    mode = _range_mode(h.ranges)
    flags = (1 if chunk.mask is not None else 0) | (2 if chunk.nan_mask is not None else 0) | mode << 2
    kind = DTYPES.index(h.dtype) << 4 | (h.bands - 1)
    parts = [_HEAD.pack(MAGIC, FORMAT_VERSION, flags, kind, h.height, h.width, h.quality,
                        h.model_id[:MODEL_ID_BYTES])]
    if mode:
        cast = int if mode == 1 else float
        parts += [struct.pack(_RANGE_FORMATS[mode], cast(lo), cast(hi)) for lo, hi in h.ranges]
    for g in chunk.groups:
        parts += [_U32.pack(g.digest), _varint(len(g.z)), _varint(len(g.y)), g.z, g.y]
    for mask in (chunk.mask, chunk.nan_mask):
        if mask is not None:
            if mask.shape != (h.bands, h.height, h.width):
                raise DMENetCodecError("mask shape does not match the chunk")
            packed = zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes(), 6)
            parts += [_varint(len(packed)), packed]
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

    def unpack(self, st: struct.Struct | str, what: str) -> tuple:  # type: ignore[type-arg]
        st = st if isinstance(st, struct.Struct) else struct.Struct(st)
        return st.unpack(self.take(st.size, what))

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and not byte:
                    raise DMENetCodecError(f"{what} is not in its shortest form")
                return value
        raise DMENetCodecError(f"{what} is longer than {_MAX_VARINT_BYTES} bytes")


def read_version(data: bytes) -> int:
    """Check the magic and return the format version (before the checksum is known good)."""
    if len(data) < 5 or data[:4] != MAGIC:
        raise DMENetCodecError("not a DMENet chunk (bad magic bytes)")
    return data[4]


def unpack_chunk(data: bytes | bytearray | memoryview) -> Chunk:
    """Parse a chunk of format 1 or 2; raises :class:`DMENetCodecError` on anything inconsistent."""
    data = bytes(data)
    version = read_version(data)
    if version > FORMAT_VERSION:
        raise DMENetCodecError(
            f"chunk uses format version {version}; this dmenet_geo reads up to {FORMAT_VERSION}: upgrade it"
        )
    if version not in (1, 2):
        raise DMENetCodecError(f"unknown chunk format version {version}")
    head = _HEAD if version == 2 else _HEAD_V1
    if len(data) < head.size + _U32.size:
        raise DMENetCodecError("chunk is truncated (shorter than its header)")
    (stored,) = _U32.unpack(data[-4:])
    if zlib.crc32(data[:-4]) != stored:
        raise DMENetCodecError("chunk checksum mismatch: the bytes are corrupted or truncated")
    r = _Reader(data, len(data) - 4)
    if version == 2:
        _, _, flags, kind, height, width, quality, model_id = r.unpack(_HEAD, "header")
        dtype_code, bands, known_flags = kind >> 4, (kind & 0x0F) + 1, 0x0F
        mode = flags >> 2 & 3
        zh, zw = hyper_shape(height, width)
    else:
        fields = r.unpack(_HEAD_V1, "header")
        _, _, flags, dtype_code, bands, height, width, quality, model_id, zh, zw = fields
        known_flags, mode = 3, 3
    if flags & ~known_flags:
        raise DMENetCodecError(f"unknown flags {flags:#x}")
    if dtype_code >= len(DTYPES):
        raise DMENetCodecError(f"unknown dtype code {dtype_code}")
    if not 1 <= bands <= MAX_BANDS:
        raise DMENetCodecError(f"band count {bands} outside 1..{MAX_BANDS}")
    if mode:
        pairs = (r.unpack(_RANGE_FORMATS[mode], "value ranges") for _ in range(bands))
        ranges = tuple((float(lo), float(hi)) for lo, hi in pairs)
    else:
        ranges = ((0.0, 255.0),) * bands
    header = ChunkHeader(DTYPES[dtype_code], bands, height, width, float(quality), model_id, (zh, zw), ranges)
    _check_header(header)
    length = r.varint if version == 2 else (lambda what: r.unpack(_U32, what)[0])
    groups = []
    for _ in range(header.groups):
        (digest,) = r.unpack(_U32, "group digest")
        len_z, len_y = length("z length"), length("y length")
        groups.append(GroupPayload(digest, r.take(len_z, "z string"), r.take(len_y, "y string")))
    masks: list[np.ndarray | None] = []
    for bit, what in ((1, "nodata mask"), (2, "NaN mask")):
        masks.append(_read_mask(r.take(length(f"{what} length"), what), (bands, height, width), what)
                     if flags & bit else None)
    if r.pos != r.end:
        raise DMENetCodecError(f"{r.end - r.pos} unexpected trailing bytes in chunk")
    return Chunk(header, tuple(groups), masks[0], masks[1])


def _read_mask(raw: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
    try:
        bits = np.frombuffer(zlib.decompress(raw), dtype=np.uint8)
    except zlib.error as exc:
        raise DMENetCodecError(f"{what} is corrupted: {exc}") from None
    count = shape[0] * shape[1] * shape[2]
    if bits.size != -(-count // 8):
        raise DMENetCodecError(f"{what} has the wrong size")
    return np.unpackbits(bits, count=count).astype(bool).reshape(shape)
