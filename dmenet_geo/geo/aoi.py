"""Areas of interest: parse a polygon (shapely, WKT, GeoJSON text/mapping/file) and reproject it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from dmenet_geo.geo.errors import GeoError

__all__ = ["GeometryLike", "load_geometry", "reproject_geometry"]

GeometryLike: TypeAlias = BaseGeometry | str | Mapping[str, Any] | os.PathLike[str]


def _from_geojson(obj: Mapping[str, Any]) -> BaseGeometry:
    kind = obj.get("type")
    if kind == "FeatureCollection":
        geoms = [_from_geojson(f) for f in obj.get("features", [])]
        if not geoms:
            raise GeoError("the GeoJSON FeatureCollection has no features")
        return shapely.union_all(geoms)
    if kind == "Feature":
        if not obj.get("geometry"):
            raise GeoError("the GeoJSON Feature has no geometry")
        return _from_geojson(obj["geometry"])
    try:
        return shape(obj)
    except Exception as exc:  # noqa: BLE001 - shapely raises several types
        raise GeoError(f"not a GeoJSON geometry: {exc}") from None


def load_geometry(value: GeometryLike) -> BaseGeometry:
    """A polygon from a shapely geometry, WKT text, GeoJSON (text, mapping or a file path)."""
    if isinstance(value, BaseGeometry):
        geom = value
    elif isinstance(value, Mapping):
        geom = _from_geojson(value)
    else:
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                geom = _from_geojson(json.loads(stripped))
            except json.JSONDecodeError as exc:
                raise GeoError(f"invalid GeoJSON: {exc}") from None
        elif isinstance(value, os.PathLike) or (len(stripped) < 4096 and Path(stripped).is_file()):
            try:
                content = Path(stripped).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise GeoError(f"cannot read area of interest file {stripped}: {exc}") from None
            return load_geometry(content)
        else:
            try:
                geom = shapely.from_wkt(stripped)
            except Exception:  # noqa: BLE001 - shapely.errors.GEOSException and friends
                raise GeoError(
                    f"area of interest {stripped[:60]!r} is neither WKT, GeoJSON nor an existing file"
                ) from None
    if geom is None or geom.is_empty:
        raise GeoError("the area of interest is empty")
    if geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        raise GeoError(f"the area of interest must be a polygon, got a {geom.geom_type}")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def reproject_geometry(geom: BaseGeometry, src_crs: Any, dst_crs: Any) -> BaseGeometry:
    """``geom`` from ``src_crs`` to ``dst_crs`` (any pyproj input); edges are densified first so
    that straight lines stay faithful after a non-linear projection."""
    from pyproj import CRS, Transformer

    try:
        src, dst = CRS.from_user_input(_crs_input(src_crs)), CRS.from_user_input(_crs_input(dst_crs))
    except Exception as exc:  # noqa: BLE001 - pyproj.exceptions.CRSError
        raise GeoError(f"unknown CRS: {exc}") from None
    if src == dst:
        return geom
    xmin, ymin, xmax, ymax = geom.bounds
    span = max(xmax - xmin, ymax - ymin)
    if span > 0:
        geom = shapely.segmentize(geom, span / 64)
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    out = shapely.transform(geom, lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1])))
    if not out.is_valid:
        out = shapely.make_valid(out)
    return out


def _stack(xy: tuple[Any, Any]) -> Any:
    import numpy as np

    return np.column_stack(xy)


def _crs_input(crs: Any) -> Any:
    """rasterio CRS objects -> WKT, so pyproj accepts them."""
    if hasattr(crs, "to_wkt") and not isinstance(crs, str):
        return crs.to_wkt()
    return crs
