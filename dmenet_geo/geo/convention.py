"""Georeferencing <-> Zarr attributes: CF ``spatial_ref`` and the Zarr ``proj``/``spatial`` conventions.

Two encodings of the same CRS and affine transform are written, so that both CF/GDAL-minded tools
(xarray + rioxarray, GDAL's Zarr driver) and Zarr-convention readers understand the store:

* CF: a 0-d ``spatial_ref`` variable carrying ``crs_wkt`` (and GDAL's ``spatial_ref`` alias), the CF
  grid-mapping parameters from pyproj, and ``GeoTransform`` (GDAL order ``c a b f d e``); the data
  variable points at it with ``grid_mapping: "spatial_ref"``.
* Zarr conventions (https://github.com/zarr-conventions/proj and .../spatial, both ``v1``):
  ``proj:code`` (when an authority code exists), ``proj:wkt2`` (always: the spec asks writers for it),
  ``spatial:dimensions`` (``["y", "x"]``, names from the array's ``dimension_names``),
  ``spatial:transform`` (rasterio/affine order ``a b c d e f``, pixel-corner based),
  ``spatial:shape`` (``[height, width]``), ``spatial:bbox`` and ``spatial:registration: "pixel"``; each
  used convention is registered in the ``zarr_conventions`` list.

Coordinates ``x``/``y`` hold pixel centres (``transform * (col + 0.5, row + 0.5)``).
Rotated or sheared transforms cannot be described by 1-D coordinates and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from dmenet_geo.geo.errors import GeoError

__all__ = [
    "GeoReference",
    "PROJ_CONVENTION",
    "SPATIAL_CONVENTION",
    "check_transform",
    "coordinate_attrs",
    "convention_attrs",
    "georef_from_attrs",
    "pixel_centers",
    "spatial_ref_attrs",
]

PROJ_CONVENTION: dict[str, str] = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION: dict[str, str] = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
    "description": "Spatial coordinate information",
}


@dataclass(frozen=True)
class GeoReference:
    """Where a (height, width) grid lies: its CRS and pixel-corner affine transform."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the outer pixel edges."""
        corners = [self.transform @ (c, r) for c in (0, self.width) for r in (0, self.height)]
        xs, ys = zip(*corners, strict=True)
        return (min(xs), min(ys), max(xs), max(ys))

    def scaled(self, factor: int) -> GeoReference:
        """The grid of an overview that averages ``factor x factor`` pixels (edge cells partial)."""
        return GeoReference(
            self.crs,
            self.transform @ Affine.scale(factor),
            -(-self.height // factor),
            -(-self.width // factor),
        )


def check_transform(transform: Affine) -> None:
    """Refuse transforms that 1-D x/y coordinates cannot describe."""
    if transform.b != 0 or transform.d != 0:
        raise GeoError("rotated or sheared geotransforms are not supported (warp the raster first)")
    if transform.a == 0 or transform.e == 0:
        raise GeoError("the raster's geotransform has a zero pixel size")


def pixel_centers(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` (width,) and ``y`` (height,) coordinates of pixel centres."""
    check_transform(transform)
    x = transform.c + transform.a * (np.arange(width, dtype=np.float64) + 0.5)
    y = transform.f + transform.e * (np.arange(height, dtype=np.float64) + 0.5)
    return x, y


def _authority_code(crs: CRS) -> str | None:
    try:
        auth = crs.to_authority()
    except Exception:  # noqa: BLE001 - rasterio raises CRSError subclasses and others
        auth = None
    return f"{auth[0]}:{auth[1]}" if auth else None


def spatial_ref_attrs(crs: CRS, transform: Affine) -> dict[str, Any]:
    """Attributes of the CF ``spatial_ref`` grid-mapping variable (as GDAL and rioxarray write them)."""
    from pyproj import CRS as ProjCRS

    check_transform(transform)
    wkt = crs.to_wkt()
    try:
        attrs: dict[str, Any] = {k: v for k, v in ProjCRS.from_wkt(wkt).to_cf().items() if _jsonable(v)}
    except Exception:  # noqa: BLE001 - some CRSs have no CF form; crs_wkt still describes them
        attrs = {}
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in transform.to_gdal())
    return attrs


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    )


def convention_attrs(
    crs: CRS, transform: Affine, height: int, width: int, dims: tuple[str, str] = ("y", "x")
) -> dict[str, Any]:
    """``proj:*`` and ``spatial:*`` attributes with their ``zarr_conventions`` registration."""
    from pyproj import CRS as ProjCRS

    check_transform(transform)
    ref = GeoReference(crs, transform, height, width)
    attrs: dict[str, Any] = {"zarr_conventions": [dict(PROJ_CONVENTION), dict(SPATIAL_CONVENTION)]}
    code = _authority_code(crs)
    if code:
        attrs["proj:code"] = code
    attrs["proj:wkt2"] = ProjCRS.from_wkt(crs.to_wkt()).to_wkt("WKT2_2019")
    attrs["spatial:dimensions"] = list(dims)
    attrs["spatial:transform"] = [float(v) for v in tuple(transform)[:6]]
    attrs["spatial:shape"] = [int(height), int(width)]
    attrs["spatial:bbox"] = [float(v) for v in ref.bounds]
    attrs["spatial:registration"] = "pixel"
    return attrs


def georef_from_attrs(
    attrs: Mapping[str, Any], spatial_ref: Mapping[str, Any] | None = None
) -> GeoReference:
    """Read the georeferencing back: ``proj:wkt2`` > ``proj:code`` > CF ``crs_wkt``; transform from
    ``spatial:transform`` or else the CF ``GeoTransform``; shape from ``spatial:shape``."""
    sref = spatial_ref or {}
    try:
        if attrs.get("proj:wkt2"):
            crs = CRS.from_wkt(attrs["proj:wkt2"])
        elif attrs.get("proj:code"):
            crs = CRS.from_user_input(attrs["proj:code"])
        elif sref.get("crs_wkt"):
            crs = CRS.from_wkt(sref["crs_wkt"])
        else:
            raise GeoError("the store has no CRS (neither proj:wkt2/proj:code nor a spatial_ref crs_wkt)")
    except GeoError:
        raise
    except Exception as exc:  # noqa: BLE001 - surface any CRS parse failure as one line
        raise GeoError(f"the store's CRS cannot be parsed: {exc}") from None
    if attrs.get("spatial:transform"):
        transform = Affine(*[float(v) for v in attrs["spatial:transform"][:6]])
    elif sref.get("GeoTransform"):
        transform = Affine.from_gdal(*[float(v) for v in str(sref["GeoTransform"]).split()])
    else:
        raise GeoError("the store has no transform (neither spatial:transform nor GeoTransform)")
    shape = attrs.get("spatial:shape")
    if not shape:
        raise GeoError("the store has no spatial:shape attribute")
    return GeoReference(crs, transform, int(shape[0]), int(shape[1]))


def coordinate_attrs(crs: CRS) -> tuple[dict[str, Any], dict[str, Any]]:
    """CF attributes of the ``x`` and ``y`` coordinate variables (pixel centres)."""
    if crs.is_geographic:
        return (
            {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
            {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
        )
    units = (crs.linear_units or "unknown").replace("metre", "m").replace("meter", "m")
    return (
        {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection",
         "units": units, "axis": "X"},
        {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection",
         "units": units, "axis": "Y"},
    )
