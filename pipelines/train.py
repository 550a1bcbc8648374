"""Train DMENet (variable rate by default) on folders of RGB images.

    python pipelines/train.py --train ../shared/data/train --val ../shared/data/val \
        --out runs/default --hours 2 --lr 5e-4

Checkpoints (model, both optimisers, scheduler, step, RNG) are written atomically to
``OUT/checkpoint.pt`` every ``--checkpoint-minutes`` and at the end, with the exportable weights
``OUT/weights.pt`` (fp32 state dict with entropy tables) and ``OUT/weights.json`` (config and
provenance). SIGTERM or Ctrl-C stops after the current step with a final checkpoint. ``--resume``
continues a checkpoint; ``--init-weights`` starts from weights alone (for example the committed
default model), with fresh optimisers; with ``--lambdas`` its gain tables are re-targeted. The
sidecar records where the weights came from (``init_weights``, ``init_step``, ``init_sha256``).
``--rate-warmup C,S`` eases the rate of latent channels C.. in over S steps (widened models, see
``pipelines/widen.py``).
``--schedule cosine`` replaces the plateau halving with a cosine from ``--lr`` to ``--min-lr`` over the
run's ``--steps`` (else ``--hours``); a resume carries the cosine on where it stopped.
``--arch mbt2018-mean`` trains the learned baseline with the same data, crops, loop and rate control.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines.trainer`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.config import CONTEXTS, DMENetConfig  # noqa: E402
from dmenet_geo.model.training import CropDataset, cosine_lr, list_images, train_step  # noqa: E402
from pipelines.trainer.persist import RunSettings, save_run  # noqa: E402
from pipelines.trainer.runtime import Periodic, StopOnSignal, seed_and_threads  # noqa: E402
from pipelines.trainer.start import start_run  # noqa: E402
from pipelines.trainer.validation import (  # noqa: E402
    validate,
    validation_crops,
    validation_levels,
    validation_loss,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, nargs="+", required=True, help="training image folders")
    p.add_argument("--val", type=Path, nargs="*", default=[], help="validation image folders")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, weights)")
    p.add_argument("--hours", type=float, default=1.0, help="wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument(
        "--arch",
        choices=("dmenet", "mbt2018-mean"),
        default="dmenet",
        help="mbt2018-mean: the learned baseline (CompressAI mean-scale hyperprior with the same gain "
        "units, trained without the MDEI term)",
    )
    p.add_argument("--n", type=int, default=DMENetConfig().n, help="channel width N")
    p.add_argument("--m", type=int, default=None, help="latent channels M (default: N, as in the paper)")
    p.add_argument("--lmbda", type=float, default=None, help="train a fixed-rate model at this lambda")
    p.add_argument(
        "--lambdas",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=None,
        help="comma-separated operating points (default: DEFAULT_LAMBDAS); with --init-weights the "
        "gain tables are re-targeted to them",
    )
    p.add_argument("--no-mdei", action="store_true")
    p.add_argument("--no-sdpm", action="store_true")
    p.add_argument("--no-lsm", action="store_true")
    p.add_argument(
        "--context",
        choices=CONTEXTS,
        default=None,
        help="latent context (default: none, or that of --init-weights); checkerboard added to "
        "--init-weights starts as a zero (identity) context; pipelines/train_context.py trains one "
        "alone on frozen weights",
    )
    p.add_argument(
        "--context-groups",
        type=int,
        default=None,
        metavar="G",
        help="channel groups of the checkerboard context (implies --context checkerboard); with "
        "--init-weights of another grouping, the context starts afresh as a zero (identity) context "
        "and trains with the rest",
    )
    p.add_argument(
        "--rate-warmup",
        type=_int_pair,
        default=None,
        metavar="C,S",
        help="latent channels C.. (new ones of a widened model) start with their rate left out of the "
        "loss, counted in linearly over the first S steps after --init-weights (resumes count on), "
        "so that they learn to carry information before the rate pushes them back to 0",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument(
        "--downscale", type=float, default=0.5, help="fraction of crops from 2x-down-scaled images"
    )
    p.add_argument("--lr", type=float, default=1e-4, help="main Adam learning rate (paper: 1e-4)")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument(
        "--schedule",
        choices=("plateau", "cosine"),
        default="plateau",
        help="main lr: halved on validation plateaus (default), or a cosine from --lr to --min-lr over "
        "this run's --steps (else its --hours); a resumed cosine carries on unless --reset-lr",
    )
    p.add_argument(
        "--reset-lr", action="store_true", help="with --resume: use --lr instead of the saved rate"
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        metavar="S",
        help="with --schedule cosine: ramp the learning rate up linearly over this run's first S steps "
        "(fine-tuning trained weights: Adam's first steps move every weight by about the rate)",
    )
    p.add_argument(
        "--quality-balance",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="weight each sample's loss by (lambda / geometric-mean lambda) ** -ALPHA, in [0, 1]: "
        "0 (default) is the plain mean, larger values give the low qualities more say",
    )
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-images", type=int, default=24)
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--resume", type=Path, default=None, help="checkpoint.pt to continue")
    p.add_argument("--init-weights", type=Path, default=None, help="weights.pt to start from")
    args = p.parse_args(argv)
    if args.context_groups is not None and (args.context == "none" or args.resume is not None):
        p.error("--context-groups sets up a new run's checkerboard context: not with --context none "
                "or --resume")
    if args.warmup_steps < 0 or (args.warmup_steps and args.schedule != "cosine"):
        p.error("--warmup-steps takes a count >= 0 and needs --schedule cosine")
    return args


def _int_pair(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two integers C,S, got {text!r}")
    return int(parts[0]), int(parts[1])


def warmup_weights(n: int, first: int, steps: int, done: int) -> torch.Tensor:
    """Rate weights of ``n`` latent channels: 1, except channels ``first``.. at ``done / steps``."""
    if not 0 < first < n or steps <= 0:
        raise SystemExit(f"--rate-warmup needs 0 < C < {n} (the latent channels) and S > 0, "
                         f"got {first},{steps}")
    weights = torch.ones(n)
    weights[first:] = min(1.0, done / steps)
    return weights


def cosine_plan(args: argparse.Namespace, saved: dict[str, Any] | None, step: int) -> dict[str, Any] | None:
    """The cosine schedule of this run (``None`` for the plateau halving): the checkpoint's, carried
    on, unless ``--reset-lr``; else one from ``--lr`` to ``--min-lr`` over ``--steps`` or ``--hours``."""
    if args.schedule != "cosine":
        return None
    if saved is not None and not args.reset_lr:
        return dict(saved)
    if args.steps and args.steps <= step:
        raise SystemExit(f"--steps {args.steps} is not beyond the starting step {step}")
    unit, span = ("step", args.steps - step) if args.steps else ("s", args.hours * 3600)
    return {"lr": args.lr, "min_lr": args.min_lr, "unit": unit, "span": span, "done": 0.0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed_and_threads(args.seed, args.threads)
    rng = random.Random(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # fixed crop and batch sizes: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)

    run = start_run(args, device)
    model, config, opt, step = run.model, run.config, run.opt, run.step
    if run.resumed:  # a resume draws new crops, not the first run's again
        rng.seed(args.seed + step)
        torch.manual_seed(args.seed + step)
    train_set = CropDataset(list_images(args.train), args.crop, args.downscale)
    val_crops = validation_crops(args.val, args.val_images) if args.val else None
    levels = validation_levels(config)
    print(
        f"device={device} threads={torch.get_num_threads()} config={config.to_json()} "
        f"train_images={len(train_set)} start_step={step}",
        flush=True,
    )
    settings = RunSettings(device=str(device), batch=args.batch, crop=args.crop, lr=args.lr,
                           schedule=args.schedule, quality_balance=args.quality_balance,
                           train=[str(p) for p in args.train], seed=args.seed)
    cosine = cosine_plan(args, run.saved_cosine, step)
    start = time.time()
    start_step = step

    def cosine_done() -> float:  # progress along the cosine, in its unit, including earlier runs
        assert cosine is not None
        ran = step - start_step if cosine["unit"] == "step" else time.time() - start
        return float(cosine["done"] + ran)

    def save() -> None:
        elapsed = run.elapsed_before + time.time() - start
        save_run(args.out, run, step, elapsed, settings,
                 {**cosine, "done": cosine_done()} if cosine is not None else None)
        print(f"checkpoint step={step} elapsed_h={elapsed / 3600:.2f}", flush=True)

    sums = torch.zeros(3, device=device)  # loss, bpp, mse summed on the device: no host sync per step
    count = 0
    max_steps = args.steps or math.inf
    checkpoints = Periodic(args.checkpoint_minutes, save)
    with StopOnSignal() as stop:
        while time.time() - start < args.hours * 3600 and not stop.requested and step < max_steps:
            if cosine is not None:
                lr = cosine_lr(cosine["lr"], cosine["min_lr"], cosine_done() / max(cosine["span"], 1e-9))
                lr *= min(1.0, (step - start_step + 1) / max(args.warmup_steps, 1))
                for group in opt.main.param_groups:
                    group["lr"] = lr
            x = train_set.batch(args.batch, rng, device)
            q = torch.tensor([float(rng.randint(1, config.levels)) for _ in range(args.batch)])
            if args.rate_warmup is not None:
                first, ramp = args.rate_warmup
                done = step - int(run.lineage.get("init_step", 0))  # counted from the initial weights
                run.criterion.rate_weights = warmup_weights(config.latent, first, ramp, done)
            terms = train_step(model, run.criterion, opt, x, q, args.clip)
            step += 1
            sums += torch.stack([terms.loss, terms.bpp, terms.mse])
            count += 1
            if step % args.log_every == 0:
                loss, bpp, mse = (v / count for v in sums.tolist())
                print(
                    f"step={step} loss={loss:.4f} bpp={bpp:.4f} "
                    f"psnr={10 * math.log10(1 / max(mse, 1e-10)):.2f} "
                    f"lr={opt.main.param_groups[0]['lr']:.2e} "
                    f"s/step={(time.time() - start) / max(1, step - start_step):.3f}",
                    flush=True,
                )
                sums.zero_()
                count = 0
            if val_crops is not None and step % args.val_every == 0:
                stats = validate(model, val_crops, levels, device)
                if cosine is None:
                    run.sched.step(validation_loss(stats, config, levels))
                print("val " + " ".join(f"{k}={v:.3f}" for k, v in stats.items()), flush=True)
            checkpoints.tick()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
