"""``pipelines/benchmark.py --quick``: DMENet and JPEG 2000 through the same GeoTIFF -> Zarr -> Dask
pipeline on a small real-imagery mosaic; the JSON report has every field, with sane values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "pipelines" / "benchmark.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--cache-dir", str(tmp / "cache"), "--json", str(out)],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DMENet / JPEG 2000 time" in proc.stdout  # the printed table
    assert not list((tmp / "cache").glob("work-*")), "the benchmark's stores should be removed"
    return json.loads(out.read_text())


@pytest.mark.slow
def test_quick_report_fields_and_values(report: dict) -> None:
    assert report["host"]["cpus"] >= 1
    (mosaic,) = report["mosaics"]
    assert mosaic["size"] == 1024 and mosaic["crs"] == "EPSG:32610" and mosaic["bytes"] > 0
    (run,) = report["runs"]
    assert run["size"] == 1024 and run["chunks"] == 16 and run["window"] == 512
    assert set(run["codecs"]) == {"dmenet", "jpeg2k"}
    for name, res in run["codecs"].items():
        comp, dec, win, qual = res["compress"], res["decode"], res["window"], res["quality"]
        assert comp["seconds"] > 0 and comp["chunks"] == 16 and comp["chunks_per_s"] > 0, name
        assert comp["ratio"] > 1 and 0 < comp["bpp"] < 24, name
        assert comp["bytes_in"] == 3 * 1024 * 1024 and comp["bytes_out"] > 0, name
        assert dec["seconds"] > 0 and dec["chunks"] == 16 and dec["chunks_per_s"] > 0, name
        assert 0 <= dec["mean_value"] <= 255, name
        assert win["seconds"] > 0 and win["shape"] == [3, 512, 512] and win["chunks"] == 9, name
        for step in (comp, dec, win):
            assert step["peak_rss_mb"] >= step["base_rss_mb"] > 0, name
        assert qual["chunks"] == 16 and qual["psnr_db"] > 0, name
    dm = run["codecs"]["dmenet"]
    assert dm["compress"]["device"] in ("cpu", "cuda") or dm["compress"]["device"].startswith("cuda")
    assert dm["compress"]["batch_size"] >= 1 and dm["compress"]["torch_threads"] >= 1
    assert run["codecs"]["jpeg2k"]["setting"]["jpeg2k_level"] >= 20
    assert dm["setting"] == {"quality": 4.0, "model": "default"}
    ratios = run["dmenet_over_jpeg2k"]
    assert set(ratios) == {"compress_time", "decode_time", "window_time", "compression_ratio"}
    assert all(v > 0 for v in ratios.values())
