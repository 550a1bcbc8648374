"""Run-time plumbing shared by the training CLIs: atomic saves, tensors checked against a model's
state, and a clean stop on a signal."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import torch


def seed_and_threads(seed: int, threads: int = 0) -> None:
    """Seed ``random`` and ``torch``; use ``threads`` torch threads (0: keep the default)."""
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def misfits(tensors: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Why each of ``tensors`` cannot replace its namesake in ``state`` (absent, other shape or
    dtype); empty when all fit."""
    return [f"{k} is not in the weights" if k not in state else
            f"{k} is {tuple(v.shape)} {v.dtype}, the weights have {tuple(state[k].shape)} {state[k].dtype}"
            for k, v in tensors.items()
            if k not in state or v.shape != state[k].shape or v.dtype != state[k].dtype]


def inherited_sidecar(meta: dict[str, Any]) -> dict[str, Any]:
    """A sidecar for weights derived from those ``meta`` describes: without the keys that belong to
    the installed file alone (its SHA-256, its successor, the file it shares)."""
    return {k: v for k, v in meta.items() if k not in ("sha256", "superseded_by", "weights_file", "delta")}


def fp32_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on the CPU, floating-point tensors as fp32 (the exported weights' form)."""
    return {
        k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }


class StopOnSignal:
    """While active, SIGTERM and SIGINT only set :attr:`requested`, so the training loop can finish its
    step and save a checkpoint; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        print(f"signal {signum}: saving a checkpoint and stopping", flush=True)

    def __enter__(self) -> StopOnSignal:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Periodic:
    """Calls ``action`` from :meth:`tick` once ``minutes`` have passed since it was built or last called."""

    def __init__(self, minutes: float, action: Callable[[], None]) -> None:
        self.seconds = minutes * 60
        self.action = action
        self._last = time.time()

    def tick(self) -> None:
        if time.time() - self._last > self.seconds:
            self.action()
            self._last = time.time()
