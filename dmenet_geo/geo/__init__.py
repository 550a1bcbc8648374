"""GeoTIFF <-> DMENet Zarr stores: writing, lazy reading, georeferencing conventions, footprints.

Layering: this package uses the codec only through ``dmenet_geo.codec``'s public API.
"""

from dmenet_geo.geo.backend import DMENetBackendEntrypoint
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.export import ExportSummary, decompress_to_geotiff
from dmenet_geo.geo.footprint import Footprint
from dmenet_geo.geo.info import StoreInfo, store_info
from dmenet_geo.geo.read import clip, dataset_crs, dataset_transform, open_dataset
from dmenet_geo.geo.summary import CompressSummary
from dmenet_geo.geo.verify import VerifyReport, verify_store
from dmenet_geo.geo.write import compress_geotiff

__all__ = [
    "CompressSummary",
    "DMENetBackendEntrypoint",
    "ExportSummary",
    "Footprint",
    "GeoError",
    "StoreInfo",
    "VerifyReport",
    "clip",
    "compress_geotiff",
    "dataset_crs",
    "dataset_transform",
    "decompress_to_geotiff",
    "open_dataset",
    "store_info",
    "verify_store",
]
