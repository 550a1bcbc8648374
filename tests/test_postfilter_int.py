"""``pipelines/postfilter_int.py``: a post-filter with integer weights and activations is exact in
float32 (same bits as float64, batch- and thread-independent), stays close to the float filter, and
the measurement pipeline runs end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dmenet_geo.model import DMENet
from dmenet_geo.model.postfilter import PostFilter
from pipelines import postfilter_int
from pipelines.postfilter_int import ACT_MAX, EXACT_LIMIT, IntegerFilter, partial_sum_bound


def _random_filter(channels: int = 8, seed: int = 1) -> PostFilter:
    torch.manual_seed(seed)
    pf = PostFilter(channels, 8)
    with torch.no_grad():
        for p in pf.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return pf.eval()


def _calibrated(pf: PostFilter, x: torch.Tensor, q: torch.Tensor) -> IntegerFilter:
    f = IntegerFilter(pf)
    with torch.no_grad():
        for i, h in enumerate(f.hidden(x, q)):
            f.act_step[i] = float(h.abs().max()) / ACT_MAX
    return f.eval()


def test_integer_convolutions_are_exact_in_float32() -> None:
    pf = _random_filter()
    x = torch.rand(4, 3, 64, 48, dtype=torch.float64)
    q = torch.tensor([1.0, 2.5, 6.0, 8.0])
    f = _calibrated(pf, x.float(), q)
    assert partial_sum_bound(f) < EXACT_LIMIT
    out32 = f.exact(x, q, torch.float32)
    assert torch.equal(out32, f.exact(x, q, torch.float64))  # no rounding anywhere in the sums
    assert torch.equal(out32, torch.cat([f.exact(x[i : i + 1], q[i : i + 1]) for i in range(4)]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(out32, f.exact(x, q))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        reference = pf.double()(x, q.double())
        training_form = f(x.float(), q).double()
    # quantisation moves the float filter's output a little, the training form computes the same
    # quantised function in float32
    assert 0 < float((out32 - reference).abs().max()) < 0.02
    assert float((training_form - out32).abs().mean()) < 1e-4


def test_the_measurement_runs_end_to_end_and_refuses_weights_without_a_filter(
    tmp_path: Path, small_model: DMENet, repo_root: Path
) -> None:
    from dmenet_geo.model.zoo import weights_sha256

    torch.save(small_model.state_dict(), tmp_path / "plain.pt")
    (tmp_path / "plain.json").write_text(json.dumps({"config": small_model.config.to_dict()}))
    model = DMENet(dataclasses.replace(small_model.config, post_filter=8))
    model.load_state_dict(small_model.state_dict(), strict=False)
    assert model.post_filter is not None
    model.post_filter.load_state_dict(_random_filter().state_dict())
    torch.save(model.state_dict(), tmp_path / "m.pt")
    sidecar = {"config": model.config.to_dict(),  # as train_postfilter.py writes it
               "post_filter_base_sha256": weights_sha256(tmp_path / "plain.pt")}
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    tiles = str(repo_root / "sample_tiles")
    common = ["--train", tiles, "--val", tiles, "--crops", "2", "--calib-crops", "2", "--steps", "3",
              "--patch", "32", "--batch", "2", "--threads", "2"]
    run = tmp_path / "run"
    assert postfilter_int.main(["--weights", str(tmp_path / "m.pt"), "--out", str(run), *common]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 3
    assert result["float32_equals_float64"] and result["batch_equals_single"] and result["threads_agree"]
    assert set(result["gain_float_db"]) == set(result["gain_trained_db"]) == {"1", "3", "5", "8"}
    assert result["float64_filter_ms"] > 0 and result["integer_filter_ms"] > 0
    state = torch.load(tmp_path / "run" / "integer_filter.pt", weights_only=True)
    assert state["act_step"].shape == (2,) and bool((state["act_step"] > 0).all())
    with pytest.raises(SystemExit, match="post-filter"):
        postfilter_int.main(["--weights", str(tmp_path / "plain.pt"), "--out", str(tmp_path / "x"), *common])
