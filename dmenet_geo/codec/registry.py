"""Explicit registration (entry points do the same in a fresh process, without this call)."""

from __future__ import annotations

__all__ = ["register_codecs"]


def register_codecs() -> None:
    """Register ``dmenet`` and ``dmenet_geo.jpeg2k`` with numcodecs and with zarr (idempotent)."""
    import numcodecs
    import zarr.registry

    from dmenet_geo.codec.classical import JPEG2K_ID, Jpeg2kCodec, Jpeg2kZarrCodec
    from dmenet_geo.codec.numcodecs import DMENetCodec
    from dmenet_geo.codec.zarr3 import DMENetZarrCodec

    numcodecs.register_codec(DMENetCodec)
    zarr.registry.register_codec("dmenet", DMENetZarrCodec)
    numcodecs.register_codec(Jpeg2kCodec)
    zarr.registry.register_codec(JPEG2K_ID, Jpeg2kZarrCodec)
