"""pipelines/widen.py: a widened model starts out decoding like the narrow one."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model import DMENet, DMENetConfig  # noqa: E402
from dmenet_geo.model.metrics import psnr  # noqa: E402
from dmenet_geo.model.zoo import load_model, model_info  # noqa: E402
from pipelines.widen import widen, widened_config  # noqa: E402


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    torch.manual_seed(5)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 128, 128), 5, stride=1, padding=2)
    return smooth.clamp(0, 1)


@pytest.fixture(scope="module")
def plain_model() -> DMENet:
    """The paper's ablation: no SDPM, no LSM (a 1x1 head instead)."""
    torch.manual_seed(7)
    model = DMENet(DMENetConfig(n=16, use_sdpm=False, use_lsm=False))
    model.update(force=True)
    return model.eval()


def _trained_like(base: DMENet) -> DMENet:
    """``base`` with a context whose last layer is non-zero, as in a trained model."""
    model = DMENet(dataclasses.replace(base.config, context="checkerboard"))
    model.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(6)
    assert model.context is not None
    with torch.no_grad():
        for p in model.context.fuse[-1].parameters():
            p.normal_(0, 0.05)
    model.update(force=True)
    return model.eval()


@pytest.mark.parametrize(
    ("quality", "variant", "n", "m"),
    [(1.0, "full", 32, None), (4.5, "full", 32, None), (8.0, "full", 32, None), (6.0, "plain", 32, None),
     (4.5, "full", None, 40), (8.0, "full", 32, 48), (6.0, "plain", None, 40)],
    ids=["q1", "q4.5", "q8", "q6-no-sdpm-no-lsm", "q4.5-latent-only", "q8-both", "q6-plain-latent-only"],
)
def test_widened_model_decodes_like_the_narrow_one(
    small_model: DMENet, plain_model: DMENet, tiles: torch.Tensor, quality: float, variant: str,
    n: int | None, m: int | None,
) -> None:
    narrow = _trained_like(small_model if variant == "full" else plain_model)
    wide = DMENet(widened_config(narrow.config, n, m))
    assert (wide.config.n, wide.config.latent) == (n or 16, m or n)
    wide.load_state_dict(widen(narrow.state_dict(), narrow.config, n, m=m))
    wide.eval()
    a, b = narrow.compress(tiles, quality), wide.compress(tiles, quality)
    x_narrow, x_wide = narrow.decompress(a)[0], wide.decompress(b)[0]
    # float64 sums over the added zero channels may differ in the last bit, nothing more
    assert (x_narrow - x_wide).abs().max() < 1e-12
    for sa, sb in zip(a.y_strings + a.z_strings, b.y_strings + b.z_strings, strict=True):
        assert len(sa) <= len(sb) <= len(sa) + 16  # the new channels are coded zeros
    # the widened model is a different, trainable model: the new channels have live weights
    assert wide.g_s[0].conv.weight[16:].abs().sum() > 0


def test_widths_sdpm_cannot_split_are_refused(small_model: DMENet) -> None:
    with pytest.raises(ValueError, match="SDPM"):
        widen(small_model.state_dict(), small_model.config, 20)
    with pytest.raises(ValueError, match="must raise"):
        widen(small_model.state_dict(), small_model.config, 16)
    with pytest.raises(ValueError, match="lower neither"):
        widen(small_model.state_dict(), small_model.config, 32, m=8)
    grouped = dataclasses.replace(small_model.config, context="checkerboard", context_groups=2)
    with pytest.raises(ValueError, match="groups"):
        widen(DMENet(grouped).state_dict(), grouped, 32)


_LIVE_KEYS = {"g_a.4.conv.weight", "g_a.4.conv.bias", "g_s.0.conv.weight", "entropy_parameters.h_s.0.weight",
              "entropy_parameters.head.point.bias", "entropy_parameters.head.bias"}


