"""Fine-tune the encoder of a trained DMENet for its frozen decoder, on the cost of what the coder writes.

    python pipelines/train_encoder.py --init-weights dmenet_geo/weights/default.pt \
        --train ../shared/data/train --out runs/encoder --hours 2

The model was trained with uniform noise standing in for rounding in the rate. Here the analysis
transform, the hyper encoder and their gains learn for the frozen decoder the cost the encoder-side
refinement (``dmenet_geo.model.refine``) optimises per image: bits of ``y`` and ``z`` as coded plus
``lambda * 255^2 * MSE``, with each latent's rounding relaxed by stochastic Gumbel annealing (Yang et
al., NeurIPS 2020; the temperature falls linearly from ``--tau`` START to END over the run), at
qualities drawn uniformly from the continuous range, each sample weighted by ``--quality-balance``
(default: the value the weights were trained with). Plain straight-through rounding of the rate
(``--objective ste``: the model's own loss, with Loss_MDSE, on hard-rounded latents with
straight-through gradients, the fine-tuning of Guo et al., ICML 2021) made the coded cost worse from
the first steps here (README, "Development"): a symbol rounded to its mean gets no gradient for the
bits it would cost to leave it.

Every tensor a decoder reads (synthesis, hyper decoder, context, priors, decoder-side gains, entropy
tables) stays bit-identical to ``--init-weights``, checked at every save: chunks written with the
new encoder decode with the same decoder arithmetic. Each log line gives the coded cost (hard
rounding; the balanced mean over the interval's crops) beside that of the initial weights on the
same crops and qualities.

Writes ``OUT/checkpoint.pt`` (trained tensors, optimiser, step; ``--resume``) and the full model
``OUT/weights.pt`` with ``OUT/weights.json`` every ``--checkpoint-minutes`` and at the end. SIGTERM or
Ctrl-C stops after the current step with a final checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines.trainer`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.losses import RateDistortionLoss  # noqa: E402
from dmenet_geo.model.refine import coded_costs  # noqa: E402
from dmenet_geo.model.training import CropDataset, cosine_lr, list_images  # noqa: E402
from pipelines.trainer.runtime import Periodic, StopOnSignal, atomic_save, fp32_state, seed_and_threads  # noqa: E402

ENCODER = ("g_a.", "h_a.", "log_gain", "log_hyper_gain")


def is_encoder(name: str) -> bool:
    """Whether the parameter ``name`` belongs to the encoder side (no decoder reads it)."""
    return name.startswith(ENCODER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-weights", type=Path, required=True, help="weights.pt with its .json sidecar")
    p.add_argument("--train", type=Path, nargs="+", required=True, help="folders of training images")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hours", type=float, default=1.0, help="wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--min-lr", type=float, default=1e-6, help="cosine decay floor over the budget")
    p.add_argument("--warmup-steps", type=int, default=20, help="linear learning-rate warm-up")
    p.add_argument("--objective", choices=("sga", "ste"), default="sga",
                   help="sga: the coded cost with Gumbel-annealed rounding; ste: the model's own loss "
                        "(with Loss_MDSE) on hard-rounded latents, gradients straight through")
    p.add_argument("--tau", default="0.15,0.05", help="rounding temperature START,END (linear over the run)")
    p.add_argument("--quality-balance", type=float, default=None,
                   help="per-sample weight (lambda / mid) ** -ALPHA (default: the weights' own)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    args = p.parse_args(argv)
    for name in ("batch", "crop", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.crop % 64:
        p.error("--crop must be a multiple of 64")
    try:
        args.tau = tuple(float(v) for v in args.tau.split(","))
    except ValueError:
        p.error(f"--tau must be START,END, got {args.tau!r}")
    if len(args.tau) != 2 or not all(0 < t <= 1 for t in args.tau):
        p.error("--tau must be two temperatures in (0, 1]")
    return args


def load(weights: Path) -> tuple[DMENet, dict, dict[str, torch.Tensor]]:
    """The model (encoder trainable), its sidecar, and the frozen tensors to check at each save."""
    sidecar = weights.with_suffix(".json")
    if not weights.exists() or not sidecar.exists():
        raise SystemExit(f"--init-weights needs {weights} and its sidecar {sidecar}")
    meta = json.loads(sidecar.read_text())
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    for name, p in model.named_parameters():
        p.requires_grad_(is_encoder(name))
    return model.eval(), meta, {k: v for k, v in state.items() if not is_encoder(k)}


def batch_costs(
    model: DMENet, x: torch.Tensor, q: torch.Tensor, weights: list[float], relax: tuple | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The balanced mean coded cost of the crops ``x`` (no gradient) and, with ``relax`` = (tau,
    generator), its relaxed surrogate; one crop at a time, as the encoder codes them."""
    exact = torch.zeros(())
    surrogate = torch.zeros(()) if relax is not None else None
    for i, w in enumerate(weights):
        xi, qi = x[i : i + 1], q[i : i + 1]
        y = model.g_a(xi) * model._gain(model.log_gain, qi)
        e, r = coded_costs(model, y, xi, qi, model.config.lambda_for(float(qi[0])), relax)
        assert e is not None
        exact = exact + w * e / len(weights)
        if r is not None and surrogate is not None:
            surrogate = surrogate + w * r / len(weights)
    return exact, surrogate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed_and_threads(args.seed, args.threads)
    model, meta, frozen = load(args.init_weights)
    reference = copy.deepcopy(model).requires_grad_(False)
    balance = args.quality_balance
    if balance is None:
        balance = float(meta.get("quality_balance", 0.0))
    criterion = RateDistortionLoss(model.config, balance)
    learn = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(learn, lr=args.lr)
    step, elapsed_before = 0, 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"
    if args.resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict({**model.state_dict(), **ckpt["trained"]})
        opt.load_state_dict(ckpt["opt"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
    rng = random.Random(args.seed + step)
    data = CropDataset(list_images(args.train), args.crop, 0.0)
    base_sha = hashlib.sha256(args.init_weights.read_bytes()).hexdigest()
    generator = torch.Generator().manual_seed(args.seed + step)
    print(f"threads={torch.get_num_threads()} train_images={len(data)} start_step={step} "
          f"quality_balance={balance} tau={args.tau} trained={sum(p.numel() for p in learn)}", flush=True)

    def save() -> None:
        elapsed = elapsed_before + time.time() - start
        trained = {k: v for k, v in model.state_dict().items() if is_encoder(k)}
        atomic_save({"trained": trained, "opt": opt.state_dict(), "step": step, "elapsed_s": elapsed},
                    ckpt_path)
        state = fp32_state(model)
        changed = [k for k, v in frozen.items() if not torch.equal(state[k], v)]
        if changed:
            raise RuntimeError(f"decoder-side tensors changed: {changed[:5]}")
        atomic_save(state, args.out / "weights.pt")
        out = {k: v for k, v in meta.items() if k not in ("sha256", "superseded_by", "weights_file")}
        out.update(encoder_base_sha256=base_sha, encoder_steps=step,
                   encoder_train_hours=round(elapsed / 3600, 3), encoder_crop=args.crop,
                   encoder_batch=args.batch, encoder_lr=args.lr,
                   encoder_quality_balance=balance, encoder_tau=list(args.tau),
                   encoder_objective=args.objective)
        (args.out / "weights.json").write_text(json.dumps(out, indent=2))
        print(f"checkpoint step={step} elapsed_h={elapsed / 3600:.2f}", flush=True)

    start = interval = time.time()
    checkpoints = Periodic(args.checkpoint_minutes, save)
    budget = args.hours * 3600 if args.hours > 0 else math.inf
    acc = {"cost": 0.0, "ref": 0.0, "n": 0}
    levels = model.config.levels
    with StopOnSignal() as stop:
        while not stop.requested and time.time() - start < budget and step < (args.steps or math.inf):
            frac = (time.time() - start) / max(budget, 1.0) if not args.steps else step / args.steps
            lr = cosine_lr(args.lr, args.min_lr, frac) * min(1.0, (step + 1) / max(args.warmup_steps, 1))
            for group in opt.param_groups:
                group["lr"] = lr
            tau = args.tau[0] + (args.tau[1] - args.tau[0]) * min(frac, 1.0)
            x = data.batch(args.batch, rng)
            draws = [1 + (levels - 1) * rng.random() for _ in range(args.batch)]
            q = torch.tensor(draws, dtype=torch.float64)
            lambdas = torch.tensor([model.config.lambda_for(v) for v in draws], dtype=torch.float64)
            weights = criterion.sample_weights(lambdas).tolist()
            if args.objective == "sga":
                exact, surrogate = batch_costs(model, x, q, weights, (tau, generator))
                assert surrogate is not None
            else:
                surrogate = criterion(model(x, q, hard=True), x, q).loss
                with torch.no_grad():
                    exact, _ = batch_costs(model, x, q, weights, None)
            opt.zero_grad(set_to_none=True)
            surrogate.backward()
            torch.nn.utils.clip_grad_norm_(learn, args.clip)
            opt.step()
            with torch.no_grad():
                ref, _ = batch_costs(reference, x, q, weights, None)
            step += 1
            acc["cost"] += float(exact)
            acc["ref"] += float(ref)
            acc["n"] += 1
            if step % args.log_every == 0:
                n = acc["n"]
                print(f"step={step} cost={acc['cost'] / n:.4f} cost_init={acc['ref'] / n:.4f} "
                      f"change={100 * (acc['cost'] / acc['ref'] - 1):+.2f}% tau={tau:.3f} lr={lr:.2e} "
                      f"s/step={(time.time() - interval) / n:.3f}", flush=True)
                acc = {"cost": 0.0, "ref": 0.0, "n": 0}
                interval = time.time()
            checkpoints.tick()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
