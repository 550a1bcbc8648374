"""Encoder fine-tuning for a frozen decoder: ``DMENet.forward(hard=True)`` and
``pipelines/train_encoder.py``."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from finetune_helpers import finetune_twice  # noqa: E402

from dmenet_geo.model import DMENet  # noqa: E402
from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.zoo import load_model  # noqa: E402
from pipelines import train_encoder  # noqa: E402


@pytest.mark.parametrize("quality", [1.0, 4.5, 8.0], ids=["q1", "q4.5", "q8"])
def test_hard_rates_count_the_bits_the_coder_writes(sample_tiles: torch.Tensor, quality: float) -> None:
    """With ``hard`` the rate is the symbols' own: within 3 % of the coded strings of ``y`` on real tiles
    (the coder's CDF tables quantise the scales; its means sit on a 1/64 grid), where the noise
    relaxation counts more bits than the coder writes."""
    model = load_model("default")
    x = sample_tiles[:2]
    coded = model.compress(x, quality)
    written = 8 * sum(len(s) for s in coded.y_strings)
    with torch.no_grad():
        hard = -torch.log2(model(x, quality, hard=True).likelihoods_y).sum()
        model.train()
        torch.manual_seed(0)
        noisy = -torch.log2(model(x, quality).likelihoods_y).sum()
        model.eval()
    assert abs(float(hard) / written - 1) < 0.03, (float(hard), written)
    assert float(noisy) > float(hard)


def test_hard_rates_pass_gradients_to_the_encoder(small_model: DMENet) -> None:
    model = DMENet(small_model.config)
    model.load_state_dict(small_model.state_dict())
    result = model(torch.rand(1, 3, 64, 64), 2.0, hard=True)
    (-torch.log2(result.likelihoods_y).sum() - torch.log2(result.likelihoods_z).sum()
     + result.x_hat.square().sum()).backward()
    assert model.g_a[0].conv.weight.grad is not None and model.g_a[0].conv.weight.grad.abs().sum() > 0
    assert model.h_a[0].weight.grad is not None and model.h_a[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("objective", ["sga", "ste"])
def test_train_encoder_keeps_every_decoder_tensor_and_resumes(tmp_path: Path, objective: str) -> None:
    init, argv = finetune_twice(train_encoder.main, tmp_path, "--objective", objective)
    for bad in (["--crop", "100"], ["--tau", "0.5"], ["--tau", "0.5,0"], ["--batch", "0"]):
        with pytest.raises(SystemExit):
            train_encoder.parse_args([*argv, *bad])
    meta = json.loads((tmp_path / "tuned" / "weights.json").read_text())
    assert meta["encoder_steps"] == 3 and meta["encoder_objective"] == objective
    assert meta["encoder_base_sha256"] == hashlib.sha256(init.read_bytes()).hexdigest()
    base = torch.load(init, map_location="cpu", weights_only=True)
    state = torch.load(tmp_path / "tuned" / "weights.pt", map_location="cpu", weights_only=True)
    assert base.keys() == state.keys()
    decoder = [k for k in base if not train_encoder.is_encoder(k)]
    assert any(k.startswith(("g_s.", "context.", "entropy_parameters.")) for k in decoder)
    assert all(torch.equal(state[k], base[k]) for k in decoder)  # what a decoder reads: bit-identical
    assert any(not torch.equal(state[k], base[k]) for k in base if k.startswith("g_a."))
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    model.load_state_dict(state)
    coded = model.compress(torch.rand(1, 3, 64, 64), 2.0)
    assert model.decompress(coded)[1] == coded.digests
