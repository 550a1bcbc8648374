"""The rate-distortion pipeline: Bjontegaard metrics, classical codec sweeps, learned curves, the
CLI end to end, and the notebook (slow)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from codec_helpers import shipped_sha256  # noqa: E402

from dmenet_geo.model import DMENet  # noqa: E402
from pipelines import evaluate as ev  # noqa: E402
from pipelines.rd.bd import bd_quality, bd_rate, rate_differences  # noqa: E402

VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"
NOTEBOOK = REPO_ROOT / "notebooks" / "rate_distortion.ipynb"

# A made-up but realistic anchor curve: bpp and PSNR (dB)
RATES = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNRS = [26.0, 28.5, 31.0, 34.0, 37.5]


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 256x256 RGB PNG tiles: the sample tiles, else a centre crop of a val image."""
    from PIL import Image

    samples = sorted((REPO_ROOT / "sample_tiles").glob("*.png"))
    if samples:
        return samples[0].parent
    vals = (
        sorted(p for p in VAL.rglob("*") if p.suffix.lower() in {".jpg", ".png", ".tif"})
        if VAL.is_dir()
        else []
    )
    if not vals:
        pytest.skip("no sample tiles and no validation images")
    out = tmp_path_factory.mktemp("tiles")
    with Image.open(vals[0]) as src:
        rgb = src.convert("RGB")
    left, top = (rgb.width - 256) // 2, (rgb.height - 256) // 2
    rgb.crop((left, top, left + 256, top + 256)).save(out / "crop.png")
    return out


@pytest.fixture(scope="module")
def one_tile(tile_dir: Path) -> np.ndarray:
    tiles = ev.load_tiles(ev.list_images(tile_dir, limit=1))
    assert len(tiles) == 1
    return tiles[0]


# --------------------------------------------------------------------- BD-rate


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_curve_against_itself_is_zero(method: str) -> None:
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0.0, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES, PSNRS, method=method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_rates_scaled_by_0_8_is_minus_20_percent(method: str) -> None:
    scaled = [0.8 * r for r in RATES]
    assert bd_rate(RATES, PSNRS, scaled, PSNRS, method=method) == pytest.approx(-20.0, abs=1e-9)
    # and the other way round: 1 / 0.8 = +25 %
    assert bd_rate(scaled, PSNRS, RATES, PSNRS, method=method) == pytest.approx(25.0, abs=1e-9)


def test_rate_differences_are_the_scaling_at_every_point_inside_the_anchor() -> None:
    test_rates = [0.8 * r for r in RATES] + [1.0]
    test_psnrs = [*PSNRS, PSNRS[-1] + 5]  # the last point lies beyond the anchor: left out
    diffs = rate_differences(RATES, PSNRS, test_rates, test_psnrs)
    assert [q for q, _ in diffs] == pytest.approx(PSNRS)
    assert [d for _, d in diffs] == pytest.approx([-20.0] * len(PSNRS), abs=1e-9)


