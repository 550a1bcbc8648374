"""Fine-tune the decoder of a trained DMENet on the latents its frozen encoder actually writes.

    python pipelines/train_decoder.py --init-weights dmenet_geo/weights/default.pt \
        --train ../shared/data/train --out runs/decoder --hours 2

Only the synthesis transform ``g_s`` and the decoder-side gains (``log_inv_gain``) learn; the
analysis, the hyperprior, the context and the entropy tables stay bit-identical to
``--init-weights`` (checked at every save), so every chunk is coded into exactly the same bytes as
before and only the decoded pixels change. The latents are rounded as the coder rounds them (hard,
around the context's means; the coder's means sit on a 1/64 grid, these do not, so a few symbols
differ) at qualities drawn uniformly from the continuous range; the loss is the
model's distortion term, ``lambda * 255^2 * (MSE + psi * Loss_MDSE)``, each sample weighted by
``--quality-balance`` (default: the value the weights were trained with). The rate is constant here.

Each log line gives the PSNR of the crops of the interval beside that of the initial weights on the
same crops and qualities. Writes ``OUT/checkpoint.pt`` (trained tensors, optimiser, step;
``--resume``) and the full model ``OUT/weights.pt`` with ``OUT/weights.json`` every
``--checkpoint-minutes`` and at the end. SIGTERM or Ctrl-C stops after the current step with a
final checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.dmenet import DMENet, ForwardResult  # noqa: E402
from pipelines.trainer.finetune import FineTune, add_arguments, check_arguments  # noqa: E402

DECODER = ("g_s.", "log_inv_gain")


def is_decoder(name: str) -> bool:
    """Whether ``name`` is read only after the latents are decoded (changing it changes no bytes)."""
    return name.startswith(DECODER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, lr=1e-4, min_lr=1e-5)
    args = p.parse_args(argv)
    check_arguments(p, args)
    return args


@torch.no_grad()
def coded_latents(model: DMENet, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``y`` rounded as the coder rounds it (around the hyperprior's and context's means), before the
    decoder-side gain."""
    y = model.g_a(x) * model._gain(model.log_gain, q)
    z_hat, _ = model._hard_z(model.h_a(y) * model._gain(model.log_hyper_gain, q))
    params = model.entropy_parameters(z_hat * model._gain(model.log_hyper_inv_gain, q))
    if model.context is not None:
        params = model.context.staged(params, y)
    means = params.chunk(2, dim=1)[1]
    return torch.round(y - means) + means


def decode(model: DMENet, y_hat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return model.reconstruct(y_hat * model._gain(model.log_inv_gain, q), q)


def psnr_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean over the batch of each crop's PSNR of ``x_hat`` clamped to [0, 1]."""
    mse = (x_hat.detach().clamp(0, 1) - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * torch.log10(mse)).mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = FineTune(args, is_decoder, "decoder")
    model, reference = run.model, run.reference
    certain = torch.ones(args.batch, 1, 1, 1)  # likelihood 1: the rate, constant here, counts 0 bits
    run.describe()

    def step(x: torch.Tensor, q: torch.Tensor, frac: float) -> tuple[torch.Tensor, dict[str, float]]:
        y_hat = coded_latents(model, x, q)
        x_hat = decode(model, y_hat, q)
        loss = run.criterion(ForwardResult(x_hat, certain, certain), x, q).loss
        with torch.no_grad():
            ref = decode(reference, y_hat, q)
        return loss, {"psnr": psnr_db(x_hat, x), "ref": psnr_db(ref, x)}

    def log_line(m: dict[str, float]) -> str:
        return f"psnr={m['psnr']:.3f} psnr_init={m['ref']:.3f} gain_db={m['psnr'] - m['ref']:+.3f}"

    run.run(step, log_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
