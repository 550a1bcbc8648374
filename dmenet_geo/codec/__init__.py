"""DMENet as a numcodecs codec and a Zarr v3 array-to-bytes codec."""

from dmenet_geo.codec.bitstream import DMENetCodecError
from dmenet_geo.codec.engine import set_runtime
from dmenet_geo.codec.numcodecs import DMENetCodec
from dmenet_geo.codec.registry import register_codecs

__all__ = ["DMENetCodec", "DMENetCodecError", "register_codecs", "set_runtime"]
