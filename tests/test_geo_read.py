"""Lazy reads: opening decodes nothing, windows and clips decode only the chunks they touch, the
xarray backend entry point, verify and decompress."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
import zarr
from test_geo_common import (
    FAST,
    INT16_NODATA,
    PSNR_MIN_DB,
    UINT8_RGB,
    UINT16_RGB,
    count_decodes,
    psnr,
    read_source,
)

from dmenet_geo import GeoError, clip, compress_geotiff, decompress_to_geotiff, open_dataset, verify_store
from dmenet_geo.geo.aoi import reproject_geometry
from dmenet_geo.geo.backend import DMENetBackendEntrypoint


@pytest.fixture(scope="module")
def store64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int16 EPSG:4326 raster with 64-pixel chunks: a 5 x 5 chunk grid."""
    store = tmp_path_factory.mktemp("read") / "l5.zarr"
    compress_geotiff(INT16_NODATA, store, **{**FAST, "chunk": 64})
    return store


@pytest.fixture(scope="module")
def store_utm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("read") / "l8.zarr"
    compress_geotiff(UINT16_RGB, store, **{**FAST, "chunk": 64})
    return store


def test_open_decodes_nothing_and_window_decodes_touched_chunks(store64: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with count_decodes(monkeypatch) as n:
        ds = open_dataset(store64)
        _ = ds["image"].attrs, ds["x"].values, ds["y"].values, ds["band_name"].values
        assert n.chunks == 0
        window = ds["image"].isel(y=slice(70, 130), x=slice(70, 130)).values  # rows/cols 70..129
        assert window.shape == (1, 60, 60)
        assert n.chunks == 4  # chunk rows 1..2 x chunk cols 1..2
        n.reset()
        _ = ds["image"].isel(y=slice(0, 10), x=slice(0, 10)).values
        assert n.chunks == 1


def test_window_read_without_dask(store64: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with count_decodes(monkeypatch) as n:
        ds = open_dataset(store64, chunks=None)
        assert n.chunks == 0
        _ = ds["image"][:, 130:140, 180:250].values  # chunk row 2, chunk cols 2..3
        assert n.chunks == 2


def test_sel_by_map_coordinates(store64: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with rasterio.open(INT16_NODATA) as f:
        t = f.transform
        original = f.read()
    ds = open_dataset(store64)
    # a box in degrees: pixel rows 100..150, cols 20..60
    x0, y0 = t @ (20, 100)
    x1, y1 = t @ (60, 150)
    with count_decodes(monkeypatch) as n:
        part = ds["image"].sel(x=slice(x0, x1), y=slice(y0, y1))
        assert part.shape == (1, 50, 40)
        values = part.values
        assert n.chunks == 2 * 1  # chunk rows 1..2, chunk col 0
    window = original[:, 100:150, 20:60]
    np.testing.assert_array_equal(values == -9999, window == -9999)
    point = ds["image"].sel(x=float(ds.x[33]), y=float(ds.y[77]), method="nearest")
    assert point.shape == (1,)


def test_clip_decodes_only_intersecting_chunks(store64: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with rasterio.open(INT16_NODATA) as f:
        t = f.transform
    # a triangle in pixel space (5,5), (100,5), (5,100): its window spans chunk rows/cols 0..1, but
    # chunk (1, 1) (pixels 64..127) lies beyond the hypotenuse col + row = 105 (there col + row >= 128)
    tri = shapely.Polygon([t @ (5, 5), t @ (100, 5), t @ (5, 100)])
    with count_decodes(monkeypatch) as n:
        out = clip(store64, tri, crs="EPSG:4326")
        assert n.chunks == 0  # lazy
        values = out["image"].values
        assert n.chunks == 3
    assert out["image"].shape == (1, 95, 95)
    assert out["image"].dtype == np.int16
    assert values[0, -1, -1] == -9999  # outside the polygon -> nodata
    assert out["image"].rio.transform() == t @ rasterio.Affine.translation(5, 5)
    original = read_source(INT16_NODATA, (5, 5, 95, 95))
    inside = values != -9999
    assert inside.any()
    assert psnr(np.where(inside, original, -9999), values, -9999) > PSNR_MIN_DB


def test_clip_polygon_in_another_crs(store_utm: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with rasterio.open(UINT16_RGB) as f:
        t, crs = f.transform, f.crs
    square = shapely.box(*(t @ (10, 50)), *(t @ (50, 10)))  # pixels 10..50, inside chunk (0, 0)
    lonlat = reproject_geometry(square, crs, "EPSG:4326")
    with count_decodes(monkeypatch) as n:
        out = clip(open_dataset(store_utm), lonlat.wkt, crs="EPSG:4326")
        _ = out["image"].values
        assert n.chunks == 1
    assert 38 <= out.sizes["x"] <= 42 and 38 <= out.sizes["y"] <= 42
    with pytest.raises(GeoError, match="does not intersect"):
        clip(store_utm, "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", crs="EPSG:4326")


def test_xarray_engine_and_guess(store64: Path) -> None:
    ds = xr.open_dataset(store64, engine="dmenet")
    assert ds["image"].dtype == np.int16 and "spatial_ref" in ds.coords
    assert DMENetBackendEntrypoint().guess_can_open(store64)
    assert not DMENetBackendEntrypoint().guess_can_open(INT16_NODATA)
    with pytest.raises(GeoError, match="not a Zarr"):
        open_dataset(INT16_NODATA.parent)


def test_fresh_process_reads_through_entry_points(store64: Path) -> None:
    """No explicit registration: zarr's and xarray's entry points find the codec and the backend."""
    code = textwrap.dedent(f"""
        import json, xarray as xr, rioxarray
        a = xr.open_zarr({str(store64)!r})["image"]
        b = xr.open_dataset({str(store64)!r}, engine="dmenet")["image"]
        print(json.dumps([str(a.rio.crs), int(b[0, 150, 100].values), str(b.dtype)]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    crs, value, dtype = json.loads(proc.stdout.strip().splitlines()[-1])
    assert crs == "EPSG:4326" and dtype == "int16"
    assert value == int(open_dataset(store64)["image"][0, 150, 100].values)


def test_verify_counts_and_detects_corruption(tmp_path: Path) -> None:
    store = tmp_path / "v.zarr"
    summary = compress_geotiff(UINT8_RGB, store, **FAST)
    report = verify_store(store)
    assert report.ok and report.chunks_stored == report.chunks_ok == summary.chunks_written
    chunk = store / "image" / "c" / "0" / "1" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    bad = verify_store(store)
    assert not bad.ok and [ij for ij, _ in bad.failures] == [(1, 1)]
    assert bad.chunks_ok == summary.chunks_written - 1


def test_decompress_to_geotiff_keeps_georef(tmp_path: Path, store64: Path) -> None:
    out = tmp_path / "out.tif"
    result = decompress_to_geotiff(store64, out)
    with rasterio.open(out) as a, rasterio.open(INT16_NODATA) as b:
        for attr in ("crs", "transform", "nodata", "dtypes", "shape"):
            assert getattr(a, attr) == getattr(b, attr), attr
        x, y = a.read(), b.read()
    np.testing.assert_array_equal(x, open_dataset(store64)["image"].values)
    np.testing.assert_array_equal(x == -9999, y == -9999)
    assert result.bytes_written == out.stat().st_size
    ov = decompress_to_geotiff(store64, tmp_path / "ov.tif", overview=1)
    assert (ov.width, ov.height) == (34, 38)
    with pytest.raises(GeoError, match="already exists"):
        decompress_to_geotiff(store64, out)
    with pytest.raises(GeoError, match="no overview level 5"):
        decompress_to_geotiff(store64, tmp_path / "x.tif", overview=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "ov.tif"]


def test_incomplete_store_is_refused(tmp_path: Path, store64: Path) -> None:
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store64, copy)
    root = zarr.open_group(copy, mode="r+")
    meta = dict(root.attrs["dmenet_geo"])
    meta["complete"] = False
    root.attrs["dmenet_geo"] = meta
    with pytest.raises(GeoError, match="incomplete"):
        open_dataset(copy)
