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
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines.trainer`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.refine import coded_costs  # noqa: E402
from pipelines.trainer.finetune import FineTune, add_arguments, check_arguments  # noqa: E402

ENCODER = ("g_a.", "h_a.", "log_gain", "log_hyper_gain")


def is_encoder(name: str) -> bool:
    """Whether the parameter ``name`` belongs to the encoder side (no decoder reads it)."""
    return name.startswith(ENCODER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, lr=1e-5, min_lr=1e-6)
    p.add_argument("--objective", choices=("sga", "ste"), default="sga",
                   help="sga: the coded cost with Gumbel-annealed rounding; ste: the model's own loss "
                        "(with Loss_MDSE) on hard-rounded latents, gradients straight through")
    p.add_argument("--tau", default="0.15,0.05", help="rounding temperature START,END (linear over the run)")
    args = p.parse_args(argv)
    check_arguments(p, args)
    try:
        args.tau = tuple(float(v) for v in args.tau.split(","))
    except ValueError:
        p.error(f"--tau must be START,END, got {args.tau!r}")
    if len(args.tau) != 2 or not all(0 < t <= 1 for t in args.tau):
        p.error("--tau must be two temperatures in (0, 1]")
    return args


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
    run = FineTune(args, is_encoder, "encoder")
    model, reference, criterion = run.model, run.reference, run.criterion
    generator = torch.Generator().manual_seed(args.seed + run.step)
    run.describe(f"tau={args.tau}")

    def step(x: torch.Tensor, q: torch.Tensor, frac: float) -> tuple[torch.Tensor, dict[str, float]]:
        tau = args.tau[0] + (args.tau[1] - args.tau[0]) * frac
        lambdas = torch.tensor([model.config.lambda_for(float(v)) for v in q], dtype=torch.float64)
        weights = criterion.sample_weights(lambdas).tolist()
        if args.objective == "sga":
            exact, surrogate = batch_costs(model, x, q, weights, (tau, generator))
            assert surrogate is not None
        else:
            surrogate = criterion(model(x, q, hard=True), x, q).loss
            with torch.no_grad():
                exact, _ = batch_costs(model, x, q, weights, None)
        with torch.no_grad():
            ref, _ = batch_costs(reference, x, q, weights, None)
        return surrogate, {"cost": float(exact), "ref": float(ref), "tau": tau}

    def log_line(m: dict[str, float]) -> str:
        change = 100 * (m["cost"] / m["ref"] - 1)
        return f"cost={m['cost']:.4f} cost_init={m['ref']:.4f} change={change:+.2f}% tau={m['tau']:.3f}"

    run.run(step, log_line, tau=list(args.tau), objective=args.objective)
    return 0


if __name__ == "__main__":
    sys.exit(main())
