"""dmenet_geo: learned (DMENet) compression of remote-sensing rasters inside Zarr, xarray and Dask.

The top-level names are imported lazily (``import dmenet_geo`` loads neither torch, rasterio nor
xarray) and importing registers nothing: codecs are found through entry points, or registered
explicitly with ``dmenet_geo.codec.register_codecs()``.

    >>> import dmenet_geo
    >>> summary = dmenet_geo.compress_geotiff("scene.tif", "scene.zarr", quality=4)
    >>> ds = dmenet_geo.open_dataset("scene.zarr")          # lazy
    >>> part = dmenet_geo.clip(ds, aoi_polygon, crs="EPSG:4326")
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_GEO = (
    "CompressSummary",
    "ExportSummary",
    "GeoError",
    "StoreInfo",
    "VerifyReport",
    "clip",
    "compress_geotiff",
    "decompress_to_geotiff",
    "open_dataset",
    "store_info",
    "verify_store",
)
_CODEC = ("DMENetCodec", "DMENetCodecError", "register_codecs", "set_runtime")
_MODEL = ("load_model", "available_models")
__all__ = [*_GEO, *_CODEC, *_MODEL, "__version__"]

if TYPE_CHECKING:
    from dmenet_geo.codec import DMENetCodec, DMENetCodecError, register_codecs, set_runtime  # noqa: F401
    from dmenet_geo.geo import (  # noqa: F401
        CompressSummary,
        ExportSummary,
        GeoError,
        StoreInfo,
        VerifyReport,
        clip,
        compress_geotiff,
        decompress_to_geotiff,
        open_dataset,
        store_info,
        verify_store,
    )
    from dmenet_geo.model import available_models, load_model  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _GEO:
        return getattr(import_module("dmenet_geo.geo"), name)
    if name in _CODEC:
        return getattr(import_module("dmenet_geo.codec"), name)
    if name in _MODEL:
        return getattr(import_module("dmenet_geo.model"), name)
    raise AttributeError(f"module 'dmenet_geo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
