"""The training CLI (``pipelines/train.py``): both architectures, checkpoints, resuming, re-targeting
the operating points of shipped weights, and the learned baseline's evaluation."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model import DMENet  # noqa: E402
from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.training import GAIN_TABLES, cosine_lr, retarget_gains  # noqa: E402
from pipelines import evaluate as ev  # noqa: E402
from pipelines import train, train_context  # noqa: E402
from pipelines.rd.gain_mbt import GainMeanScaleHyperprior  # noqa: E402
from pipelines.rd.learned import evaluate_gain_baseline  # noqa: E402
from pipelines.trainer.runtime import StopOnSignal  # noqa: E402

SAMPLES = REPO_ROOT / "sample_tiles"
TINY = ["--n", "16", "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1", "--val-every", "2"]


def _train(out: Path, *extra: str) -> dict:
    argv = ["--train", str(SAMPLES), "--val", str(SAMPLES), "--val-images", "1", "--out", str(out), *TINY]
    threads = torch.get_num_threads()
    try:
        assert train.main([*argv, *extra]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide: give the other tests theirs back
    return json.loads((out / "weights.json").read_text())


# ------------------------------------------------------------------------------ re-targeting
def test_retarget_keeps_trained_rows_and_interpolates_in_log_lambda() -> None:
    torch.manual_seed(0)
    state = {k: torch.randn(3, 4) for k in GAIN_TABLES}
    old = (0.001, 0.01, 0.1)
    same = retarget_gains(state, old, old)
    assert all(torch.allclose(same[k], state[k]) for k in GAIN_TABLES)
    new = (0.001, 0.001 * 10**0.5, 1.0)  # a trained point, a log-midpoint, one decade past the end
    out = retarget_gains(state, old, new)
    for k in GAIN_TABLES:
        t = state[k]
        assert torch.allclose(out[k][0], t[0])
        assert torch.allclose(out[k][1], (t[0] + t[1]) / 2, atol=1e-6)
        assert torch.allclose(out[k][2], t[2] + (t[2] - t[1]), atol=1e-5)  # linear extrapolation
    with pytest.raises(ValueError, match="variable-rate"):
        retarget_gains(state, (0.01,), new)


# ------------------------------------------------------------------------------ training CLI
@pytest.mark.parametrize("arch", ["dmenet", "mbt2018-mean"], ids=["dmenet", "mbt2018-mean"])
def test_train_writes_loadable_weights_and_resumes(tmp_path: Path, arch: str) -> None:
    meta = _train(tmp_path / "run", "--arch", arch, "--steps", "2")
    assert meta["arch"] == arch and meta["steps"] == 2
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["arch"] == arch and ckpt["step"] == 2
    meta = _train(tmp_path / "run", "--resume", str(tmp_path / "run" / "checkpoint.pt"), "--steps", "3")
    assert meta["steps"] == 3 and meta["arch"] == arch  # the checkpoint decides the architecture
    config = DMENetConfig.from_dict(meta["config"])
    state = torch.load(tmp_path / "run" / "weights.pt", map_location="cpu", weights_only=True)
    net = DMENet(config) if arch == "dmenet" else GainMeanScaleHyperprior(config)
    net.load_state_dict(state)
    assert all(v.dtype != torch.float64 for v in state.values())
    if arch == "mbt2018-mean":  # the baseline is trained on R + lambda D alone
        assert not config.use_mdei


def test_init_weights_retargets_to_new_lambdas(tmp_path: Path) -> None:
    _train(tmp_path / "a", "--steps", "1")
    new = "0.0002,0.002,0.02,0.2,0.5,1,2,4"
    init = str(tmp_path / "a" / "weights.pt")
    meta = _train(tmp_path / "b", "--init-weights", init, "--lambdas", new, "--steps", "2")
    assert meta["config"]["lambdas"] == [float(v) for v in new.split(",")]
    assert meta["steps"] == 2  # counted on from the initial weights' step
    digest = hashlib.sha256(Path(init).read_bytes()).hexdigest()
    assert (meta["init_weights"], meta["init_step"], meta["init_sha256"]) == (init, 1, digest)
    resumed = _train(tmp_path / "b", "--resume", str(tmp_path / "b" / "checkpoint.pt"), "--steps", "3")
    assert resumed["steps"] == 3 and resumed["init_sha256"] == digest  # the lineage survives a resume


def test_rate_warmup_ramps_the_new_channels_in(tmp_path: Path) -> None:
    assert train.warmup_weights(8, 6, 4, 0).tolist() == [1.0] * 6 + [0.0, 0.0]
    assert train.warmup_weights(8, 6, 4, 1).tolist() == [1.0] * 6 + [0.25, 0.25]
    assert train.warmup_weights(8, 6, 4, 9).tolist() == [1.0] * 8
    _train(tmp_path / "a", "--steps", "1")
    meta = _train(tmp_path / "b", "--init-weights", str(tmp_path / "a" / "weights.pt"), "--steps", "3",
                  "--rate-warmup", "12,4")
    assert meta["steps"] == 3
    with pytest.raises(SystemExit, match="rate-warmup"):
        _train(tmp_path / "c", "--steps", "1", "--rate-warmup", "16,4")  # C must be below N = 16
    for bad in ("12", "12,4,1", "a,4"):
        with pytest.raises(SystemExit):  # argparse: two integers
            train.parse_args(["--train", "x", "--out", "y", "--rate-warmup", bad])


def test_quality_balance_is_recorded_and_checked(tmp_path: Path) -> None:
    assert _train(tmp_path / "a", "--steps", "1", "--quality-balance", "0.5")["quality_balance"] == 0.5
    assert train.parse_args(["--train", "x", "--out", "y"]).quality_balance == 0.0  # the plain mean
    with pytest.raises(SystemExit, match="quality-balance"):
        _train(tmp_path / "c", "--steps", "1", "--quality-balance", "1.5")


def test_cosine_schedule_spans_the_steps_and_carries_on_after_a_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cosine_lr(1e-3, 1e-5, 0.0) == pytest.approx(1e-3)
    assert cosine_lr(1e-3, 1e-5, 0.5) == pytest.approx(5.05e-4)
    assert cosine_lr(1e-3, 1e-5, 2.0) == pytest.approx(1e-5)  # clamped past the end
    run = tmp_path / "run"
    meta = _train(run, "--steps", "2", "--schedule", "cosine", "--lr", "1e-3", "--min-lr", "1e-5")
    assert meta["schedule"] == "cosine"
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["cosine"] == {"lr": 1e-3, "min_lr": 1e-5, "unit": "step", "span": 2, "done": 2}
    def logged_lrs() -> list[float]:
        lines = capsys.readouterr().out.splitlines()
        return [float(line.split("lr=")[1].split()[0]) for line in lines if line.startswith("step=")]

    assert logged_lrs() == pytest.approx([1e-3, 5.05e-4], rel=1e-2)  # step 1 at the top, step 2 half way
    resume = ["--resume", str(run / "checkpoint.pt"), "--schedule", "cosine"]
    # a resume keeps the saved cosine (its floor reached), whatever --lr says; --reset-lr starts a new one
    _train(run, *resume, "--steps", "3", "--lr", "1")
    assert logged_lrs() == pytest.approx([1e-5])
    _train(run, *resume, "--steps", "5", "--reset-lr", "--lr", "2e-3", "--min-lr", "0")
    assert logged_lrs() == pytest.approx([2e-3, 1e-3])
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["cosine"] == {"lr": 2e-3, "min_lr": 0.0, "unit": "step", "span": 2, "done": 2}
    with pytest.raises(SystemExit, match="not beyond"):
        _train(run, *resume, "--steps", "5", "--reset-lr")


def test_warmup_ramps_the_cosine_rate_up_over_the_first_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = ["--schedule", "cosine", "--lr", "1e-3", "--min-lr", "1e-3"]  # a flat cosine: only the ramp moves
    _train(tmp_path / "run", "--steps", "5", *flat, "--warmup-steps", "4")
    lines = capsys.readouterr().out.splitlines()
    lrs = [float(line.split("lr=")[1].split()[0]) for line in lines if line.startswith("step=")]
    assert lrs == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    for bad in (["--warmup-steps", "10"], [*flat, "--warmup-steps", "-1"]):  # plateau schedule; negative
        with pytest.raises(SystemExit):
            train.parse_args(["--train", "x", "--out", "y", *bad])


def test_sigterm_ends_the_run_with_a_checkpoint_and_gives_the_handler_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is before
    # a run with no step limit: SIGTERM arrives during its first step, which it finishes and saves
    first_step = train.train_step

    def step_then_sigterm(*args: object, **kwargs: object) -> object:
        terms = first_step(*args, **kwargs)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        return terms

    monkeypatch.setattr(train, "train_step", step_then_sigterm)
    meta = _train(tmp_path / "run", "--hours", "0.05")
    assert "signal 15: saving a checkpoint and stopping" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == meta["steps"] == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_learned_baseline_weights_evaluate_against_dmenet(tmp_path: Path) -> None:
    _train(tmp_path / "dm", "--steps", "1")
    _train(tmp_path / "mbt", "--arch", "mbt2018-mean", "--steps", "1")
    out = tmp_path / "pair.json"
    argv = ["--data", str(SAMPLES), "--limit", "1", "--qualities", "1,8", "--threads", "1", "--quiet",
            "--codecs", "none", "--model", str(tmp_path / "dm" / "weights.pt"),
            "--baseline", str(tmp_path / "mbt" / "weights.pt"), "--json", str(out)]
    assert ev.main(argv) == 0
    result = json.loads(out.read_text())
    base = "mbt2018-mean (mbt)"
    assert set(result["curves"]) == {"DMENet", base}
    points = result["curves"][base]["points"]
    assert [p["setting"] for p in points] == [1.0, 8.0] and all(p["bpp"] > 0 for p in points)
    assert base in result["bd"]
    # both networks' bytes counted alike: in the chunk container, header included
    assert {c["rate_source"].split(":")[0] for c in result["curves"].values()} == {"container"}
    tiles = ev.load_tiles(ev.list_images(SAMPLES, limit=1))
    bare = evaluate_gain_baseline(tmp_path / "mbt" / "weights.pt", tiles, [1.0, 8.0], progress=False,
                                  rate="latents")
    pixels = tiles[0].shape[0] * tiles[0].shape[1]
    for packed, strings in zip(points, bare.points, strict=True):  # 27-33 header bytes per tile
        assert 27 * 8 <= (packed["bpp"] - strings.bpp) * pixels <= 33 * 8
    with pytest.raises(ValueError, match="rate must be"):
        evaluate_gain_baseline(tmp_path / "mbt" / "weights.pt", tiles, [1.0], progress=False, rate="codec")


# ------------------------------------------------------------------------------ context training
@pytest.mark.parametrize("groups", [1, 2], ids=["checkerboard", "2groups"])
def test_train_context_learns_only_the_context_and_resumes(tmp_path: Path, groups: int) -> None:
    _train(tmp_path / "a", "--steps", "1")
    init = tmp_path / "a" / "weights.pt"
    installed = {"sha256": "0" * 64, "superseded_by": "later", "weights_file": "shared.pt"}
    sidecar = init.with_suffix(".json")  # as an installed file's sidecar: keys of that file alone
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), **installed}))
    argv = ["--init-weights", str(init), "--train", str(SAMPLES), "--out", str(tmp_path / "ctx"),
            "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1", "--lr", "1e-2",
            "--groups", str(groups)]
    threads = torch.get_num_threads()
    try:
        assert train_context.main([*argv, "--steps", "2"]) == 0
        assert train_context.main([*argv, "--steps", "3", "--resume"]) == 0
        other = "1" if groups == 2 else "2"
        with pytest.raises(SystemExit, match="groups"):
            train_context.main([*argv[:-1], other, "--steps", "4", "--resume"])
    finally:
        torch.set_num_threads(threads)
    meta = json.loads((tmp_path / "ctx" / "weights.json").read_text())
    assert meta["context_steps"] == 3 and meta["config"]["context"] == "checkerboard"
    assert meta["config"]["context_groups"] == groups
    assert meta["context_base_sha256"] == hashlib.sha256(init.read_bytes()).hexdigest()
    assert not installed.keys() & meta.keys()  # the new file is not the frozen one
    base = torch.load(init, map_location="cpu", weights_only=True)
    state = torch.load(tmp_path / "ctx" / "weights.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in base.items())  # frozen: bit-identical
    context = {k: v for k, v in state.items() if k.startswith("context.")}
    assert context and any(v.abs().sum() > 0 for k, v in context.items() if k.startswith("context.fuse.4"))
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    model.load_state_dict(state)  # strict: the exported file is a complete model


def test_train_context_warm_start_goes_on_from_the_carried_context(tmp_path: Path) -> None:
    _train(tmp_path / "a", "--steps", "1")
    argv = ["--train", str(SAMPLES), "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1",
            "--groups", "2"]
    threads = torch.get_num_threads()
    try:
        bare = str(tmp_path / "a" / "weights.pt")
        assert train_context.main([*argv, "--init-weights", bare, "--out", str(tmp_path / "c1"),
                                   "--steps", "2", "--lr", "1e-2"]) == 0
        first = tmp_path / "c1" / "weights.pt"
        with pytest.raises(SystemExit, match="already has a context"):
            train_context.main([*argv, "--init-weights", str(first), "--out", str(tmp_path / "x"),
                                "--steps", "1"])
        with pytest.raises(SystemExit, match="2-group context"):
            train_context.main([*argv, "--init-weights", bare, "--out", str(tmp_path / "x"), "--steps", "1",
                                "--warm-start"])
        with pytest.raises(SystemExit, match="1-group context"):
            train_context.main([*argv[:-1], "1", "--init-weights", str(first), "--out", str(tmp_path / "x"),
                                "--steps", "1", "--warm-start"])
        assert train_context.main([*argv, "--init-weights", str(first), "--out", str(tmp_path / "c2"),
                                   "--steps", "1", "--lr", "1e-9", "--min-lr", "1e-9", "--warm-start"]) == 0
    finally:
        torch.set_num_threads(threads)
    before = torch.load(first, map_location="cpu", weights_only=True)
    after = torch.load(tmp_path / "c2" / "weights.pt", map_location="cpu", weights_only=True)
    assert before.keys() == after.keys()
    frozen = [k for k in before if not k.startswith("context.")]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    fused = [k for k in before if k.startswith("context.fuse.4")]
    assert any(before[k].abs().sum() > 0 for k in fused)  # the first run moved the context off the identity
    # ...and this run went on from it
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in fused)
    meta = json.loads((tmp_path / "c2" / "weights.json").read_text())
    assert meta["context_warm_start_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    bare_sha = hashlib.sha256((tmp_path / "a" / "weights.pt").read_bytes()).hexdigest()
    assert meta["context_base_sha256"] == bare_sha
    assert meta["context_steps"] == 1


@pytest.mark.parametrize("rate", ["noise", "ste"])
def test_train_context_with_the_hyperprior_keeps_the_transforms(tmp_path: Path, rate: str) -> None:
    _train(tmp_path / "a", "--steps", "1")
    init = tmp_path / "a" / "weights.pt"
    argv = ["--init-weights", str(init), "--train", str(SAMPLES), "--out", str(tmp_path / "hp"),
            "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1", "--lr", "1e-2",
            "--min-lr", "1e-3", "--hyperprior", "--rate", rate, "--relative-rate", "--warmup-steps", "2",
            "--checkpoint-minutes", "0"]  # a save (and new tables of z) at every step, then a resume
    threads = torch.get_num_threads()
    try:
        assert train_context.main([*argv, "--steps", "2"]) == 0
        assert train_context.main([*argv, "--steps", "3", "--resume"]) == 0
        with pytest.raises(SystemExit, match="with --hyperprior"):
            train_context.main([a for a in argv if a != "--hyperprior"] + ["--steps", "4", "--resume"])
    finally:
        torch.set_num_threads(threads)
    meta = json.loads((tmp_path / "hp" / "weights.json").read_text())
    assert meta["context_steps"] == 3 and meta["context_hyperprior"] and meta["context_rate"] == rate
    base = torch.load(init, map_location="cpu", weights_only=True)
    state = torch.load(tmp_path / "hp" / "weights.pt", map_location="cpu", weights_only=True)
    hyper = [k for k in base if train_context.is_trained(k, True)]
    frozen = [k for k in base if k not in hyper]
    assert any(k.startswith("g_a.") for k in frozen) and any(k.startswith("h_a.") for k in hyper)
    assert all(torch.equal(state[k], base[k]) for k in frozen)  # transforms and their gains: bit-identical
    learned = [k for k in hyper if k.startswith(("h_a.", "entropy_parameters."))]
    assert any(not torch.equal(state[k], base[k]) for k in learned)
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    model.load_state_dict(state)  # strict, with the rebuilt tables of z
    x = torch.rand(1, 3, 64, 64)
    coded = model.compress(x, 3.0)
    x_hat, digests = model.decompress(coded)
    assert digests == coded.digests and x_hat.shape == x.shape  # the decoder reads back the coded symbols


def test_train_adds_a_context_to_init_weights(tmp_path: Path) -> None:
    _train(tmp_path / "a", "--steps", "1")
    meta = _train(tmp_path / "b", "--init-weights", str(tmp_path / "a" / "weights.pt"), "--context",
                  "checkerboard", "--steps", "2")
    assert meta["config"]["context"] == "checkerboard"
    state = torch.load(tmp_path / "b" / "weights.pt", map_location="cpu", weights_only=True)
    DMENet(DMENetConfig.from_dict(meta["config"])).load_state_dict(state)


def test_context_groups_start_a_fresh_context_and_keep_the_rest(tmp_path: Path) -> None:
    _train(tmp_path / "a", "--context", "checkerboard", "--steps", "1")
    init = tmp_path / "a" / "weights.pt"
    meta = _train(tmp_path / "b", "--init-weights", str(init), "--context-groups", "4", "--steps", "2",
                  "--lr", "0")
    assert meta["config"]["context"] == "checkerboard" and meta["config"]["context_groups"] == 4
    before = torch.load(init, map_location="cpu", weights_only=True)
    after = torch.load(tmp_path / "b" / "weights.pt", map_location="cpu", weights_only=True)
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    model.load_state_dict(after)  # strict: the 4-group context is complete
    assert after["context.spatial.weight"].shape[1] == 2 * before["context.spatial.weight"].shape[1]
    assert all(v.abs().sum() == 0 for k, v in after.items() if k.startswith("context.fuse.4"))  # lr 0
    assert torch.equal(after["g_a.0.conv.weight"], before["g_a.0.conv.weight"])  # the rest is kept
    with pytest.raises(SystemExit, match="context-groups"):
        _train(tmp_path / "c", "--init-weights", str(init), "--context-groups", "5", "--steps", "2")
    for clash in (["--context", "none"], ["--resume", str(tmp_path / "b" / "checkpoint.pt")]):
        with pytest.raises(SystemExit):
            train.parse_args(["--train", "x", "--out", "y", "--context-groups", "2", *clash])


def test_install_keeps_the_previous_weights_under_their_sha(tmp_path: Path) -> None:
    from pipelines import install_weights

    old_sha = "ab" * 32
    (tmp_path / "m.pt").write_bytes(b"old weights")
    (tmp_path / "m.json").write_text(json.dumps({"sha256": old_sha, "config": {"n": 8}}))
    (tmp_path / "m.md").write_text("card of the old weights")
    assert install_weights.keep_previous("m", old_sha, tmp_path) is None  # same weights: nothing to keep
    kept = install_weights.keep_previous("m", "cd" * 32, tmp_path)
    assert kept == "m-abababab"
    assert (tmp_path / "m-abababab.pt").read_bytes() == b"old weights"
    meta = json.loads((tmp_path / "m-abababab.json").read_text())
    assert meta["sha256"] == old_sha and meta["superseded_by"] == "m" and meta["config"] == {"n": 8}
    assert (tmp_path / "m-abababab.md").read_text() == "card of the old weights"


def test_install_moves_names_sharing_the_file_to_the_kept_copy(tmp_path: Path) -> None:
    from pipelines import install_weights

    old_sha = "ab" * 32
    (tmp_path / "m.pt").write_bytes(b"old weights")
    (tmp_path / "m.json").write_text(json.dumps({"sha256": old_sha, "config": {"n": 8}}))
    (tmp_path / "alias.json").write_text(json.dumps({"sha256": old_sha, "weights_file": "m.pt"}))
    (tmp_path / "x.json").write_text(json.dumps({"sha256": "ef" * 32, "weights_file": "x.pt"}))
    assert install_weights.keep_previous("m", "cd" * 32, tmp_path) == "m-abababab"
    assert json.loads((tmp_path / "alias.json").read_text())["weights_file"] == "m-abababab.pt"
    assert json.loads((tmp_path / "x.json").read_text())["weights_file"] == "x.pt"  # another file: untouched
    # replacing the alias itself keeps it as a sidecar naming the same file, with no copy
    assert install_weights.keep_previous("alias", "cd" * 32, tmp_path) == "alias-abababab"
    assert json.loads((tmp_path / "alias-abababab.json").read_text())["weights_file"] == "m-abababab.pt"
    assert not (tmp_path / "alias-abababab.pt").exists()


def test_install_drops_an_inherited_supersession(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started from superseded weights inherits their sidecar; the installed model is current."""
    from pipelines import install_weights

    run = tmp_path / "run"
    run.mkdir()
    (run / "weights.pt").write_bytes(b"new weights")
    (run / "weights.json").write_text(json.dumps({"config": {"n": 8}, "superseded_by": "default"}))
    monkeypatch.setattr(install_weights, "WEIGHTS_DIR", tmp_path)
    sha = install_weights.install(run / "weights.pt", "m", {"hardware": "test"}, keep=False)
    meta = json.loads((tmp_path / "m.json").read_text())
    assert "superseded_by" not in meta
    assert meta["sha256"] == sha == hashlib.sha256(b"new weights").hexdigest() and meta["hardware"] == "test"
    assert (tmp_path / "m.pt").read_bytes() == b"new weights"
