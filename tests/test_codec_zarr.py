"""DMENet inside Zarr: v3 (``serializer="dmenet"``) and v2 (``compressor=DMENetCodec``) stores.

Each store is written here and reopened in a fresh interpreter that never imports ``dmenet_geo``
itself: zarr / numcodecs must find the codec through the package's entry points. The fresh process
must decode exactly what this process decodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from codec_helpers import (
    PSNR_MIN_DB,
    PSNR_MIN_DB_SYNTHETIC,
    assert_bitwise_equal,
    psnr,
    raster,
    real_tile,
    run_python,
)

from dmenet_geo.codec import DMENetCodec, DMENetCodecError


@dataclass(frozen=True)
class Case:
    make: Callable[[], np.ndarray]
    chunks: tuple[int, ...]
    config: dict[str, Any]
    fill_value: Any
    psnr_min: float
    nodata: float | None = None


def _rgb() -> np.ndarray:
    return np.ascontiguousarray(real_tile()[:, :150, :130])  # 3 x 3 chunks with partial edges


def _u16_nodata() -> np.ndarray:
    arr = raster(1, 100, 90, "uint16", seed=3)[0]
    arr[:10, :20] = 0
    arr[70:, 80:] = 0
    return arr


def _f32_nan() -> np.ndarray:
    arr = raster(2, 70, 70, "float32", seed=4)
    arr[0, :5, :9] = np.nan
    arr[1, 66:, 60:] = np.nan
    return arr


def _i16_16band() -> np.ndarray:
    return raster(16, 33, 40, "int16", seed=5)


CASES = {
    "uint8-rgb-edges": Case(_rgb, (3, 64, 64), {"quality": 4.0}, 0, PSNR_MIN_DB),
    "uint16-2d-nodata": Case(_u16_nodata, (64, 64), {"quality": 2.5, "nodata": 0}, 0,
                             PSNR_MIN_DB_SYNTHETIC, nodata=0),
    "float32-nan": Case(_f32_nan, (1, 64, 64), {"quality": 8}, float("nan"), PSNR_MIN_DB_SYNTHETIC),
    "int16-16band": Case(_i16_16band, (16, 33, 40), {"quality": 1}, 0, PSNR_MIN_DB_SYNTHETIC),
}
FORMATS = (3, 2)

READER = r"""
import json, os, sys
import numpy as np
import zarr

cases = json.loads(os.environ["ZARR_CASES"])
before = sorted(m for m in sys.modules if m.startswith("dmenet_geo"))
info = {}
for name, path, out in cases:
    arr = zarr.open_array(path, mode="r")
    np.save(out, arr[...])
    codec = arr.serializer if arr.metadata.zarr_format == 3 else arr.compressors[0]
    info[name] = {"codec": type(codec).__module__ + "." + type(codec).__qualname__,
                  "shape": list(arr.shape), "dtype": str(arr.dtype)}