@pytest.mark.parametrize("variant", ["full", "plain"], ids=["lsm-head", "plain-head"])
def test_live_widening_starts_new_latents_coded_and_keeps_old_channels(
    small_model: DMENet, plain_model: DMENet, tiles: torch.Tensor, variant: str
) -> None:
    narrow = _trained_like(small_model if variant == "full" else plain_model)
    quiet = widen(narrow.state_dict(), narrow.config, 32)
    live = widen(narrow.state_dict(), narrow.config, 32, latent_scale=1.0, read_scale=0.5, new_scale=0.7)
    head = "entropy_parameters.head." + ("point.bias" if variant == "full" else "bias")
    # (scales, means) of 32 channels: old scales 0-15, new scales 16-31, old means 32-47, new means 48-63
    assert torch.all(live[head][16:32] == 0.7) and torch.all(live[head][48:] == 0)
    old_rows = torch.cat([torch.arange(16), 32 + torch.arange(16)])
    assert torch.equal(live[head][old_rows], quiet[head][old_rows])
    for key in ("g_a.4.conv.weight", "g_a.4.conv.bias"):
        assert torch.equal(live[key][:16], quiet[key][:16])
    for key in ("g_s.0.conv.weight", "entropy_parameters.h_s.0.weight"):  # transposed: (in, out, ...)
        assert torch.equal(live[key][:16], quiet[key][:16])
    unchanged = [k for k in quiet if k not in _LIVE_KEYS and not k.startswith("gaussian_conditional.")]
    assert all(torch.equal(quiet[k], live[k]) for k in unchanged)
    wide = DMENet(dataclasses.replace(narrow.config, n=32)).eval()
    size = {}
    for name, state in (("quiet", quiet), ("live", live)):
        wide.load_state_dict(state)
        with torch.no_grad():
            y = wide.g_a(tiles) * wide._gain(wide.log_gain, wide._qualities(8.0, tiles.shape[0]))
        size[name] = float(y[:, 16:].abs().mean())
    assert size["live"] > 20 * size["quiet"]  # the new latent channels carry values worth coding


def test_negative_widening_scales_are_refused(small_model: DMENet) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        widen(small_model.state_dict(), small_model.config, 32, read_scale=-1.0)


def test_shipped_wide_model_reaches_past_the_earlier_defaults_top(sample_tiles: torch.Tensor) -> None:
    """The N = 128 model shipped as ``wide`` since session 18 (widened from an earlier default, its
    card says how; the default of sessions 22 to 25, kept as ``default-9745a0c3``) and the default
    fine-tuned from it load with their SHA-256 checked and, at quality 8, decode every sample tile
    >= 1 dB better than the N = 64 default they replaced."""
    assert model_info("wide").sha256 == model_info("default-9745a0c3").sha256
    tiles = sample_tiles
    top = {}
    for name, n in (("default-ecbb8582", 64), ("wide", 128), ("default", 128)):
        model = load_model(name)
        decoded = (model.decompress(model.compress(tiles, 8.0))[0].float().clamp(0, 1) * 255).round()
        top[name] = [psnr(t * 255, d) for t, d in zip(tiles, decoded, strict=True)]
        assert model.config.n == n
    earlier = top["default-ecbb8582"]
    for name in ("wide", "default"):
        assert all(w > d + 1.0 for w, d in zip(top[name], earlier, strict=True)), top


def test_wide_shares_the_file_of_the_weights_it_names() -> None:
    """``wide`` ships no bytes of its own: its sidecar names the file it shares (since session 29 a
    delta on ``default-cc97c3a8``), and the state built from it is the one its sidecar records."""
    from dmenet_geo.model.zoo import available_models, load_state
    from dmenet_geo.weights import WEIGHTS_DIR

    info, owner = model_info("wide"), model_info("default-9745a0c3")
    assert not (WEIGHTS_DIR / "wide.pt").exists() and info.path == owner.path
    assert info.delta == owner.delta and info.delta is not None and info.delta.base == "default-cc97c3a8"
    assert load_state(info)[1] == info.sha256 == owner.sha256
    assert "wide" in available_models()


@pytest.mark.parametrize(
    "named", ["../default.pt", "/tmp/x.pt", "default.bin", 3], ids=["parent", "absolute", "suffix", "type"]
)
def test_a_weights_file_outside_the_folder_is_refused(
    named: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dmenet_geo.model import zoo

    (tmp_path / "m.json").write_text(json.dumps({"sha256": "", "config": {}, "weights_file": named}))
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(zoo.WeightsError, match="weights_file"):
        zoo.model_info("m")
