"""Helpers of the tests of the CLIs that fine-tune one side of trained weights
(``pipelines/train_encoder.py``, ``pipelines/train_decoder.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipelines import train  # noqa: E402

SAMPLES = REPO_ROOT / "sample_tiles"


def finetune_twice(main: Callable[[list[str]], int], tmp_path: Path, *options: str) -> tuple[Path, list[str]]:
    """Train a tiny model with a 2-group context for one step, fine-tune it with ``main`` for two
    steps, then resume to three; returns the initial weights and the argv (without the step options)."""
    threads = torch.get_num_threads()
    try:
        assert train.main(["--train", str(SAMPLES), "--out", str(tmp_path / "a"), "--n", "16", "--batch", "2",
                           "--crop", "64", "--threads", "1", "--steps", "1", "--context-groups", "2"]) == 0
        init = tmp_path / "a" / "weights.pt"
        argv = ["--init-weights", str(init), "--train", str(SAMPLES), "--out", str(tmp_path / "tuned"),
                "--batch", "2", "--crop", "64", "--threads", "1", "--log-every", "1", "--lr", "1e-2",
                "--warmup-steps", "1", "--checkpoint-minutes", "0", *options]
        assert main([*argv, "--steps", "2"]) == 0
        assert main([*argv, "--steps", "3", "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    return init, argv
