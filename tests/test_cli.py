"""The ``dmenet-geo`` command line: commands, JSON output, one-line errors and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from test_geo_common import INT16_NODATA, UINT8_RGB, UINT8_RGBN, leftovers

from dmenet_geo.cli.main import main

FAST_ARGS = ["--chunk", "128", "--workers", "1", "-q"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("cli") / "l5.zarr"
    assert main(["compress", str(INT16_NODATA), str(store), *FAST_ARGS]) == 0
    return store


def test_compress_prints_summary_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compress", str(UINT8_RGBN), str(tmp_path / "a.zarr"),
                         "--bands", "4,1-2", "--quality", "3", *FAST_ARGS)
    assert code == 0 and "ratio" in out and "bpp" in out and err == ""
    code, out, _ = run(capsys, "compress", str(UINT8_RGB), str(tmp_path / "b.zarr"), "--json",
                       "--no-overview",
                       *FAST_ARGS)
    summary = json.loads(out)
    assert code == 0 and summary["quality"] == 4.0 and summary["bands"] == [1, 2, 3]
    assert summary["overview_factors"] == [] and summary["bytes_out"] > 0


def test_compress_with_another_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "a.zarr"
    code, _, err = run(capsys, "compress", str(UINT8_RGB), str(store), "--model", "default-e291bc13",
                       "--no-overview", *FAST_ARGS)
    assert code == 0, err
    code, out, _ = run(capsys, "info", str(store), "--json")
    assert code == 0 and '"model": "default-e291bc13"' in out


def test_compress_with_aoi_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with rasterio.open(UINT8_RGBN) as f:
        t = f.transform
    import shapely

    from dmenet_geo.geo.aoi import reproject_geometry

    square = reproject_geometry(shapely.box(*(t @ (10, 30)), *(t @ (30, 10))), "EPSG:32618", "EPSG:4326")
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(shapely.geometry.mapping(square)))
    code, out, _ = run(capsys, "compress", str(UINT8_RGBN), str(tmp_path / "a.zarr"), "--aoi", str(aoi),
                       "--json", *FAST_ARGS)
    assert code == 0 and json.loads(out)["chunks_written"] == 1


def test_info_text_and_json(cli_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", str(cli_store))
    assert code == 0 and "EPSG:4326" in out and "270 x 300" in out and "overviews/1" in out
    code, out, _ = run(capsys, "info", str(cli_store), "--json")
    info = json.loads(out)
    with rasterio.open(INT16_NODATA) as f:
        assert info["transform"] == list(f.transform)[:6]
    assert info["crs"] == "EPSG:4326" and info["nodata"] == -9999 and info["dtype"] == "int16"
    assert info["ratio"] > 1 and info["footprint_geojson"]["type"] in ("Polygon", "MultiPolygon")


def test_verify_and_decompress(cli_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", str(cli_store), "-q")
    assert code == 0 and "9/9 stored chunks decode" in out and "OK" in out
    code, out, _ = run(capsys, "verify", str(cli_store), "--json")
    report = json.loads(out)
    assert report["ok"] and report["chunks_ok"] == report["chunks_stored"] > 0
    tif = tmp_path / "out.tif"
    code, out, _ = run(capsys, "decompress", str(cli_store), str(tif), "-q")
    assert code == 0
    with rasterio.open(tif) as a, rasterio.open(INT16_NODATA) as b:
        assert (a.crs, a.transform, a.nodata, a.shape) == (b.crs, b.transform, b.nodata, b.shape)


def test_verify_reports_corrupt_chunk(
    cli_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "bad.zarr"
    shutil.copytree(cli_store, store)
    chunk = store / "image" / "c" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    code, out, err = run(capsys, "verify", str(store), "-q")
    assert code == 1 and "FAILED" in out
    assert err.startswith("dmenet-geo: error: 1 of") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["compress", "{tmp}/missing.tif", "{tmp}/o.zarr"], "no such file"),
        (["compress", "{text}", "{tmp}/o.zarr"], "not a readable raster"),
        (["compress", str(UINT8_RGB), "{tmp}/o.zarr", "--bands", "9"], "band 9 does not exist"),
        (["compress", str(UINT8_RGB), "{tmp}/o.zarr", "--quality", "11"], "quality must be"),
        (["compress", str(UINT8_RGB), "{tmp}/o.zarr", "--aoi", "POLYGON ((0 0"], "neither WKT"),
        (["compress", str(UINT8_RGB), "{tmp}/o.zarr", "--refine", "-2"], "refine must be"),
        (["compress", str(UINT8_RGB), "{tmp}/o.zarr", "--model", "nope"],
         "unknown model 'nope'; shipped: default"),
        (["info", "{tmp}"], "not a Zarr v3 store"),
        (["info", "{tmp}/nothing.zarr"], "no such store"),
        (["decompress", "{tmp}/nothing.zarr", "{tmp}/x.tif"], "no such store"),
    ],
)
def test_errors_are_one_line_exit_1_and_leave_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    argv = [a.format(tmp=tmp_path, text=text) for a in argv]
    code, out, err = run(capsys, *argv, *(FAST_ARGS if argv[0] == "compress" else []))
    assert code == 1, err
    assert err.startswith("dmenet-geo: error: ") and expected in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists() and not leftovers(tmp_path)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["compress"], ["compress", "a", "b", "--bands", "x"], ["nope"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("dmenet-geo: error: ") and err.count("\n") == 1


def test_debug_shows_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such store"):
        main(["--debug", "info", str(tmp_path / "missing.zarr")])


def test_console_script_in_a_fresh_process(cli_store: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("dmenet-geo")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dmenet_geo.cli.main"]
    ok = subprocess.run([*cmd, "info", str(cli_store), "--json"], capture_output=True, text=True, timeout=240)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["crs"] == "EPSG:4326"
    bad = subprocess.run([*cmd, "info", str(tmp_path / "none.zarr")], capture_output=True, text=True,
                         timeout=240)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("dmenet-geo: error: ")
    assert "Traceback" not in bad.stderr


def test_a_reader_that_goes_away_stops_the_command_quietly(cli_store: Path) -> None:
    exe = Path(sys.executable).with_name("dmenet-geo")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dmenet_geo.cli.main"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first byte, as `| head -0` would
    try:
        done = subprocess.run([*cmd, "info", str(cli_store), "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=240)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""  # no error line, no traceback, no "Exception ignored" at exit


def test_a_broken_pipe_elsewhere_is_an_error(
    cli_store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dmenet_geo.geo

    def lost_connection(*_: object, **__: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a remote store's socket, not our stdout

    monkeypatch.setattr(dmenet_geo.geo, "store_info", lost_connection)
    code, out, err = run(capsys, "info", str(cli_store))
    assert code == 1 and out == ""
    assert err.strip() == "dmenet-geo: error: [Errno 32] Broken pipe"