def test_bd_script_prints_the_average_and_each_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.rd import bd

    def curve(rates: list[float]) -> dict:
        pairs = zip(rates, PSNRS, strict=True)
        return {"points": [{"bpp": r, "psnr": q, "ms_ssim_db": q / 2} for r, q in pairs]}

    path = tmp_path / "rd.json"
    path.write_text(json.dumps({"curves": {"DMENet": curve([0.5 * r for r in RATES]), "WebP": curve(RATES)}}))
    assert bd.main([str(path), "--anchor", "WebP"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "DMENet against WebP (psnr): BD-rate -50.0 %"
    assert len(lines) == 1 + len(PSNRS) and all(line.endswith("-50.0 %") for line in lines[1:])
    with pytest.raises(SystemExit):
        bd.main([str(path), "--anchor", "AVIF"])


def test_bd_script_compares_the_chosen_settings_of_the_test_curve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--settings`` keeps those points of the test curve: a curve 20 % below the anchor at its even
    settings (where the anchor was measured) and 50 % below at its odd ones reads -20 % over the even
    ones alone."""
    from pipelines.rd import bd

    measured = list(enumerate(zip(RATES, PSNRS, strict=True)))
    points = [{"setting": float(i), "bpp": r * (0.8 if i % 2 == 0 else 0.5), "psnr": q}
              for i, (r, q) in measured]
    anchor = [{"bpp": r, "psnr": q} for i, (r, q) in measured if i % 2 == 0]
    path = tmp_path / "rd.json"
    path.write_text(json.dumps({"curves": {"DMENet": {"points": points}, "WebP": {"points": anchor}}}))
    even = ",".join(str(i) for i in range(0, len(RATES), 2))
    assert bd.main([str(path), "--anchor", "WebP", "--settings", even]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "DMENet against WebP (psnr): BD-rate -20.0 %"
    assert len(lines) == 1 + len(range(0, len(RATES), 2))
    with pytest.raises(SystemExit):  # a setting the curve does not have
        bd.main([str(path), "--anchor", "WebP", "--settings", "0,99"])


def test_bd_script_stops_quietly_when_its_reader_goes_away() -> None:
    import os
    import subprocess

    read_end, write_end = os.pipe()
    os.close(read_end)  # `bd.py ... | head -0`
    try:
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "pipelines" / "rd" / "bd.py"),
             str(REPO_ROOT / "docs" / "rate_distortion_val_wide.json"), "--anchor", "WebP"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_bd_script_takes_the_anchor_from_another_run_of_the_same_tiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.rd import bd

    def run(name: str, rates: list[float], tiles: list[str]) -> Path:
        points = [{"bpp": r, "psnr": q, "ms_ssim_db": q / 2} for r, q in zip(rates, PSNRS, strict=True)]
        path = tmp_path / f"{name}-{len(tiles)}.json"
        path.write_text(json.dumps({"meta": {"image_files": tiles, "tile": 256},
                                    "curves": {name: {"points": points}}}))
        return path

    tiles = ["a.jpg", "b.jpg"]
    test, anchor = run("DMENet", [0.8 * r for r in RATES], tiles), run("WebP", RATES, tiles)
    assert bd.main([str(test), "--anchor", "WebP", "--anchor-json", str(anchor)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "DMENet against WebP (psnr): BD-rate -20.0 %"
    other_tiles = run("WebP", RATES, tiles[:1])
    with pytest.raises(SystemExit):  # measured on other tiles
        bd.main([str(test), "--anchor", "WebP", "--anchor-json", str(other_tiles)])
    with pytest.raises(SystemExit):  # the test curve must be in the first JSON
        bd.main([str(test), "--anchor", "WebP", "--anchor-json", str(anchor), "--test", "AVIF"])


def test_bd_rate_sign_follows_a_psnr_shift() -> None:
    better = [q + 1.0 for q in PSNRS]
    worse = [q - 1.0 for q in PSNRS]
    assert bd_rate(RATES, PSNRS, RATES, better) < 0  # same bits, more quality: cheaper at equal PSNR
    assert bd_rate(RATES, PSNRS, RATES, worse) > 0
    assert bd_quality(RATES, PSNRS, RATES, better) == pytest.approx(1.0, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES, worse) == pytest.approx(-1.0, abs=1e-9)


def test_bd_rate_ignores_point_order_and_handles_no_overlap() -> None:
    order = [3, 0, 4, 2, 1]
    shuffled_r, shuffled_q = [RATES[i] for i in order], [PSNRS[i] for i in order]
    scaled = [0.8 * r for r in shuffled_r]
    assert bd_rate(RATES, PSNRS, scaled, shuffled_q) == pytest.approx(-20.0, abs=1e-9)
    far = [q + 50 for q in PSNRS]
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, far))
    assert math.isnan(bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS))  # one point is not a curve
    assert math.isnan(bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS, method="cubic"))  # cubic needs 4
    with pytest.raises(ValueError):
        bd_rate([0.0, *RATES[1:]], PSNRS, RATES, PSNRS)


def test_bd_rate_integrates_only_the_overlap() -> None:
    # log-rate linear in PSNR (each curve interpolates exactly); the test curve covers only the upper
    # half of the anchor's PSNR range, at half its rate there
    psnrs = [26.0, 29.0, 32.0, 35.0, 38.0]
    test_r = [0.5 * r for r in RATES[2:]]
    assert bd_rate(RATES, psnrs, test_r, psnrs[2:]) == pytest.approx(-50.0, abs=1e-9)
    # BD-PSNR at half the rate: one rate doubling is worth 3 dB on this curve
    assert bd_quality(RATES, psnrs, test_r, psnrs[2:]) == pytest.approx(3.0, abs=1e-9)


# ------------------------------------------------------------- tiles and codecs


def test_load_tiles_cuts_non_overlapping_tiles(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 600, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (100, 100), dtype=np.uint8)).save(tmp_path / "small.png")
    tiles = ev.load_tiles(ev.list_images(tmp_path), tile=128)
    assert len(tiles) == 2 * 4  # 300x600 -> 2 rows x 4 columns; 100x100 has no full tile
    assert all(t.shape == (128, 128, 3) and t.dtype == np.uint8 for t in tiles)


def test_list_images_limit_spreads_over_the_list(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"{i:02d}.png").touch()
    picked = ev.list_images(tmp_path, limit=3)
    assert [p.name for p in picked] == ["00.png", "04.png", "09.png"]
    assert len(ev.list_images(tmp_path)) == 10


def test_classical_codecs_are_found() -> None:
    found = ev.available_codecs()
    assert found, "imagecodecs provides none of JPEG 2000, WebP, AVIF, JPEG XL"
    assert set(found) <= set(ev.CLASSICAL_CODECS)


@pytest.mark.parametrize("key", list(ev.CLASSICAL_CODECS))
def test_classical_sweep_gives_increasing_bpp(key: str, one_tile: np.ndarray) -> None:
    codec = ev.CLASSICAL_CODECS[key]
    if not codec.available:
        pytest.skip(f"imagecodecs has no {key}")
    points = ev.sweep_classical(codec, [one_tile], threads=1, progress=False)
    bpp = [p.bpp for p in points]
    assert len(points) == len(codec.settings)
    assert all(b > a for a, b in zip(bpp, bpp[1:], strict=False)), bpp
    assert points[-1].psnr > points[0].psnr + 5
    assert points[-1].ms_ssim_db > points[0].ms_ssim_db
    assert all(p.tiles == 1 and 10 < p.psnr < 60 for p in points)
    assert bpp[0] < 0.5 and bpp[-1] > 1.0  # the default sweep spans low and high rates


def test_tile_metrics_of_an_exact_copy_are_capped(one_tile: np.ndarray) -> None:
    m = ev.tile_metrics(one_tile, one_tile.copy())
    assert m.mse == 0 and m.psnr == ev.DB_CAP and m.ms_ssim_db == ev.DB_CAP


# ------------------------------------------------------------------- learned codecs


def test_dmenet_curve_from_a_weights_file(tmp_path: Path, small_model: DMENet, one_tile: np.ndarray) -> None:
    weights = tmp_path / "small.pt"
    torch.save(small_model.state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"config": small_model.config.to_dict()}))
    curve = ev.evaluate_dmenet([one_tile, one_tile[::-1].copy()], [1, 4.5, 8], weights, progress=False)
    assert curve.kind == "dmenet" and curve.rate_source and curve.rate_source.startswith("container")
    assert [p.setting for p in curve.points] == [1.0, 4.5, 8.0]
    bare = ev.evaluate_dmenet([one_tile, one_tile[::-1].copy()], [1, 4.5, 8], weights, rate="latents",
                              progress=False)
    assert bare.rate_source and bare.rate_source.startswith("latents")
    for packed, strings in zip(curve.points, bare.points, strict=True):  # 27-33 header bytes per tile
        assert 27 * 8 <= (packed.bpp - strings.bpp) * one_tile.shape[0] * one_tile.shape[1] <= 33 * 8
        assert packed.psnr == strings.psnr
    assert all(p.bpp > 0 and p.tiles == 2 and math.isfinite(p.psnr) for p in curve.points)
    with pytest.raises(ValueError):
        ev.evaluate_dmenet([one_tile], [0.5], weights, progress=False)
    refined = ev.evaluate_dmenet([one_tile], [1], weights, progress=False, refine=2)
    assert refined.rate_source and refined.rate_source.endswith("latents refined for 2 steps per tile")
    assert refined.points[0].bpp > 0 and math.isfinite(refined.points[0].psnr)


def test_weights_measured_against_themselves_differ_by_nothing(
    tmp_path: Path, small_model: DMENet, tile_dir: Path
) -> None:
    """A weights file as the model and as a ``--baseline`` is measured alike (the chunk container
    both times): no header bytes tilt the BD-rate toward either."""
    weights = tmp_path / "small.pt"
    torch.save(small_model.state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"config": small_model.config.to_dict()}))
    result = ev.evaluate(tile_dir, limit=1, model=weights, qualities=[1, 4, 8], codecs=[],
                         baselines=[weights], progress=False)
    main, base = result.curves[ev.DMENET], result.curves["DMENet (small)"]
    assert main.rate_source and base.rate_source
    assert main.rate_source.startswith("container") and base.rate_source.startswith("container")
    assert [(p.bpp, p.psnr) for p in main.points] == [(p.bpp, p.psnr) for p in base.points]
    assert abs(result.bd["DMENet (small)"].bd_rate_psnr_pct) < 1e-9


def test_container_rate_of_weights_is_the_codecs_chunk_size(one_tile: np.ndarray) -> None:
    """Packing a model's latent strings gives exactly the bytes the codec writes for a shipped model,
    so weights in training and shipped weights are measured alike."""
    args = ([one_tile], [1, 8], "default")
    codec = ev.evaluate_dmenet(*args, rate="codec", progress=False)
    packed = ev.evaluate_dmenet(*args, rate="container", progress=False)
    assert codec.rate_source and codec.rate_source.startswith("codec")
    assert [p.bpp for p in packed.points] == [p.bpp for p in codec.points]
    assert [p.psnr for p in packed.points] == [p.psnr for p in codec.points]
    with pytest.raises(ValueError, match="rate must be"):
        ev.evaluate_dmenet(*args, rate="strings", progress=False)


def test_workers_code_the_same_bytes_as_one(one_tile: np.ndarray) -> None:
    """Batches coded in two threads (as for refinement) give the same points as one at a time:
    each tile is refined on its own with a fixed seed, and the batches come back in order."""
    tiles = [one_tile, one_tile[::-1].copy(), one_tile.transpose(1, 0, 2).copy()]
    curves = [
        ev.evaluate_dmenet(tiles, [2, 6], "default", batch_size=1, progress=False, refine=2, workers=w)
        for w in (1, 2)
    ]
    for a, b in zip(curves[0].points, curves[1].points, strict=True):
        assert (a.bpp, a.psnr, a.ms_ssim_db, a.tiles) == (b.bpp, b.psnr, b.ms_ssim_db, b.tiles)
    with pytest.raises(ValueError, match="workers"):
        ev.evaluate_dmenet(tiles, [2], "default", progress=False, workers=0)


def test_compressai_baseline_checkpoints(tmp_path: Path, one_tile: np.ndarray) -> None:
    from compressai.models import MeanScaleHyperprior

    paths = []
    for i in range(2):
        torch.manual_seed(i)
        net = MeanScaleHyperprior(16, 24)
        net.update(force=True)
        paths.append(tmp_path / f"q{i}.pth.tar")
        torch.save({"state_dict": net.state_dict()}, paths[-1])
    curve = ev.evaluate_compressai([one_tile], paths, progress=False)
    assert {p.setting for p in curve.points} == {"q0", "q1"}
    assert all(p.bpp > 0 for p in curve.points)
    assert curve.checkpoints == [str(p) for p in paths]


def test_cli_end_to_end(tmp_path: Path, tile_dir: Path) -> None:
    out_json, out_png = tmp_path / "rd.json", tmp_path / "rd.png"
    codecs = [k for k in ("jpeg2k", "webp") if ev.CLASSICAL_CODECS[k].available]
    argv = [
        "--data",
        str(tile_dir),
        "--limit",
        "1",
        "--qualities",
        "1,8",
        "--threads",
        "1",
        "--quiet",
        "--codecs",
        ",".join(codecs),
        "--json",
        str(out_json),
        "--plot",
        str(out_png),
    ]
    argv += [f"--sweep={k}={','.join(map(str, ev.CLASSICAL_CODECS[k].settings[::3]))}" for k in codecs]
    assert ev.main(argv) == 0
    result = json.loads(out_json.read_text())
    assert result["meta"]["tiles"] == 1
    assert (result["meta"]["threads"], result["meta"]["workers"], result["meta"]["refine"]) == (1, 1, 0)
    assert result["meta"]["model"] == "default" and result["meta"]["model_sha256"] == shipped_sha256()
    assert set(result["curves"]) == {"DMENet", *(ev.CLASSICAL_CODECS[k].name for k in codecs)}
    assert len(result["curves"]["DMENet"]["points"]) == 2
    assert set(result["bd"]) == {ev.CLASSICAL_CODECS[k].name for k in codecs}
    for row in result["bd"].values():
        assert set(row) == {"bd_rate_psnr_pct", "bd_rate_ms_ssim_db_pct", "bd_psnr_db"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the result is usable as a learned baseline of a later run
    curve = ev.curve_from_json(out_json, "DMENet", "baseline")
    assert curve.kind == "baseline-json" and curve.source == str(out_json)
    assert curve.to_dict()["points"] == result["curves"]["DMENet"]["points"]
    # the JSON reads back into the dataclasses and writes out unchanged
    again = tmp_path / "again.json"
    ev.write_json(ev.RDResult.from_dict(result), again)
    assert again.read_text() == out_json.read_text()


# ----------------------------------------------------------------------- notebook


@pytest.mark.slow
def test_notebook_runs_and_plots() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError if a cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook drew no figure"


# ------------------------------------------------------------- transform ceiling


def test_ceiling_separates_transforms_from_quantisation(small_model: DMENet, one_tile: np.ndarray) -> None:
    """A fresh model's inverse gains undo its gains exactly, so its transforms alone give the same
    picture at every quality, while the coded rate still rises with the quality."""
    from pipelines.ceiling import measure

    tiles = torch.from_numpy(one_tile).permute(2, 0, 1)[None].float() / 255
    low, high = measure(small_model, tiles, 1.0), measure(small_model, tiles, 8.0)
    assert low.transforms_psnr == pytest.approx(high.transforms_psnr, abs=1e-4)
    assert 0 < low.coded_bpp < high.coded_bpp
    assert math.isfinite(low.coded_psnr) and math.isfinite(high.coded_psnr)


def test_klt_reference_rises_with_the_width_and_is_exact_with_every_coefficient(one_tile: np.ndarray) -> None:
    from pipelines.ceiling import klt_reference

    tiles = torch.from_numpy(one_tile).permute(2, 0, 1)[None].float() / 255
    tiles = torch.cat([tiles, tiles.flip(-1)])
    ref = klt_reference(tiles, [16, 64, 192, 768])
    assert ref[16] < ref[64] < ref[192]
    assert ref[768] > 120  # all 768 coefficients: the blocks come back up to float64 rounding
    flat = tiles.mean(dim=1, keepdim=True).expand_as(tiles)  # grey: a third of the coefficients suffice
    assert klt_reference(flat, [256])[256] > 120
    with pytest.raises(ValueError, match="multiple of 16"):
        klt_reference(tiles[..., :100], [64])
    with pytest.raises(ValueError, match="1..768"):
        klt_reference(tiles, [0])
