"""The prepared GPU run (``pipelines/device/``), exercised on the CPU: the data subset keeps to its
budget, ``train.sh`` trains and returns the weights in parts, ``assemble.py`` joins and checks them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dmenet_geo.model import load_model  # noqa: E402
from pipelines.device import assemble, prepare  # noqa: E402

DEFAULT = REPO / "dmenet_geo" / "weights" / "default.pt"


def _fake_train_folder(root: Path) -> Path:
    """A training folder laid out like ../shared/data/train, made of the repository's sample tiles."""
    tiles = sorted((REPO / "sample_tiles").glob("*.png"))
    for i, tile in enumerate(tiles):
        for sub in ("aid150/a", f"rsscn7/c{i % 2}"):
            dst = root / sub / f"{tile.stem}.jpg"  # the bytes are PNG; only the names count here
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(tile.read_bytes())
    return root


def _script_env(out: Path, **extra: str) -> dict[str, str]:
    """The environment of a device script run here: ``out`` as its OUT (made), this Python without
    wheels, the sample tiles as its data."""
    out.mkdir()
    return {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "SKIP_WHEELS": "1",
            "DEVICE_DATA": str(REPO / "sample_tiles"), **extra}


def test_subset_takes_aid_whole_then_rsscn7_round_robin_within_budget(tmp_path: Path) -> None:
    train = _fake_train_folder(tmp_path / "train")
    aid = sum(p.stat().st_size for p in (train / "aid150").rglob("*.jpg"))
    budget = aid + 1 + min(p.stat().st_size for p in (train / "rsscn7").rglob("*.jpg")) * 2
    picked, size = prepare.pick_files(train, budget)
    rss = [p for p in picked if "rsscn7" in p.parts]
    assert size == sum(p.stat().st_size for p in picked) <= budget
    assert {p for p in picked if "aid150" in p.parts} == set((train / "aid150").rglob("*.jpg"))
    assert 1 <= len(rss) <= 2 and rss[0].parent.name == "c0"  # the first class first
    with pytest.raises(SystemExit, match="over the"):
        prepare.pick_files(train, aid - 1)
    only, size = prepare.pick_files(train, budget, aid=False)  # RSSCN7 alone, for 256x256 crops
    assert only and all("rsscn7" in p.parts for p in only) and size <= budget


@pytest.mark.slow
def test_train_sh_returns_weights_in_parts_that_assemble_and_load(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = _script_env(out, PART_SIZE="1M")
    meta = json.loads(DEFAULT.with_suffix(".json").read_text())
    proc = subprocess.run(
        ["bash", "pipelines/device/train.sh", str(DEFAULT), "0.05", "--steps", str(meta["steps"] + 1),
         "--threads", "1", "--batch", "2", "--crop", "64"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    parts = sorted(out.glob("weights.pt.part*"))
    sizes = [p.stat().st_size for p in parts]  # the weights (several MB) in 1 MiB parts
    assert len(parts) >= 2 and all(n == 2**20 for n in sizes[:-1]) and 0 < sizes[-1] <= 2**20
    assert "checkpoint step=" in (out / "train.log").read_text()
    dest = tmp_path / "joined"
    sha = assemble.assemble(out, dest)
    assert sha == hashlib.sha256((dest / "weights.pt").read_bytes()).hexdigest()
    assert json.loads((dest / "weights.json").read_text())["steps"] == meta["steps"] + 1
    model = load_model(dest / "weights.pt")
    assert model.config.n == meta["config"]["n"]
    data = parts[0].read_bytes()
    parts[0].write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # a damaged part is refused
    with pytest.raises(SystemExit, match="SHA-256 mismatch"):
        assemble.assemble(out, tmp_path / "bad")


@pytest.mark.slow
def test_train_many_runs_side_by_side_and_packs_each_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = _script_env(out)
    meta = json.loads(DEFAULT.with_suffix(".json").read_text())
    tiny = f"--steps {meta['steps'] + 1} --threads 1 --batch 2 --crop 64"
    proc = subprocess.run(
        ["bash", "pipelines/device/train_many.sh", "0.05", "same", f"{DEFAULT} {tiny}",
         "regrouped", f"{DEFAULT} {tiny} --context-groups 2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["regrouped.tar", "same.tar"]  # one file a run
    for name, groups in (("same", meta["config"]["context_groups"]), ("regrouped", 2)):
        raw = tmp_path / name
        raw.mkdir()
        subprocess.run(["tar", "xf", str(out / f"{name}.tar"), "-C", str(raw)], check=True)
        assert len(list(raw.glob("weights.pt.part*"))) == 1  # in one part
        assemble.assemble(raw, tmp_path / f"{name}-joined")
        assert load_model(tmp_path / f"{name}-joined" / "weights.pt").config.context_groups == groups
        assert f"== {name}" in proc.stdout


def test_check_sh_refuses_to_pass_without_cuda(tmp_path: Path) -> None:
    """Asked for CUDA where torch has none, check.sh fails instead of skipping every CUDA check."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = subprocess.run(["bash", "pipelines/device/check.sh"], cwd=REPO, env=_script_env(tmp_path / "out"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4 and "not available" in proc.stderr


def test_train_many_refuses_an_unpaired_run() -> None:
    proc = subprocess.run(["bash", "pipelines/device/train_many.sh", "0.1", "lonely"], cwd=REPO,
                          env={**os.environ, "OUT": "/nonexistent"}, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.slow
def test_check_sh_runs_the_codec_checks_and_writes_the_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = _script_env(out, CHECK_DEVICE="cpu", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "pipelines/device/check.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "golden chunks decoded on cpu" in proc.stdout and " passed" in proc.stdout
    bench = json.loads((out / "bench_codec_cpu.json").read_text())
    assert bench["device"] == "cpu" and bench["results"][0]["batch_equals_single"] is True
