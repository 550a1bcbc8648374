"""Georeferencing attributes (CF spatial_ref + Zarr proj:/spatial: conventions), grid and AOI helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from dmenet_geo.geo.aoi import load_geometry, reproject_geometry
from dmenet_geo.geo.convention import (
    PROJ_CONVENTION,
    SPATIAL_CONVENTION,
    GeoReference,
    convention_attrs,
    georef_from_attrs,
    pixel_centers,
    spatial_ref_attrs,
)
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.grid import ChunkGrid
from dmenet_geo.geo.overview import choose_factors, reduce_mean, valid_mask

UTM = CRS.from_epsg(32618)
T = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0)


def test_convention_attrs_follow_proj_and_spatial_v1() -> None:
    attrs = convention_attrs(UTM, T, 270, 300)
    assert attrs["zarr_conventions"] == [PROJ_CONVENTION, SPATIAL_CONVENTION]
    assert {c["name"] for c in attrs["zarr_conventions"]} == {"proj", "spatial"}
    assert attrs["proj:code"] == "EPSG:32618"
    assert attrs["proj:wkt2"].startswith("PROJCRS[")
    assert attrs["spatial:dimensions"] == ["y", "x"]
    # rasterio/affine order a b c d e f, pixel-corner origin
    assert attrs["spatial:transform"] == [30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0]
    assert attrs["spatial:shape"] == [270, 300]
    assert attrs["spatial:bbox"] == [500000.0, 4000000.0 - 270 * 30, 500000.0 + 300 * 30, 4000000.0]
    assert attrs["spatial:registration"] == "pixel"
    json.dumps(attrs)  # JSON-serialisable as Zarr attributes must be


def test_spatial_ref_attrs_are_cf_and_gdal() -> None:
    attrs = spatial_ref_attrs(UTM, T)
    assert CRS.from_wkt(attrs["crs_wkt"]) == UTM
    assert attrs["spatial_ref"] == attrs["crs_wkt"]
    assert attrs["grid_mapping_name"] == "transverse_mercator"
    assert [float(v) for v in attrs["GeoTransform"].split()] == list(T.to_gdal())
    json.dumps(attrs)


def test_georef_round_trip_prefers_wkt2_and_spatial_transform() -> None:
    ref = georef_from_attrs(convention_attrs(UTM, T, 270, 300))
    assert ref == GeoReference(UTM, T, 270, 300)
    # CF-only attributes are enough too
    cf = georef_from_attrs({"spatial:shape": [270, 300]}, spatial_ref_attrs(UTM, T))
    assert cf.crs == UTM and cf.transform == T


def test_pixel_centres_and_refused_rotation() -> None:
    x, y = pixel_centers(T, 2, 3)
    np.testing.assert_array_equal(x, [500015.0, 500045.0, 500075.0])
    np.testing.assert_array_equal(y, [3999985.0, 3999955.0])
    with pytest.raises(GeoError, match="rotated"):
        pixel_centers(Affine(30, 1, 0, 0, -30, 0), 2, 2)


def test_overview_grid_is_scaled() -> None:
    ref = GeoReference(UTM, T, 270, 300).scaled(8)
    assert (ref.height, ref.width) == (34, 38)
    assert ref.transform == Affine(240.0, 0.0, 500000.0, 0.0, -240.0, 4000000.0)


def test_chunk_grid_windows_blocks_and_intersections() -> None:
    grid = ChunkGrid(300, 270, 128)
    assert (grid.rows, grid.cols, grid.count) == (3, 3, 9)
    assert grid.window(2, 2) == (256, 256, 44, 14)
    blocks = grid.blocks(grid.all_chunks(), 4)
    assert sum(len(b.chunks) for b in blocks) == 9
    assert all(b.row % 128 == 0 and b.col % 128 == 0 for b in blocks)
    # a polygon over pixel rows/cols 10..20 touches only chunk (0, 0)
    poly = shapely.box(*(T @ (10, 20)), *(T @ (20, 10)))
    assert grid.intersecting(T, poly) == [(0, 0)]


def test_overview_mean_ignores_nodata() -> None:
    data = np.array([[[1, 3, 0, 0], [5, 7, 0, 0]]], dtype=np.uint8)
    out = reduce_mean(data, valid_mask(data, 0), 2, 0)
    np.testing.assert_array_equal(out, [[[4, 0]]])
    assert choose_factors(300, 270, 128, True) == (8,)
    assert choose_factors(20000, 20000, 256, True) == (8, 32, 128)
    with pytest.raises(GeoError):
        choose_factors(300, 270, 128, 3)


def test_aoi_parsing_and_reprojection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    wkt = "POLYGON ((-75 40, -74 40, -74 41, -75 41, -75 40))"
    geojson = json.dumps({"type": "Feature", "geometry": shapely.geometry.mapping(shapely.from_wkt(wkt))})
    path = tmp_path / "aoi.geojson"
    path.write_text(geojson)
    for value in (wkt, geojson, str(path), path, shapely.from_wkt(wkt)):
        assert load_geometry(value).equals(shapely.from_wkt(wkt))
    utm = reproject_geometry(shapely.from_wkt(wkt), "EPSG:4326", UTM)
    assert 400000 < utm.centroid.x < 600000 and 4400000 < utm.centroid.y < 4600000
    with pytest.raises(GeoError):
        load_geometry("not a polygon")
    with pytest.raises(GeoError, match="polygon"):
        load_geometry("POINT (1 2)")
