"""What the CLIs that fine-tune one side of trained weights share (``train_encoder.py``,
``train_decoder.py``): their common options, loading with the other side frozen, resume, the
checked save, and the loop with its schedule and log lines.

A run trains the parameters a predicate names; every other tensor of the state dict must stay
bit-identical to ``--init-weights``, which each save checks before it writes ``OUT/weights.pt``
(the whole model) and ``OUT/trained.pt`` (the trained tensors alone, small enough to commit and to
go on from with ``--start-from``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.losses import RateDistortionLoss
from dmenet_geo.model.training import CropDataset, cosine_lr, list_images
from dmenet_geo.model.zoo import read_state
from pipelines.trainer.runtime import (
    Periodic,
    StopOnSignal,
    atomic_save,
    fp32_state,
    inherited_sidecar,
    misfits,
    seed_and_threads,
)

# a step: (crops, their qualities, fraction of the run done) -> (loss to minimise, values to log)
Step = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, dict[str, float]]]


def add_arguments(
    p: argparse.ArgumentParser, lr: float, min_lr: float, warmup_steps: int = 20, log_every: int = 50,
    one_side: bool = True,
) -> None:
    """The options every fine-tuning CLI takes (``train_context.py`` too), with its own defaults;
    ``one_side`` adds those only :class:`FineTune` reads (``--quality-balance``, ``--start-from``)."""
    p.add_argument("--init-weights", type=Path, required=True, help="weights.pt with its .json sidecar")
    p.add_argument("--train", type=Path, nargs="+", required=True, help="folders of training images")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hours", type=float, default=1.0, help="wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--min-lr", type=float, default=min_lr, help="cosine decay floor over the budget")
    p.add_argument("--warmup-steps", type=int, default=warmup_steps, help="linear learning-rate warm-up")
    if one_side:
        p.add_argument("--quality-balance", type=float, default=None,
                       help="per-sample weight (lambda / mid) ** -ALPHA (default: the weights' own)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--log-every", type=int, default=log_every)
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    if one_side:
        p.add_argument("--start-from", type=Path, default=None,
                       help="tensors of the trained side (an earlier run's OUT/trained.pt) to start from, "
                            "with fresh optimiser state; everything else still comes from --init-weights")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("batch", "crop", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.crop % 64:
        p.error("--crop must be a multiple of 64")


def load_for_part(
    weights: Path, trainable: Callable[[str], bool]
) -> tuple[DMENet, dict, dict[str, torch.Tensor], str]:
    """The model (the parameters ``trainable`` names trainable, in eval mode), its sidecar, the
    frozen tensors to check at each save, and the weights' SHA-256."""
    sidecar = weights.with_suffix(".json")
    if not weights.exists() or not sidecar.exists():
        raise SystemExit(f"--init-weights needs {weights} and its sidecar {sidecar}")
    meta = json.loads(sidecar.read_text())
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    state, sha = read_state(weights)
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name))
    return model.eval(), meta, {k: v for k, v in state.items() if not trainable(k)}, sha


