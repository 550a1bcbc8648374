"""DMENet as a numcodecs codec and a Zarr v3 array-to-bytes codec (and JPEG 2000, the classical
baseline in the same chunk layout: ``Jpeg2kCodec``, imported on first use since it pulls in zarr)."""

from typing import Any

from dmenet_geo.codec.bitstream import DMENetCodecError, unpack_chunk
from dmenet_geo.codec.engine import set_runtime
from dmenet_geo.codec.numcodecs import DMENetCodec
from dmenet_geo.codec.registry import register_codecs

__all__ = [
    "DMENetCodec", "DMENetCodecError", "Jpeg2kCodec", "chunk_quality", "register_codecs", "set_runtime",
]


def chunk_quality(data: bytes) -> float:
    """The quality a DMENet chunk was encoded at, from its header (the checksum is verified first)."""
    return float(unpack_chunk(data).header.quality)


def __getattr__(name: str) -> Any:
    if name in ("Jpeg2kCodec", "JPEG2K_ID", "JPEG2K_DTYPES"):
        from dmenet_geo.codec import classical

        return getattr(classical, name)
    raise AttributeError(f"module 'dmenet_geo.codec' has no attribute {name!r}")