after = "dmenet_geo" in sys.modules
print(json.dumps({"before": before, "after": after, "info": info}))
"""


def _create(path: Path, arr: np.ndarray, case: Case, zarr_format: int) -> zarr.Array:
    common = dict(shape=arr.shape, chunks=case.chunks, dtype=arr.dtype, fill_value=case.fill_value)
    if zarr_format == 3:
        return zarr.create_array(str(path), serializer={"name": "dmenet", "configuration": case.config},
                                 compressors=None, **common)
    return zarr.create_array(str(path), zarr_format=2, compressors=DMENetCodec(**case.config), filters=None,
                             **common)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[tuple[int, str], dict[str, Any]]:
    """Write every case in both formats, read back here and in one fresh process per format."""
    root = tmp_path_factory.mktemp("zarr")
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for fmt in FORMATS:
        jobs = []
        for name, case in CASES.items():
            arr = case.make()
            path = root / f"v{fmt}-{name}.zarr"
            z = _create(path, arr, case, fmt)
            z[...] = arr
            here = zarr.open_array(str(path), mode="r")[...]
            out[(fmt, name)] = {"original": arr, "path": path, "here": here,
                                "there_file": root / f"v{fmt}-{name}.npy"}
            jobs.append([name, str(path), str(out[(fmt, name)]["there_file"])])
        report = run_python(READER, {"ZARR_CASES": json.dumps(jobs)}, cwd=root)
        for name in CASES:
            out[(fmt, name)]["report"] = report
            out[(fmt, name)]["info"] = report["info"][name]
    return out


IDS = [f"v{fmt}-{name}" for fmt in FORMATS for name in CASES]
PARAMS = [(fmt, name) for fmt in FORMATS for name in CASES]


@pytest.mark.parametrize("fmt, name", PARAMS, ids=IDS)
def test_fresh_process_decodes_identically(stores, fmt: int, name: str) -> None:
    s = stores[(fmt, name)]
    report = s["report"]
    assert report["before"] == [], f"the reader imported {report['before']} before opening the store"
    assert report["after"], "the codec should have been loaded through its entry point"
    expected = {3: "dmenet_geo.codec.zarr3.DMENetZarrCodec", 2: "dmenet_geo.codec.numcodecs.DMENetCodec"}
    assert s["info"]["codec"] == expected[fmt]
    there = np.load(s["there_file"])
    assert_bitwise_equal(there, s["here"], f"v{fmt} {name}: fresh process vs this process")


@pytest.mark.parametrize("fmt, name", PARAMS, ids=IDS)
def test_zarr_round_trip_quality(stores, fmt: int, name: str) -> None:
    s, case = stores[(fmt, name)], CASES[name]
    original, here = s["original"], s["here"]
    assert here.shape == original.shape and here.dtype == original.dtype
    invalid = np.isnan(original) if original.dtype.kind == "f" else np.zeros(original.shape, bool)
    if case.nodata is not None:
        invalid |= original == case.nodata
        assert (here[original == case.nodata] == case.nodata).all(), "nodata not restored exactly"
        assert not (here[original != case.nodata] == case.nodata).any(), "valid pixel decoded to nodata"
    if original.dtype.kind == "f":
        assert_bitwise_equal(np.isnan(here), np.isnan(original), "NaN positions")
    valid = ~invalid
    peak = 255.0 if original.dtype == np.uint8 else float(original[valid].max() - original[valid].min())
    assert psnr(original[valid], here[valid], peak=peak) > case.psnr_min
    lo, hi = (0, 255) if original.dtype == np.uint8 else (original[valid].min(), original[valid].max())
    assert here[valid].min() >= lo and here[valid].max() <= hi


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"v{f}")
def test_metadata_names_the_codec_and_weights(stores, fmt: int) -> None:
    from codec_helpers import shipped_sha256

    s = stores[(fmt, "uint8-rgb-edges")]
    if fmt == 3:
        meta = json.loads((s["path"] / "zarr.json").read_text())
        (codec,) = meta["codecs"]
        assert codec["name"] == "dmenet"
        config = codec["configuration"]
    else:
        config = json.loads((s["path"] / ".zarray").read_text())["compressor"]
        assert config.pop("id") == "dmenet"
    assert config == {"quality": 4.0, "nodata": None, "model": "default",
                      "weights_sha256": shipped_sha256(), "value_range": None}


def test_stored_chunks_are_dmenet_chunks(stores) -> None:
    s = stores[(3, "uint8-rgb-edges")]
    chunk = (s["path"] / "c" / "0" / "0" / "0").read_bytes()
    assert chunk[:4] == b"DMNT"
    dec = DMENetCodec(quality=4.0).decode(chunk)
    assert dec.shape == (3, 64, 64)
    assert_bitwise_equal(dec, s["here"][:, :64, :64], "chunk (0, 0, 0)")


@pytest.mark.parametrize(
    "shape, chunks, dtype, match",
    [((17, 8, 8), (17, 8, 8), "uint8", "bands"), ((8, 8), (8, 8), "int32", "dtypes"),
     ((1, 1, 8, 8), (1, 1, 8, 8), "uint8", "dimensions"), ((1, 5000, 8), (1, 5000, 8), "uint8", "4096")],
    ids=["17-bands", "int32", "4d", "5000-rows"],
)
def test_v3_rejects_unsupported_arrays(tmp_path: Path, shape, chunks, dtype, match: str) -> None:
    with pytest.raises(DMENetCodecError, match=match):
        zarr.create_array(str(tmp_path / "bad.zarr"), shape=shape, chunks=chunks, dtype=dtype,
                          serializer={"name": "dmenet"}, compressors=None)


@pytest.mark.parametrize("refine", [0, 3], ids=["off", "on"])
def test_refine_round_trips_through_zarr_metadata(refine: int) -> None:
    from dmenet_geo.codec.zarr3 import DMENetZarrCodec

    meta = DMENetZarrCodec(quality=2.0, refine=refine).to_dict()
    assert json.loads(json.dumps(meta)) == meta
    # written only when on: plain stores keep the metadata earlier versions wrote
    assert meta["configuration"].get("refine") == (refine or None)
    again = DMENetZarrCodec.from_dict(meta)
    assert again.inner.refine == refine and again.to_dict() == meta