class FineTune:
    """One run: ``model`` (being trained), ``reference`` (the initial weights, frozen), ``criterion``
    with the run's quality balance, and ``step`` (restored on ``--resume``). ``prefix`` names the
    side in the sidecar's provenance keys (``{prefix}_steps`` and so on)."""

    def __init__(self, args: argparse.Namespace, trainable: Callable[[str], bool], prefix: str) -> None:
        seed_and_threads(args.seed, args.threads)
        self.args, self.trainable, self.prefix = args, trainable, prefix
        self.model, self.meta, self.frozen, self._base_sha = load_for_part(args.init_weights, trainable)
        self.reference = copy.deepcopy(self.model).requires_grad_(False)
        balance = args.quality_balance
        self.balance = float(self.meta.get("quality_balance", 0.0)) if balance is None else balance
        self.criterion = RateDistortionLoss(self.model.config, self.balance)
        self.learn = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.learn, lr=args.lr)
        self.step, self._elapsed_before = 0, 0.0
        args.out.mkdir(parents=True, exist_ok=True)
        self._ckpt = args.out / "checkpoint.pt"
        if args.start_from is not None and not args.resume:
            self._start_from(args.start_from)
        if args.resume:
            ckpt = torch.load(self._ckpt, map_location="cpu", weights_only=True)
            self.model.load_state_dict({**self.model.state_dict(), **ckpt["trained"]})
            self.opt.load_state_dict(ckpt["opt"])
            self.step, self._elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
        self.rng = random.Random(args.seed + self.step)
        self.data = CropDataset(list_images(args.train), args.crop, 0.0)
        self._start = time.time()

    def _start_from(self, path: Path) -> None:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        state = self.model.state_dict()
        wrong = [*(f"{k} is not trained here" for k in tensors if not self.trainable(k)),
                 *misfits(tensors, state)]
        missing = [k for k in state if self.trainable(k) and k not in tensors]
        if wrong or missing or not tensors:
            raise SystemExit(f"--start-from {path}: not this side's tensors for these weights "
                             f"({'; '.join(wrong[:3])}; missing {missing[:3]})")
        self.model.load_state_dict({**state, **tensors})

    def describe(self, extra: str = "") -> None:
        print(f"threads={torch.get_num_threads()} train_images={len(self.data)} start_step={self.step} "
              f"quality_balance={self.balance} trained={sum(p.numel() for p in self.learn)} {extra}".rstrip(),
              flush=True)

    def save(self, **provenance: object) -> None:
        """Checkpoint, then the full weights and sidecar, after checking every frozen tensor."""
        args = self.args
        elapsed = self._elapsed_before + time.time() - self._start
        trained = {k: v for k, v in self.model.state_dict().items() if self.trainable(k)}
        ckpt = {"trained": trained, "opt": self.opt.state_dict(), "step": self.step, "elapsed_s": elapsed}
        atomic_save(ckpt, self._ckpt)
        state = fp32_state(self.model)
        changed = [k for k, v in self.frozen.items() if not torch.equal(state[k], v)]
        if changed:
            raise RuntimeError(f"frozen tensors changed: {changed[:5]}")
        atomic_save(state, args.out / "weights.pt")
        atomic_save({k: state[k] for k in trained}, args.out / "trained.pt")
        out = inherited_sidecar(self.meta)
        mine = {"base_sha256": self._base_sha, "steps": self.step, "train_hours": round(elapsed / 3600, 3),
                "start_from": None if args.start_from is None else str(args.start_from),
                "crop": args.crop, "batch": args.batch, "lr": args.lr, "quality_balance": self.balance,
                **provenance}
        out.update({f"{self.prefix}_{k}": v for k, v in mine.items()})
        (args.out / "weights.json").write_text(json.dumps(out, indent=2))
        print(f"checkpoint step={self.step} elapsed_h={elapsed / 3600:.2f}", flush=True)

    def run(self, step: Step, log_line: Callable[[dict[str, float]], str], **provenance: object) -> None:
        """Train until the budget, ``--steps`` or a signal; log the means of ``step``'s values every
        ``--log-every`` steps (formatted by ``log_line``), save periodically and at the end."""
        args, model = self.args, self.model
        self._start = interval = time.time()
        checkpoints = Periodic(args.checkpoint_minutes, lambda: self.save(**provenance))
        budget = args.hours * 3600 if args.hours > 0 else math.inf
        sums: dict[str, float] = {}
        count = 0
        levels = model.config.levels
        limit = args.steps or math.inf
        with StopOnSignal() as stop:
            while not stop.requested and time.time() - self._start < budget and self.step < limit:
                spent = time.time() - self._start
                frac = self.step / args.steps if args.steps else spent / max(budget, 1.0)
                warmup = min(1.0, (self.step + 1) / max(args.warmup_steps, 1))
                lr = cosine_lr(args.lr, args.min_lr, frac) * warmup
                for group in self.opt.param_groups:
                    group["lr"] = lr
                x = self.data.batch(args.batch, self.rng)
                draws = [1 + (levels - 1) * self.rng.random() for _ in range(args.batch)]
                loss, values = step(x, torch.tensor(draws, dtype=torch.float64), min(frac, 1.0))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.learn, args.clip)
                self.opt.step()
                self.step += 1
                count += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.step % args.log_every == 0:
                    means = {k: v / count for k, v in sums.items()}
                    print(f"step={self.step} {log_line(means)} lr={lr:.2e} "
                          f"s/step={(time.time() - interval) / count:.3f}", flush=True)
                    sums, count, interval = {}, 0, time.time()
                checkpoints.tick()
        self.save(**provenance)
