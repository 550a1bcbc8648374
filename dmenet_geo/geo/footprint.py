"""The valid-data footprint: traced from a coarse valid mask, stored as WKT in the native CRS and as a
GeoJSON geometry in EPSG:4326 (RFC 7946 order: longitude, latitude)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import mapping

from dmenet_geo.geo.aoi import reproject_geometry

__all__ = ["Footprint", "trace_footprint"]


@dataclass(frozen=True)
class Footprint:
    """Where the store holds valid pixels."""

    wkt: str  # native CRS
    geojson: dict[str, Any]  # EPSG:4326
    area_fraction: float  # share of the raster's area

    @property
    def geometry(self) -> shapely.Geometry:
        return shapely.from_wkt(self.wkt)


def _jsonify(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonify(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return round(float(obj), 9)
    return obj


def trace_footprint(
    mask: np.ndarray, transform: Affine, factor: int, crs: CRS, height: int, width: int
) -> Footprint | None:
    """Vectorise a cell mask (each cell ``factor x factor`` pixels) into a simplified polygon."""
    from rasterio import features

    if not mask.any():
        return None
    cell_transform = transform @ Affine.scale(factor)
    polys = [
        shapely.geometry.shape(geom)
        for geom, value in features.shapes(mask.astype(np.uint8), mask=mask, transform=cell_transform)
        if value
    ]
    geom = shapely.union_all(polys)
    corners = [transform @ (c, r) for c, r in ((0, 0), (width, 0), (width, height), (0, height))]
    raster = shapely.Polygon(corners)
    geom = shapely.intersection(geom, raster)
    pixel = max(abs(transform.a), abs(transform.e))
    geom = shapely.simplify(geom, pixel * factor * 0.5, preserve_topology=True)
    area_fraction = float(geom.area / raster.area) if raster.area else 0.0
    wgs84 = reproject_geometry(geom, crs, "EPSG:4326")
    return Footprint(wkt=geom.wkt, geojson=_jsonify(mapping(wgs84)), area_fraction=round(area_fraction, 6))
