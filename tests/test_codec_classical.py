"""The JPEG 2000 baseline codec (``dmenet_geo.jpeg2k``): numcodecs and Zarr v3 codec, entry points,
and ``compress_geotiff(codec="jpeg2k")`` writing the same store layout as DMENet."""

from __future__ import annotations

import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import rasterio
import zarr
from codec_helpers import psnr, raster, real_tile, run_python

import dmenet_geo
from dmenet_geo.codec import DMENetCodecError, Jpeg2kCodec, register_codecs
from dmenet_geo.codec.classical import JPEG2K_ID, Jpeg2kZarrCodec
from dmenet_geo.geo import GeoError

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize(("bands", "dtype"), [(3, "uint8"), (1, "uint8"), (4, "uint16"), (2, "int16")])
def test_lossless_round_trip(bands: int, dtype: str) -> None:
    arr = raster(bands, 40, 57, dtype, seed=bands)
    codec = Jpeg2kCodec(level=0)
    (out,) = codec.decode_batch([codec.encode(arr)])
    assert out.shape == arr.shape and out.dtype == arr.dtype
    assert np.array_equal(out, arr)


def test_lossy_level_is_a_psnr_target() -> None:
    tile = np.ascontiguousarray(real_tile()[:, :128, :128])
    sizes, quality = [], []
    for level in (30.0, 40.0):
        codec = Jpeg2kCodec(level=level)
        data = codec.encode(tile)
        sizes.append(len(data))
        quality.append(psnr(tile, codec.decode(data)))
    assert sizes[0] < sizes[1] < tile.nbytes
    assert quality[0] < quality[1]
    assert abs(quality[1] - 40.0) < 4.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"level": -1}, "level"), ({"level": "40"}, "level"), ({"level": float("nan")}, "level"),
    ({"reversible": 1}, "reversible"),
])
def test_bad_config(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(DMENetCodecError, match=match):
        Jpeg2kCodec(**kwargs)


def test_float32_is_refused() -> None:
    with pytest.raises(DMENetCodecError, match="float32"):
        Jpeg2kCodec().encode(np.zeros((3, 8, 8), dtype=np.float32))


def test_config_round_trip_and_registration() -> None:
    register_codecs()
    codec = numcodecs.get_codec({"id": JPEG2K_ID, "level": 35})
    assert isinstance(codec, Jpeg2kCodec) and codec.get_config() == {"id": JPEG2K_ID, "level": 35.0,
                                                                    "reversible": None}
    z = Jpeg2kZarrCodec.from_dict({"name": JPEG2K_ID, "configuration": {"level": 35}})
    assert z.to_dict() == {"name": JPEG2K_ID, "configuration": {"level": 35.0, "reversible": None}}


def test_zarr_v3_store_opens_in_a_fresh_process(tmp_path: Path) -> None:
    """Written with the serializer; a process that never imports dmenet_geo reads it (entry points)."""
    arr = np.ascontiguousarray(real_tile()[:, :150, :130])
    path = tmp_path / "j2k.zarr"
    z = zarr.create_array(str(path), shape=arr.shape, chunks=(3, 64, 64), dtype="uint8",
                          serializer={"name": JPEG2K_ID, "configuration": {"level": 0}}, compressors=None)
    z[:] = arr
    report = run_python(f"""
        import json, numpy as np, zarr
        a = zarr.open_array({str(path)!r}, mode="r")[:]
        print(json.dumps({{"sum": int(a.astype(np.int64).sum()), "shape": list(a.shape)}}))
    """)
    assert report["shape"] == list(arr.shape)
    assert report["sum"] == int(arr.astype(np.int64).sum())  # lossless: exact


def test_compress_geotiff_with_jpeg2k(tmp_path: Path) -> None:
    src = DATA / "landsat7_rgb_uint8_300x270.tif"
    store = tmp_path / "scene.zarr"
    summary = dmenet_geo.compress_geotiff(src, store, progress=False, chunk=128, codec="jpeg2k",
                                          jpeg2k_level=45)
    assert summary.ratio > 1 and summary.chunks_written > 0
    root = json.loads((store / "image" / "zarr.json").read_text())
    assert root["codecs"][0] == {"name": JPEG2K_ID, "configuration": {"level": 45.0, "reversible": None}}
    ds = dmenet_geo.open_dataset(store)
    assert ds.attrs["dmenet_geo"]["serializer"] == JPEG2K_ID and ds.attrs["dmenet_geo"]["model"] is None
    with rasterio.open(src) as f:
        ref = f.read()
    got = ds["image"].values
    assert got.shape == ref.shape and got.dtype == ref.dtype
    valid = ref != 0
    assert psnr(ref[valid], got[valid]) > 30
    report = dmenet_geo.verify_store(store)
    assert report.ok and report.chunks_ok == report.chunks_stored > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"codec": "jpeg2k", "target_psnr": 40}, "jpeg2k_level"),
    ({"codec": "png"}, "codec must be"),
])
def test_compress_geotiff_codec_errors(tmp_path: Path, kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(GeoError, match=match):
        dmenet_geo.compress_geotiff(DATA / "landsat7_rgb_uint8_300x270.tif", tmp_path / "x.zarr",
                                    progress=False, **kwargs)
    assert not list(tmp_path.iterdir())
