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
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch

from dmenet_geo.model.config import CONTEXTS, DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.losses import RateDistortionLoss
from dmenet_geo.model.metrics import psnr
from dmenet_geo.model.training import (
    CropDataset,
    Optimisers,
    cosine_lr,
    list_images,
    retarget_gains,
    train_step,
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
    return p.parse_args(argv)


def _int_pair(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two integers C,S, got {text!r}")
    return int(parts[0]), int(parts[1])


def build_model(arch: str, config: DMENetConfig) -> DMENet:
    """DMENet, or the learned baseline (same call signature) for ``arch="mbt2018-mean"``."""
    if arch == "dmenet":
        return DMENet(config)
    from pipelines.rd.gain_mbt import GainMeanScaleHyperprior

    return GainMeanScaleHyperprior(config)  # type: ignore[return-value]


def warmup_weights(n: int, first: int, steps: int, done: int) -> torch.Tensor:
    """Rate weights of ``n`` latent channels: 1, except channels ``first``.. at ``done / steps``."""
    if not 0 < first < n or steps <= 0:
        raise SystemExit(f"--rate-warmup needs 0 < C < {n} (the latent channels) and S > 0, "
                         f"got {first},{steps}")
    weights = torch.ones(n)
    weights[first:] = min(1.0, done / steps)
    return weights


def atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def validate(
    model: DMENet, crops: torch.Tensor, levels: list[float], device: torch.device
) -> dict[str, float]:
    """Estimated bpp and PSNR (rounded latents) at a few qualities."""
    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for q in levels:
            res = model(crops.to(device), q)
            b, _, h, w = crops.shape
            bits = -(res.likelihoods_y.log().sum() + res.likelihoods_z.log().sum()) / math.log(2)
            out[f"bpp@{q:g}"] = float(bits) / (b * h * w)
            out[f"psnr@{q:g}"] = psnr(res.x_hat.clamp(0, 1).cpu(), crops, data_range=1.0)
    model.train()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    retarget_from: tuple[float, ...] | None = None
    checkpoint = torch.load(args.resume, map_location="cpu", weights_only=True) if args.resume else None
    if checkpoint is not None:
        config = DMENetConfig.from_json(checkpoint["config"])
    elif args.init_weights is not None:
        meta = json.loads(args.init_weights.with_suffix(".json").read_text())
        config = DMENetConfig.from_dict(meta["config"])
        if args.lambdas and args.lambdas != config.lambdas:
            retarget_from = config.lambdas
            config = dataclasses.replace(config, lambdas=args.lambdas)
        if args.context is not None:
            config = dataclasses.replace(config, context=args.context)
    else:
        lambdas = (args.lmbda,) if args.lmbda else args.lambdas or DMENetConfig().lambdas
        config = DMENetConfig(
            n=args.n,
            m=args.m,
            use_mdei=not args.no_mdei,
            use_sdpm=not args.no_sdpm,
            use_lsm=not args.no_lsm,
            lambdas=lambdas,
            context=args.context or "none",
        )
    arch = checkpoint.get("arch", "dmenet") if checkpoint is not None else args.arch
    if arch != "dmenet":
        config = dataclasses.replace(config, use_mdei=False, use_sdpm=False, use_lsm=False, context="none")
    model = build_model(arch, config).to(device)
    try:
        criterion = RateDistortionLoss(config, balance=args.quality_balance).to(device)
    except ValueError as err:
        raise SystemExit(f"--quality-balance: {err}") from None
    opt = Optimisers.build(model, args.lr, args.aux_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt.main, factor=0.5, patience=4, min_lr=args.min_lr)
    step, elapsed_before = 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        opt.main.load_state_dict(checkpoint["opt_main"])
        opt.aux.load_state_dict(checkpoint["opt_aux"])
        sched.load_state_dict(checkpoint["scheduler"])
        step, elapsed_before = int(checkpoint["step"]), float(checkpoint["elapsed_s"])
        if args.reset_lr:
            for group in opt.main.param_groups:
                group["lr"] = args.lr
        rng.seed(args.seed + step)
        torch.manual_seed(args.seed + step)
    elif args.init_weights is not None:
        state = torch.load(args.init_weights, map_location="cpu", weights_only=True)
        if retarget_from is not None:
            state = retarget_gains(state, retarget_from, config.lambdas)
            print(f"gain tables re-targeted from lambdas {retarget_from} to {config.lambdas}", flush=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        fresh = [k for k in missing if not k.startswith("context.")]
        if fresh or unexpected:
            raise SystemExit(
                f"{args.init_weights} does not fit the model: missing {fresh}, unexpected {unexpected}"
            )
        step, elapsed_before = int(meta.get("steps", 0)), float(meta.get("train_hours", 0)) * 3600
    model.to(device)
    lineage = dict(checkpoint.get("lineage", {})) if checkpoint is not None else {}
    if checkpoint is None and args.init_weights is not None:
        lineage = {"init_weights": str(args.init_weights), "init_step": step,
                   "init_sha256": hashlib.sha256(args.init_weights.read_bytes()).hexdigest(),
                   **{k: v for k, v in meta.items() if k.startswith("widen")}}

    train_set = CropDataset(list_images(args.train), args.crop, args.downscale)
    val_crops = None
    if args.val:
        vfiles = list_images(args.val)
        vfiles = [
            vfiles[i]
            for i in sorted(random.Random(1).sample(range(len(vfiles)), min(args.val_images, len(vfiles))))
        ]
        vset = CropDataset(vfiles, 256, 0.0)
        val_crops = torch.stack(
            [torch.from_numpy(img[:256, :256].copy()).permute(2, 0, 1).float() / 255 for img in vset.images]
        )
    levels = [1.0, float((config.levels + 1) // 2), float(config.levels)] if config.levels > 1 else [1.0]
    print(
        f"device={device} threads={torch.get_num_threads()} config={config.to_json()} "
        f"train_images={len(train_set)} start_step={step}",
        flush=True,
    )

    def save() -> None:
        elapsed = elapsed_before + time.time() - start
        atomic_save(
            {
                "model": model.state_dict(),
                "opt_main": opt.main.state_dict(),
                "opt_aux": opt.aux.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "config": config.to_json(),
                "arch": arch,
                "lineage": lineage,
                **({"cosine": {**cosine, "done": cosine_done()}} if cosine is not None else {}),
            },
            args.out / "checkpoint.pt",
        )
        export = build_model(arch, config)
        export.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()}, strict=False)
        export.update(force=True)
        atomic_save(
            {k: v.float() if v.is_floating_point() else v for k, v in export.state_dict().items()},
            args.out / "weights.pt",
        )
        meta = {
            "arch": arch,
            "config": config.to_dict(),
            "steps": step,
            "train_hours": round(elapsed / 3600, 3),
            "device": str(device),
            "batch": args.batch,
            "crop": args.crop,
            "lr": args.lr,
            "schedule": args.schedule,
            "quality_balance": args.quality_balance,
            "train": [str(p) for p in args.train],
            "seed": args.seed,
            **lineage,
        }
        (args.out / "weights.json").write_text(json.dumps(meta, indent=2))
        print(f"checkpoint step={step} elapsed_h={elapsed / 3600:.2f}", flush=True)

    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["requested"] = True
        print(f"signal {signum}: saving a checkpoint and stopping", flush=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    budget = args.hours * 3600
    cosine = None
    if args.schedule == "cosine":
        saved = checkpoint.get("cosine") if checkpoint is not None and not args.reset_lr else None
        if saved is not None:
            cosine = dict(saved)
        elif args.steps and args.steps <= step:
            raise SystemExit(f"--steps {args.steps} is not beyond the starting step {step}")
        else:
            unit, span = ("step", args.steps - step) if args.steps else ("s", budget)
            cosine = {"lr": args.lr, "min_lr": args.min_lr, "unit": unit, "span": span, "done": 0.0}
    start = time.time()
    start_step = step
    last_ckpt = start

    def cosine_done() -> float:  # progress along the cosine, in its unit, including earlier runs
        assert cosine is not None
        return cosine["done"] + (step - start_step if cosine["unit"] == "step" else time.time() - start)
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    try:
        max_steps = args.steps or math.inf
        while time.time() - start < budget and not stop["requested"] and step < max_steps:
            if cosine is not None:
                lr = cosine_lr(cosine["lr"], cosine["min_lr"], cosine_done() / max(cosine["span"], 1e-9))
                for group in opt.main.param_groups:
                    group["lr"] = lr
            x = train_set.batch(args.batch, rng).to(device)
            q = torch.tensor([float(rng.randint(1, config.levels)) for _ in range(args.batch)])
            if args.rate_warmup is not None:
                first, ramp = args.rate_warmup
                done = step - int(lineage.get("init_step", 0))  # counted from the initial weights
                criterion.rate_weights = warmup_weights(config.latent, first, ramp, done)
            terms = train_step(model, criterion, opt, x, q, args.clip)
            step += 1
            acc["loss"] += float(terms.loss)
            acc["bpp"] += float(terms.bpp)
            acc["mse"] += float(terms.mse)
            acc["n"] += 1
            if step % args.log_every == 0:
                n = acc["n"]
                print(
                    f"step={step} loss={acc['loss'] / n:.4f} bpp={acc['bpp'] / n:.4f} "
                    f"psnr={10 * math.log10(1 / max(acc['mse'] / n, 1e-10)):.2f} "
                    f"lr={opt.main.param_groups[0]['lr']:.2e} "
                    f"s/step={(time.time() - start) / max(1, step - start_step):.3f}",
                    flush=True,
                )
                acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
            if val_crops is not None and step % args.val_every == 0:
                stats = validate(model, val_crops, levels, device)
                val_loss = sum(
                    stats[f"bpp@{q:g}"] + config.lambda_for(q) * 255**2 * 10 ** (-stats[f"psnr@{q:g}"] / 10)
                    for q in levels
                )
                if cosine is None:
                    sched.step(val_loss)
                print("val " + " ".join(f"{k}={v:.3f}" for k, v in stats.items()), flush=True)
            if time.time() - last_ckpt > args.checkpoint_minutes * 60:
                save()
                last_ckpt = time.time()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
