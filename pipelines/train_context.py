"""Train a checkerboard context (dmenet_geo.model.context) on a frozen DMENet, and with
``--hyperprior`` the hyperprior beside it.

    python pipelines/train_context.py --init-weights dmenet_geo/weights/default.pt \
        --train ../shared/data/train --out runs/context --hours 1.5

Without ``--hyperprior`` only the context's weights learn; analysis, synthesis, hyperprior, gains
and entropy tables stay bit-identical to ``--init-weights``, so the exported model decodes the
same pictures from the same symbols and the loss is the latent's rate alone (the means only move
where ``y - mean`` is rounded, which the straight-through decoder input does not see). Qualities
are drawn uniformly from the continuous range, so the interpolated operating points are trained
too. Each log line gives the estimated bpp of ``y`` with and without the context on the same
batches.

``--hyperprior`` also trains the hyper encoder, the hyper decoder with its head, the factorized
prior of ``z`` (its quantiles by the auxiliary loss, as in training) and the hyper gains; the
loss is then the rate of ``y`` and ``z``, and each log line compares it with ``--init-weights`` on
the same batches. Analysis, synthesis and their gains stay bit-identical: the decoded picture
changes only where a moved mean rounds ``y`` differently (a quantisation offset, not a bias).
``--relative-rate`` divides each crop's bits by the reference's bits for it (the hyperprior alone,
or ``--init-weights`` with ``--hyperprior``), so that every quality weighs the same, as in a
Bjontegaard average of log-rates, instead of the high qualities' larger bit counts dominating.
``--rate ste`` counts the bits of the symbols the coder writes, ``round(y - mean)``, with a
straight-through gradient to the means, instead of the uniform-noise relaxation (which, on the
latents of the shipped ``wide`` model, estimated 16-20 % more bits than the symbols'
likelihoods). Fine-tuning trained weights wants ``--warmup-steps`` and a small ``--lr``: Adam's
first steps move every weight by about the learning rate, which the hyperprior's predicted scales
are sensitive to.

Writes ``OUT/checkpoint.pt`` (trained weights, optimisers, step; resumable with ``--resume``) and
the full model ``OUT/weights.pt`` with ``OUT/weights.json`` (which records the frozen weights'
SHA-256 as ``context_base_sha256``), every ``--checkpoint-minutes`` and at the end.
``--warm-start`` begins from the context the initial weights already carry (same grouping)
instead of the identity, for retraining a context at another crop size; the rest stays frozen
all the same. SIGTERM or Ctrl-C stops after the current step with a final checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

if __package__ in (None, ""):  # run as a script: make the ``pipelines.trainer`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.training import CropDataset, cosine_lr, list_images  # noqa: E402
from dmenet_geo.model.zoo import read_state  # noqa: E402
from pipelines.trainer.finetune import add_arguments  # noqa: E402
from pipelines.trainer.runtime import (  # noqa: E402
    Periodic,
    StopOnSignal,
    atomic_save,
    fp32_state,
    inherited_sidecar,
    seed_and_threads,
)

HYPERPRIOR = ("h_a.", "entropy_parameters.", "entropy_bottleneck.", "log_hyper_gain", "log_hyper_inv_gain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, lr=1e-3, min_lr=5e-5, warmup_steps=0, log_every=100, one_side=False)
    p.add_argument("--groups", type=int, default=1,
                   help="channel groups (each coded as two checkerboard stages); 1: checkerboard alone")
    p.add_argument("--aux-lr", type=float, default=1e-3, help="quantiles of z (with --hyperprior)")
    p.add_argument("--warm-start", action="store_true",
                   help="start from the context in --init-weights (same --groups) instead of a fresh one")
    p.add_argument("--hyperprior", action="store_true", help="train the hyperprior with the context")
    p.add_argument("--rate", choices=("noise", "ste"), default="noise",
                   help="rate of y: uniform-noise relaxation, or the discrete rate of round(y - mean) with a "
                   "straight-through gradient to the means")
    p.add_argument("--relative-rate", action="store_true",
                   help="loss: each crop's bits over the reference's bits for it")
    args = p.parse_args(argv)
    if args.hours <= 0 and args.steps <= 0:
        p.error("give --hours or --steps")
    return args


def is_trained(name: str, hyperprior: bool) -> bool:
    """Whether the parameter or buffer ``name`` learns (else it must stay bit-identical)."""
    return name.startswith("context.") or (hyperprior and name.startswith(HYPERPRIOR))


def load_frozen(
    weights: Path, groups: int, warm_start: bool = False, hyperprior: bool = False
) -> tuple[DMENet, dict, dict[str, torch.Tensor], str]:
    """The model to train, the weights' sidecar, the frozen tensors (the trained ones excluded) and
    the weights' SHA-256."""
    meta = json.loads(weights.with_suffix(".json").read_text())
    config = DMENetConfig.from_dict(meta["config"])
    if warm_start:
        if config.context != "checkerboard" or config.context_groups != groups:
            raise SystemExit(f"--warm-start needs {weights} to carry a {groups}-group context, it has "
                             f"context={config.context!r} groups={config.context_groups}")
    elif config.context != "none":
        raise SystemExit(f"{weights} already has a context; train_context starts from a model without one "
                         "(or give --warm-start to go on from it)")
    config = dataclasses.replace(config, context="checkerboard", context_groups=groups)
    state, sha = read_state(weights)
    model = DMENet(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # a warm start needs every tensor; otherwise only the new context's may be absent
    absent = missing if warm_start else [k for k in missing if not k.startswith("context.")]
    if absent or unexpected:
        raise SystemExit(f"{weights} does not fit the model: missing {absent}, unexpected {unexpected}")
    state = {k: v for k, v in state.items() if not is_trained(k, hyperprior)}
    for name, p in model.named_parameters():
        p.requires_grad_(is_trained(name, hyperprior))
    return model, meta, state, sha


def rate_bits(model: DMENet, y: Tensor, params: Tensor, ste: bool = False) -> Tensor:
    """Estimated bits of ``y`` per crop, shape (B,): noise-relaxed likelihoods, or with ``ste`` the
    likelihoods of the symbols the coder writes (the means learn through a straight-through round)."""
    scales, means = params.chunk(2, dim=1)
    if ste:
        gc = model.gaussian_conditional
        residual = y - means
        symbols = residual + (torch.round(residual) - residual).detach()
        lik = gc._likelihood(symbols, scales)  # bounds the scales itself
        if gc.use_likelihood_bound:
            lik = gc.likelihood_lower_bound(lik)
    else:
        _, lik = model.gaussian_conditional(y, scales, means=means, training=True)
    return -torch.log2(lik).sum(dim=(1, 2, 3))


def total_bits(model: DMENet, y: Tensor, q: Tensor, ste: bool = False) -> Tensor:
    """Estimated bits of ``y`` and ``z`` per crop, every entropy-model part of ``model`` in the graph."""
    context = model.context
    assert context is not None
    z = model.h_a(y) * model._gain(model.log_hyper_gain, q)
    z_tilde, z_lik = model.entropy_bottleneck(z, training=True)
    base = model.entropy_parameters(z_tilde * model._gain(model.log_hyper_inv_gain, q))
    return rate_bits(model, y, context.staged(base, y), ste) - torch.log2(z_lik).sum(dim=(1, 2, 3))


def trained_state(model: DMENet, hyperprior: bool) -> dict[str, Tensor]:
    """The learning tensors for a checkpoint; the CDF tables of ``z`` are left out (``save`` rebuilds
    them from the quantiles, and their sizes change with them)."""
    tables = ("._quantized_cdf", "._offset", "._cdf_length")
    state = model.state_dict()
    return {k: v for k, v in state.items() if is_trained(k, hyperprior) and not k.endswith(tables)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed_and_threads(args.seed, args.threads)
    model, meta, base_state, base_sha = load_frozen(args.init_weights, args.groups, args.warm_start,
                                                    args.hyperprior)
    context = model.context
    assert context is not None
    model.eval()  # frozen parts: no dropout/batch-norm here, but keep the eval-mode tables
    reference = copy.deepcopy(model).requires_grad_(False) if args.hyperprior else None
    learn = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    quantiles = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith(".quantiles")]
    opt = torch.optim.Adam(learn, lr=args.lr)
    aux = torch.optim.Adam(quantiles, lr=args.aux_lr) if quantiles else None
    step, elapsed_before = 0, 0.0
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"
    if args.resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if int(ckpt.get("groups", 1)) != args.groups:
            raise SystemExit(f"{ckpt_path} was trained with --groups {ckpt.get('groups', 1)}")
        if bool(ckpt.get("hyperprior", False)) != args.hyperprior:
            raise SystemExit(f"{ckpt_path} was trained {'with' if ckpt.get('hyperprior') else 'without'} "
                             "--hyperprior")
        trained = ckpt.get("trained") or {f"context.{k}": v for k, v in ckpt["context"].items()}  # older runs
        model.load_state_dict({**model.state_dict(), **trained})
        opt.load_state_dict(ckpt["opt"])
        if aux is not None:
            aux.load_state_dict(ckpt["opt_aux"])
        step, elapsed_before = int(ckpt["step"]), float(ckpt["elapsed_s"])
    rng = random.Random(args.seed + step)
    torch.manual_seed(args.seed + step)
    data = CropDataset(list_images(args.train), args.crop, 0.0)
    print(f"threads={torch.get_num_threads()} train_images={len(data)} start_step={step} "
          f"hyperprior={args.hyperprior} rate={args.rate} relative_rate={args.relative_rate}", flush=True)

    def save() -> None:
        elapsed = elapsed_before + time.time() - start
        atomic_save({"trained": trained_state(model, args.hyperprior), "opt": opt.state_dict(),
                     "opt_aux": aux.state_dict() if aux is not None else None, "step": step,
                     "elapsed_s": elapsed, "groups": args.groups, "hyperprior": args.hyperprior}, ckpt_path)
        if args.hyperprior:
            model.update(force=True)  # the CDF tables of z follow its trained prior
        state = fp32_state(model)
        changed = [k for k, v in base_state.items() if not torch.equal(state[k], v)]
        if changed:
            raise RuntimeError(f"frozen weights changed: {changed[:5]}")
        atomic_save(state, args.out / "weights.pt")
        out_meta = dict(inherited_sidecar(meta), config=model.config.to_dict(), context_base_sha256=base_sha,
                        context_steps=step,
                        context_train_hours=round(elapsed / 3600, 3), context_crop=args.crop,
                        context_batch=args.batch, context_lr=args.lr, context_hyperprior=args.hyperprior,
                        context_rate=args.rate, context_relative_rate=args.relative_rate)
        if args.warm_start:  # the frozen file carried a context already: say whose context this goes on from
            out_meta["context_base_sha256"] = meta.get("context_base_sha256", base_sha)
            out_meta["context_warm_start_sha256"] = base_sha
        (args.out / "weights.json").write_text(json.dumps(out_meta, indent=2))
        print(f"checkpoint step={step} elapsed_h={elapsed / 3600:.2f}", flush=True)

    start = interval = time.time()
    checkpoints = Periodic(args.checkpoint_minutes, save)
    budget = args.hours * 3600 if args.hours > 0 else math.inf
    total_steps = args.steps or None
    acc = {"bits": 0.0, "ref": 0.0, "n": 0}
    lr_span = max(budget, 1.0)
    levels = model.config.levels
    ste = args.rate == "ste"
    names = ("bpp", "bpp_init") if args.hyperprior else ("bpp_y", "bpp_y_no_context")
    with StopOnSignal() as stop:
        while not stop.requested and time.time() - start < budget and step < (total_steps or math.inf):
            frac = (time.time() - start) / lr_span if total_steps is None else step / total_steps
            lr = cosine_lr(args.lr, args.min_lr, frac) * min(1.0, (step + 1) / max(args.warmup_steps, 1))
            for group in opt.param_groups:
                group["lr"] = lr
            x = data.batch(args.batch, rng)
            draws = [1 + (levels - 1) * rng.random() for _ in range(args.batch)]
            q = torch.tensor(draws, dtype=torch.float64)
            with torch.no_grad():
                y = model.g_a(x) * model._gain(model.log_gain, q)
                if reference is not None:
                    ref_bits = total_bits(reference, y, q, ste)
                else:
                    z = model.h_a(y) * model._gain(model.log_hyper_gain, q)
                    z_hat = model.entropy_bottleneck.quantize(z, "dequantize",
                                                              model.entropy_bottleneck._get_medians())
                    base = model.entropy_parameters(z_hat * model._gain(model.log_hyper_inv_gain, q))
                    ref_bits = rate_bits(model, y, base, ste)
            if args.hyperprior:
                bits = total_bits(model, y, q, ste)
            else:
                bits = rate_bits(model, y, context.staged(base, y), ste)
            pixels = x.shape[0] * x.shape[2] * x.shape[3]
            loss = (bits / ref_bits).mean() if args.relative_rate else bits.sum() / pixels
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(learn, args.clip)
            opt.step()
            if aux is not None:
                aux.zero_grad(set_to_none=True)
                model.aux_loss().backward()
                aux.step()
            step += 1
            acc["bits"] += float(bits.detach().sum()) / pixels
            acc["ref"] += float(ref_bits.sum()) / pixels
            acc["n"] += 1
            if step % args.log_every == 0:
                n = acc["n"]
                saving = 100 * (1 - acc["bits"] / acc["ref"])
                print(f"step={step} {names[0]}={acc['bits'] / n:.4f} {names[1]}={acc['ref'] / n:.4f} "
                      f"saving={saving:.2f}% lr={lr:.2e} s/step={(time.time() - interval) / n:.3f}",
                      flush=True)
                acc = {"bits": 0.0, "ref": 0.0, "n": 0}
                interval = time.time()
            checkpoints.tick()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
