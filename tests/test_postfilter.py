"""The post-filter: config, exact decoding, an unchanged bitstream, and its training pipeline."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from dmenet_geo.model import DMENet, DMENetConfig
from dmenet_geo.model.config import ConfigError
from dmenet_geo.model.postfilter import PostFilter


def _with_filter(base: DMENet, channels: int = 8, seed: int = 1) -> DMENet:
    """``base`` plus a post-filter with random (non-zero) weights."""
    model = DMENet(dataclasses.replace(base.config, post_filter=channels))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("post_filter.") for k in missing)
    torch.manual_seed(seed)
    assert model.post_filter is not None
    with torch.no_grad():
        for p in model.post_filter.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_the_config_round_trips_and_leaves_models_without_a_filter_as_they_were() -> None:
    config = DMENetConfig(n=16, post_filter=24)
    assert DMENetConfig.from_json(config.to_json()) == config
    assert "post_filter" not in DMENetConfig(n=16).to_dict()


@pytest.mark.parametrize(
    "value", [-1, 2, 300, True, 3.5], ids=["negative", "small", "large", "bool", "float"]
)
def test_bad_post_filter_widths_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="post_filter"):
        DMENetConfig(n=16, post_filter=value)  # type: ignore[arg-type]


def test_a_fresh_filter_decodes_like_no_filter(small_model: DMENet, sample_tiles: torch.Tensor) -> None:
    fresh = DMENet(dataclasses.replace(small_model.config, post_filter=8))
    fresh.load_state_dict(small_model.state_dict(), strict=False)
    fresh.eval()
    x = sample_tiles[:2]
    plain, filtered = small_model.compress(x, 4.0), fresh.compress(x, 4.0)
    assert plain.y_strings == filtered.y_strings and plain.z_strings == filtered.z_strings
    assert torch.equal(small_model.decompress(plain)[0], fresh.decompress(filtered)[0])


def test_a_filter_changes_the_pixels_not_the_bytes(small_model: DMENet, sample_tiles: torch.Tensor) -> None:
    model = _with_filter(small_model)
    x = sample_tiles[:2]
    latents = model.compress(x, [2.0, 6.5])
    plain = small_model.compress(x, [2.0, 6.5])
    assert latents.y_strings == plain.y_strings and latents.z_strings == plain.z_strings
    decoded, digests = model.decompress(latents)
    unfiltered = small_model.decompress(plain)[0]
    assert decoded.dtype == torch.float64 and 0 <= float(decoded.min()) and float(decoded.max()) <= 1
    assert float((decoded - unfiltered).abs().max()) > 1e-3
    pf = model.post_filter
    assert pf is not None
    qualities = torch.tensor([2.0, 6.5], dtype=torch.float64)
    expected = copy.deepcopy(pf).double()(unfiltered, qualities).clamp(0, 1)
    assert torch.allclose(decoded, expected, atol=1e-12)
    alone = [model.decompress(model.compress(x[i : i + 1], q))[0] for i, q in enumerate((2.0, 6.5))]
    assert torch.equal(decoded, torch.cat(alone))  # batch-independent, as the synthesis


def test_odd_chunks_decode_and_the_filter_refuses_odd_pictures(small_model: DMENet) -> None:
    model = _with_filter(small_model)
    x = torch.rand(1, 3, 30, 51)
    assert model.decompress(model.compress(x, 3.0))[0].shape == (1, 3, 30, 51)
    with pytest.raises(ValueError, match="even"):
        PostFilter(8, 8)(torch.rand(1, 3, 5, 6), torch.ones(1))


def test_training_saves_a_loadable_model_and_reuses_the_decoded_crops(
    tmp_path: Path, small_model: DMENet, capsys: pytest.CaptureFixture[str], repo_root: Path
) -> None:
    from dmenet_geo.model.zoo import load_model
    from pipelines import train_postfilter

    tiles = str(repo_root / "sample_tiles")
    torch.save(small_model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(json.dumps({"config": small_model.config.to_dict(), "steps": 7}))
    argv = ["--init-weights", str(tmp_path / "m.pt"), "--train", tiles, "--val", tiles,
            "--out", str(tmp_path / "run"), "--channels", "8", "--crops", "3", "--steps", "4",
            "--patch", "32", "--batch", "2", "--log-every", "2", "--val-every", "2"]
    assert train_postfilter.main(argv) == 0
    meta = json.loads((tmp_path / "run" / "weights.json").read_text())
    assert meta["config"]["post_filter"] == 8 and meta["post_filter_steps"] == 4 and meta["steps"] == 7
    assert set(meta["post_filter_val_psnr_gain_db"]) == {"1", "3", "5", "8"}
    trained = load_model(tmp_path / "run" / "weights.pt")
    assert trained.post_filter is not None
    first = capsys.readouterr().out
    assert "coded 3 crops" in first and "val_psnr_gain_db" in first
    assert train_postfilter.main(argv) == 0
    assert "decoded crops from" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already has a post-filter"):
        train_postfilter.main([*argv[:1], str(tmp_path / "run" / "weights.pt"), *argv[2:]])


def test_a_warm_start_continues_the_filter_the_weights_have(
    tmp_path: Path, small_model: DMENet, capsys: pytest.CaptureFixture[str], repo_root: Path
) -> None:
    from dmenet_geo.model.zoo import read_state, weights_sha256
    from pipelines import train_postfilter

    tiles = str(repo_root / "sample_tiles")
    torch.save(small_model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(json.dumps({"config": small_model.config.to_dict()}))
    common = ["--train", tiles, "--channels", "8", "--crops", "2", "--patch", "32", "--batch", "2"]
    run = tmp_path / "run"
    assert train_postfilter.main(["--init-weights", str(tmp_path / "m.pt"), "--out", str(run),
                                  "--steps", "3", "--val", tiles, *common]) == 0
    first = tmp_path / "first.pt"
    shutil.copy(run / "weights.pt", first)
    shutil.copy(run / "weights.json", first.with_suffix(".json"))
    capsys.readouterr()
    again = ["--init-weights", str(first), "--warm-start", "--out", str(run), "--lr", "0", "--steps", "2",
             *common]  # without --val: the first run's validation gains must not pass for this one's
    assert train_postfilter.main(again) == 0
    # the model without its filter codes the crops, as in the first run, so they are reused
    assert "decoded crops from" in capsys.readouterr().out
    meta = json.loads((run / "weights.json").read_text())
    assert meta["post_filter_base_sha256"] == weights_sha256(tmp_path / "m.pt")
    assert meta["post_filter_warm_start"]["sha256"] == weights_sha256(first)
    assert meta["post_filter_warm_start"]["post_filter_steps"] == 3 and meta["post_filter_steps"] == 2
    assert "post_filter_val_psnr_gain_db" not in meta
    assert "post_filter_val_psnr_gain_db" in meta["post_filter_warm_start"]
    before, after = read_state(first)[0], read_state(run / "weights.pt")[0]
    assert all(torch.equal(before[k], after[k]) for k in before)  # a zero rate leaves the filter as it was
    with pytest.raises(SystemExit, match="--warm-start needs"):
        train_postfilter.main(["--init-weights", str(tmp_path / "m.pt"), "--warm-start",
                               "--out", str(tmp_path / "third"), *common])


def test_validation_gains_cover_only_the_qualities_a_model_has(tmp_path: Path, repo_root: Path) -> None:
    import math

    from pipelines import train_postfilter

    torch.manual_seed(0)
    config = DMENetConfig(n=16)
    model = DMENet(dataclasses.replace(config, lambdas=config.lambdas[:4]))
    model.update(force=True)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(json.dumps({"config": model.config.to_dict()}))
    tiles = str(repo_root / "sample_tiles")
    assert train_postfilter.main(["--init-weights", str(tmp_path / "m.pt"), "--train", tiles, "--val", tiles,
                                  "--out", str(tmp_path / "run"), "--channels", "8", "--crops", "2",
                                  "--steps", "2", "--patch", "32", "--batch", "2"]) == 0
    gains = json.loads((tmp_path / "run" / "weights.json").read_text())["post_filter_val_psnr_gain_db"]
    assert set(gains) == {"1", "3"}  # 5 and 8 are above its 4 levels
    assert all(math.isfinite(g) for g in gains.values())
