"""``compress_geotiff``: the store it writes (georeferencing, dtype, nodata, overviews, footprint),
its options (quality, target PSNR, bands, AOI) and its failure behaviour (atomic, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
import zarr
from test_geo_common import (
    ALL_RASTERS,
    FAST,
    INT16_NODATA,
    PSNR_MIN_DB,
    UINT8_RGB,
    UINT8_RGBN,
    UINT16_RGB,
    leftovers,
    psnr,
    read_source,
)

import dmenet_geo
from dmenet_geo import CompressSummary, GeoError, compress_geotiff, open_dataset


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, tuple[Path, CompressSummary]]:
    """Each test raster compressed once at quality 4."""
    out = {}
    for src in ALL_RASTERS:
        store = tmp_path_factory.mktemp("stores") / (src.stem + ".zarr")
        out[src] = (store, compress_geotiff(src, store, quality=4.0, **FAST))
    return out


@pytest.mark.parametrize("src", ALL_RASTERS, ids=lambda p: p.stem)
def test_round_trip_keeps_shape_dtype_georef_nodata(src: Path, stores) -> None:  # type: ignore[no-untyped-def]
    store, summary = stores[src]
    original = read_source(src)
    with rasterio.open(src) as f:
        crs, transform, nodata = f.crs, f.transform, f.nodata
    ds = open_dataset(store)
    image = ds["image"]
    assert image.dims == ("band", "y", "x")
    assert image.shape == original.shape and image.dtype == original.dtype
    assert image.rio.crs == crs
    assert image.rio.transform() == transform
    decoded = image.values
    if nodata is not None:
        assert image.attrs["_FillValue"] == nodata and image.attrs["nodata"] == nodata
        assert image.rio.nodata == nodata
        assert (decoded[original == nodata] == nodata).all()  # nodata restored exactly
    assert psnr(original, decoded, nodata) > PSNR_MIN_DB
    # summary
    assert summary.bytes_in == original.nbytes
    assert 0 < summary.bytes_out < summary.bytes_in and summary.ratio > 1
    pixels = original.shape[1] * original.shape[2]
    assert summary.bpp == pytest.approx(8 * summary.bytes_out / pixels, rel=1e-3)
    assert summary.psnr is not None and summary.psnr_samples > 0
    assert summary.chunks_written + summary.chunks_skipped_nodata == summary.chunks_total == 9
    assert not leftovers(store.parent)


@pytest.mark.parametrize("src", [UINT8_RGB, INT16_NODATA], ids=lambda p: p.stem)
def test_no_valid_pixel_decodes_to_nodata(src: Path, stores) -> None:  # type: ignore[no-untyped-def]
    """The codec's promise: nodata pixels come back as nodata, and *only* they do (also in chunks that
    hold no nodata at all, such as the bottom edge chunks of the uint8 crop)."""
    store, _ = stores[src]
    original = read_source(src)
    nodata = open_dataset(store)["image"].attrs["nodata"]
    decoded = open_dataset(store)["image"].values
    np.testing.assert_array_equal(decoded == nodata, original == nodata)


@pytest.mark.parametrize("src", ALL_RASTERS, ids=lambda p: p.stem)
def test_plain_xarray_open_zarr_reads_the_store(src: Path, stores) -> None:  # type: ignore[no-untyped-def]
    """No dmenet_geo reader: the codec comes from the entry point, georeferencing from attributes."""
    import rioxarray  # noqa: F401

    store, _ = stores[src]
    ds = xr.open_zarr(store)
    with rasterio.open(src) as f:
        assert ds["image"].rio.crs == f.crs
        assert ds["image"].rio.transform() == f.transform
        expected_x = f.transform.c + f.transform.a * (np.arange(f.width) + 0.5)
    np.testing.assert_allclose(ds["x"].values, expected_x, rtol=0, atol=1e-9)
    assert ds["image"].encoding["dtype"] == np.dtype(read_source(src).dtype)
    assert "scale_factor" not in ds["image"].encoding and "add_offset" not in ds["image"].encoding
    same = xr.open_dataset(store, engine="zarr")
    assert same["image"].shape == ds["image"].shape and same["image"].rio.crs == ds["image"].rio.crs


def test_store_layout_attributes_and_overview(stores) -> None:  # type: ignore[no-untyped-def]
    store, summary = stores[UINT8_RGBN]
    root = zarr.open_group(store, mode="r")
    attrs = dict(root.attrs)
    assert attrs["proj:code"] == "EPSG:32618" and attrs["proj:wkt2"].startswith("PROJCRS[")
    assert attrs["spatial:dimensions"] == ["y", "x"] and attrs["spatial:shape"] == [300, 260]
    with rasterio.open(UINT8_RGBN) as f:
        assert attrs["spatial:transform"] == list(f.transform)[:6]
    image = root["image"]
    codecs = image.metadata.to_dict()["codecs"]
    assert codecs[0]["name"] == "dmenet" and codecs[0]["configuration"]["quality"] == 4.0
    assert image.chunks == (4, 128, 128)
    assert image.attrs["grid_mapping"] == "spatial_ref"
    sref = root["spatial_ref"].attrs
    assert {"crs_wkt", "spatial_ref", "GeoTransform"} <= set(sref)
    # band names from descriptions, and the descriptions themselves
    assert list(root["band_name"][:]) == ["red", "green", "blue", "nir"]
    ds = open_dataset(store)
    assert list(ds["band"].values) == [1, 2, 3, 4]
    assert list(ds["band_name"].values) == ["red", "green", "blue", "nir"]
    # overview: standard codec, averaged, same CRS, scaled transform
    ov = root["overviews/1/image"]
    assert [c["name"] for c in ov.metadata.to_dict()["codecs"]] == ["bytes", "blosc"]
    assert summary.overview_factors == (8,) and ov.shape == (4, 38, 33)
    full = read_source(UINT8_RGBN).astype(np.float64)
    np.testing.assert_allclose(ov[:, 1, 1], full[:, 8:16, 8:16].mean(axis=(1, 2)), atol=0.51)
    ovds = open_dataset(store, overview=1)
    assert ovds["image"].rio.crs == ds["image"].rio.crs
    assert ovds["image"].rio.resolution() == (40.0, -40.0)
    # footprint: GeoJSON in EPSG:4326 and WKT in the native CRS, covering the raster (no nodata)
    fp = shapely.from_wkt(attrs["footprint_wkt"])
    with rasterio.open(UINT8_RGBN) as f:
        assert fp.area == pytest.approx(shapely.box(*f.bounds).area, rel=1e-6)
    lon, lat = shapely.geometry.shape(attrs["footprint"]).centroid.coords[0]
    assert -80 < lon < -70 and 15 < lat < 25
    meta = attrs["dmenet_geo"]
    assert meta["complete"] and meta["chunks_written"] == 9 and meta["bytes_out"] == summary.bytes_out
    json.dumps(attrs)


def test_footprint_excludes_nodata(stores) -> None:  # type: ignore[no-untyped-def]
    store, _ = stores[INT16_NODATA]
    attrs = zarr.open_group(store, mode="r").attrs
    fp = shapely.from_wkt(attrs["footprint_wkt"])
    with rasterio.open(INT16_NODATA) as f:
        valid_fraction = float((f.read(1) != -9999).mean())
        full = shapely.box(*f.bounds).area
    assert fp.area / full == pytest.approx(valid_fraction, abs=0.05)
    assert shapely.geometry.shape(attrs["footprint"]).is_valid


def test_all_nodata_chunks_are_not_written(tmp_path: Path) -> None:
    """A chunk made entirely of nodata is skipped and reads back as nodata."""
    src = tmp_path / "holes.tif"
    with rasterio.open(INT16_NODATA) as f:
        profile, data = f.profile, f.read()
    data[:, :64, :64] = -9999
    with rasterio.open(src, "w", **profile) as f:
        f.write(data)
    summary = compress_geotiff(src, tmp_path / "holes.zarr", **{**FAST, "chunk": 64})
    assert summary.chunks_skipped_nodata >= 1
    assert summary.chunks_written == summary.chunks_total - summary.chunks_skipped_nodata
    root = zarr.open_group(tmp_path / "holes.zarr", mode="r")
    assert root["image"].nchunks_initialized == summary.chunks_written
    np.testing.assert_array_equal(open_dataset(tmp_path / "holes.zarr")["image"][:, :64, :64].values, -9999)


def test_band_selection_and_uint16(tmp_path: Path) -> None:
    summary = compress_geotiff(UINT16_RGB, tmp_path / "b.zarr", bands=[3, 1], overview=False, **FAST)
    ds = open_dataset(tmp_path / "b.zarr")
    assert list(ds["band"].values) == [3, 1] and ds["image"].dtype == np.uint16
    original = read_source(UINT16_RGB)[[2, 0]]
    assert psnr(original, ds["image"].values, None) > PSNR_MIN_DB
    assert summary.overview_factors == () and "overviews" not in zarr.open_group(tmp_path / "b.zarr")


def test_aoi_writes_only_intersecting_chunks(tmp_path: Path) -> None:
    with rasterio.open(UINT8_RGBN) as f:
        t = f.transform
    # a small square around pixel (row 20, col 20), given in EPSG:4326
    from dmenet_geo.geo.aoi import reproject_geometry

    square = shapely.box(*(t @ (10, 30)), *(t @ (30, 10)))
    aoi = reproject_geometry(square, "EPSG:32618", "EPSG:4326").wkt
    summary = compress_geotiff(UINT8_RGBN, tmp_path / "aoi.zarr", aoi=aoi, **FAST)
    assert summary.chunks_written == 1 and summary.chunks_outside_aoi == 8
    ds = open_dataset(tmp_path / "aoi.zarr")
    assert ds["image"].shape == (4, 300, 260)  # the grid is the raster's; unwritten chunks read as fill
    footprint = shapely.from_wkt(zarr.open_group(tmp_path / "aoi.zarr").attrs["footprint_wkt"])
    assert footprint.area == pytest.approx(128 * 128 * 25, rel=1e-6)
    with pytest.raises(GeoError, match="does not intersect"):
        compress_geotiff(UINT8_RGBN, tmp_path / "far.zarr", aoi="POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", **FAST)
    assert not (tmp_path / "far.zarr").exists() and not leftovers(tmp_path)


def test_target_psnr_picks_per_chunk_quality(tmp_path: Path) -> None:
    low = compress_geotiff(UINT8_RGB, tmp_path / "low.zarr", target_psnr=1.0, overview=False, **FAST)
    assert low.quality_max == 1.0  # any chunk reaches 1 dB at the lowest quality
    target = 14.0
    summary = compress_geotiff(UINT8_RGB, tmp_path / "t.zarr", target_psnr=target, overview=False,
                               **{**FAST, "chunk": 64})
    assert summary.target_psnr == target and summary.psnr_samples == summary.chunks_written
    assert 1.0 <= summary.quality_min <= summary.quality_max <= 8.0
    ds = open_dataset(tmp_path / "t.zarr")
    original = read_source(UINT8_RGB)
    decoded = ds["image"].values
    reached = 0
    for i in range(0, 270, 64):
        for j in range(0, 300, 64):
            a, b = original[:, i : i + 64, j : j + 64], decoded[:, i : i + 64, j : j + 64]
            if (a != 0).any():
                reached += psnr(a, b, 0) >= target - 1e-6
    # chunks that cannot reach the target even at quality 8 keep quality 8
    assert reached >= 1 or summary.quality_min == 8.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        ("text", "not a readable raster"),
        ("missing", "no such file"),
        ("nocrs", "no CRS"),
        ("badband", "band 7 does not exist"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_store(tmp_path: Path, make: str, match: str) -> None:
    src, bands = tmp_path / "in.tif", None
    if make == "text":
        src.write_text("this is not a raster\n")
    elif make == "nocrs":
        data = read_source(UINT8_RGB)
        with rasterio.open(src, "w", driver="GTiff", width=300, height=270, count=3, dtype="uint8") as f:
            f.write(data)
    elif make == "badband":
        src, bands = UINT8_RGB, [1, 7]
    with pytest.raises(GeoError, match=match) as err:
        compress_geotiff(src, tmp_path / "out.zarr", bands=bands, **FAST)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.zarr").exists() and not leftovers(tmp_path)


def test_failure_during_encoding_removes_partial_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmenet_geo.codec import DMENetCodec

    calls = {"n": 0}
    original = DMENetCodec.encode_batch

    def failing(self, arrays):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("device lost")
        return original(self, arrays)

    monkeypatch.setattr(DMENetCodec, "encode_batch", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        compress_geotiff(UINT8_RGB, tmp_path / "x.zarr", chunks_per_task=2, **FAST)
    assert calls["n"] == 2
    assert not (tmp_path / "x.zarr").exists() and not leftovers(tmp_path)


def test_existing_store_needs_overwrite(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    compress_geotiff(UINT8_RGB, store, overview=False, **FAST)
    with pytest.raises(GeoError, match="already exists"):
        compress_geotiff(UINT8_RGB, store, **FAST)
    summary = compress_geotiff(UINT8_RGB, store, quality=2.0, overwrite=True, overview=False, **FAST)
    assert summary.quality == 2.0 and not leftovers(tmp_path)
    assert dmenet_geo.store_info(store).quality == 2.0


def test_refine_writes_a_store_plain_readers_decode(tmp_path: Path) -> None:
    plain = compress_geotiff(UINT8_RGB, tmp_path / "p.zarr", quality=2.0, overview=False, **FAST)
    refined = compress_geotiff(UINT8_RGB, tmp_path / "r.zarr", quality=2.0, overview=False, refine=3, **FAST)
    meta = json.loads((tmp_path / "r.zarr" / "image" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"]["refine"] == 3
    original = read_source(UINT8_RGB)
    decoded = xr.open_zarr(tmp_path / "r.zarr", mask_and_scale=False)["image"].values
    assert decoded.shape == original.shape
    valid = original != 0
    assert (decoded[~valid] == 0).all()  # nodata still exact
    assert psnr(original, decoded, 0) > PSNR_MIN_DB
    assert refined.chunks_written == plain.chunks_written and refined.psnr is not None
    assert refined.bytes_out != plain.bytes_out  # the setting reached the encoder, not only the metadata
    info = dmenet_geo.store_info(tmp_path / "r.zarr")
    assert info.quality == 2.0 and info.refine == 3 and "refined for 3 steps" in str(info)
    assert dmenet_geo.store_info(tmp_path / "p.zarr").refine == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"quality": 0.5}, {"quality": 9}, {"chunk": 100}, {"target_psnr": -3}, {"refine": -1},
     {"refine": 2, "target_psnr": 30.0}],
    ids=["quality-low", "quality-high", "chunk", "target-psnr", "refine-negative", "refine-with-target"],
)
def test_bad_options(tmp_path: Path, kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(GeoError):
        compress_geotiff(UINT8_RGB, tmp_path / "o.zarr", **{**FAST, **kwargs})
    assert not list(tmp_path.iterdir())


def test_threaded_scheduler_matches_synchronous(tmp_path: Path) -> None:
    a = compress_geotiff(UINT8_RGB, tmp_path / "a.zarr", overview=False, **FAST)
    b = compress_geotiff(UINT8_RGB, tmp_path / "b.zarr", overview=False, chunk=128, progress=False,
                         scheduler="threads", num_workers=2, chunks_per_task=3)
    assert a.bytes_out == b.bytes_out
    np.testing.assert_array_equal(open_dataset(tmp_path / "a.zarr")["image"].values,
                                  open_dataset(tmp_path / "b.zarr")["image"].values)


def test_reads_are_block_windows_never_the_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory bound: every rasterio read is one block of at most ``chunks_per_task`` chunks."""
    import dmenet_geo.geo.tasks as tasks

    sizes: list[tuple[int, int]] = []
    original = tasks.read_window

    def recording(source, row, col, height, width):  # type: ignore[no-untyped-def]
        sizes.append((height, width))
        return original(source, row, col, height, width)

    monkeypatch.setattr(tasks, "read_window", recording)
    summary = compress_geotiff(UINT8_RGB, tmp_path / "m.zarr", chunks_per_task=2, **{**FAST, "chunk": 64})
    assert summary.chunks_total == 25 and len(sizes) == 15  # 5 rows x ceil(5 / 2) blocks
    assert max(h * w for h, w in sizes) <= 2 * 64 * 64
