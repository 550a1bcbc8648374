"""Decoder fine-tuning on the latents the frozen encoder writes: ``pipelines/train_decoder.py``."""

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
from pipelines import train_decoder  # noqa: E402


@pytest.mark.parametrize("quality", [1.0, 8.0], ids=["q1", "q8"])
def test_training_latents_are_the_ones_the_decoder_receives(
    sample_tiles: torch.Tensor, quality: float
) -> None:
    """The latents the decoder trains on are, up to small offsets, the coded ones: the coder puts its
    means on a 1/64 grid and its context sees those values, so later stages' means move a little
    (measured on the sample tiles: median offset 0.004-0.005, 99th percentile 0.03-0.12) and a
    symbol near a rounding boundary falls the other way on 0.1-0.6 % of the positions."""
    model = load_model("default")
    x = sample_tiles[:2]
    q = torch.full((2,), quality, dtype=torch.float64)
    coded = model.compress(x, quality)
    z_hat = model.entropy_bottleneck.decompress(coded.z_strings, coded.z_shape)
    symbols, means = model._decode_y(coded.y_strings, z_hat, q)
    trained_on = train_decoder.coded_latents(model, x, q)
    diff = (trained_on - (symbols + means)).abs().flatten()
    assert float((diff > 0.5).float().mean()) < 0.01
    assert float(diff.median()) < 1 / 128
    assert float(torch.quantile(diff, 0.99)) < 0.2


def test_train_decoder_keeps_the_bytes_and_resumes(tmp_path: Path) -> None:
    init, argv = finetune_twice(train_decoder.main, tmp_path)
    for bad in (["--crop", "100"], ["--batch", "0"], ["--log-every", "0"]):
        with pytest.raises(SystemExit):
            train_decoder.parse_args([*argv, *bad])
    meta = json.loads((tmp_path / "tuned" / "weights.json").read_text())
    assert meta["decoder_steps"] == 3
    assert meta["decoder_base_sha256"] == hashlib.sha256(init.read_bytes()).hexdigest()
    base = torch.load(init, map_location="cpu", weights_only=True)
    state = torch.load(tmp_path / "tuned" / "weights.pt", map_location="cpu", weights_only=True)
    assert base.keys() == state.keys()
    frozen = [k for k in base if not train_decoder.is_decoder(k)]
    coder_side = ("g_a.", "context.", "entropy_parameters.", "log_hyper_inv_gain")
    assert any(k.startswith(coder_side) for k in frozen)
    assert all(torch.equal(state[k], base[k]) for k in frozen)
    assert any(not torch.equal(state[k], base[k]) for k in base if k.startswith("g_s."))
    models = []
    for weights in (base, state):
        models.append(DMENet(DMENetConfig.from_dict(meta["config"])))
        models[-1].load_state_dict(weights)
    x = torch.rand(1, 3, 64, 64)
    old, new = (m.compress(x, 2.0) for m in models)
    assert (old.y_strings, old.z_strings) == (new.y_strings, new.z_strings)  # the same chunk bytes
    assert models[1].decompress(new)[1] == new.digests


def test_a_run_goes_on_from_its_trained_tensors(tmp_path: Path) -> None:
    """``OUT/trained.pt`` holds the decoder side alone; ``--start-from`` starts a new run from it
    (the frozen side still from ``--init-weights``) and refuses tensors of the other side."""
    init, argv = finetune_twice(train_decoder.main, tmp_path)
    trained = torch.load(tmp_path / "tuned" / "trained.pt", map_location="cpu", weights_only=True)
    full = torch.load(tmp_path / "tuned" / "weights.pt", map_location="cpu", weights_only=True)
    assert trained and all(train_decoder.is_decoder(k) for k in trained)
    assert all(torch.equal(v, full[k]) for k, v in trained.items())
    threads = torch.get_num_threads()
    try:
        again = ["--init-weights", str(init), "--train", str(REPO_ROOT / "sample_tiles"), "--batch", "2",
                 "--crop", "64", "--threads", "1", "--steps", "1", "--lr", "1e-12", "--min-lr", "1e-12"]
        assert train_decoder.main([*again, "--out", str(tmp_path / "more"),
                                   "--start-from", str(tmp_path / "tuned" / "trained.pt")]) == 0
        other = {k: v for k, v in full.items() if k.startswith("g_a.")}
        torch.save(other, tmp_path / "encoder_side.pt")
        with pytest.raises(SystemExit, match="not this side's tensors"):
            train_decoder.main([*again, "--out", str(tmp_path / "bad"),
                                "--start-from", str(tmp_path / "encoder_side.pt")])
    finally:
        torch.set_num_threads(threads)
    more = torch.load(tmp_path / "more" / "trained.pt", map_location="cpu", weights_only=True)
    # one step at a learning rate of 1e-12 barely moves them: they started from the earlier run's
    assert all(torch.allclose(more[k], v, atol=1e-6) for k, v in trained.items())
    meta = json.loads((tmp_path / "more" / "weights.json").read_text())
    assert meta["decoder_start_from"].endswith("trained.pt") and meta["decoder_steps"] == 1
