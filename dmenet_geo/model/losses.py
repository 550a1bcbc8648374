"""The paper's rate-distortion objective, eq. 15: R + lambda * (D + psi * Loss_MDSE).

Rates are in bits per pixel, D is the MSE of images in [0, 1], and lambda follows CompressAI's
convention of multiplying the MSE by 255**2 (see :data:`dmenet_geo.model.config.DEFAULT_LAMBDAS`).
Each sample of a batch may carry its own quality, hence its own lambda (variable-rate training).

In such a batch the high-lambda samples have losses about ten times larger than the low-lambda ones,
so they steer the shared transforms. ``balance`` (alpha) weights each sample's loss by
``(lambda_i / lambda_mid) ** -alpha``, ``lambda_mid`` being the geometric mean of the model's lambdas:
0 is the plain mean of eq. 15, 0.5 evens out most of that imbalance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import ForwardResult
from dmenet_geo.model.mdei import MDEI

__all__ = ["RateDistortionLoss", "LossTerms"]


@dataclass
class LossTerms:
    """Batch means of the loss and its parts (``mdse`` is 0 when MDEI is off)."""

    loss: Tensor
    bpp: Tensor
    mse: Tensor
    mdse: Tensor


class RateDistortionLoss(nn.Module):
    """Per-sample ``bpp + lambda_i * 255**2 * (mse + psi * mdse)``, averaged over the batch
    (weighted by ``balance``, see the module docstring)."""

    def __init__(self, config: DMENetConfig, balance: float = 0.0) -> None:
        super().__init__()
        if not (0.0 <= balance <= 1.0):
            raise ValueError(f"balance must be in [0, 1], got {balance!r}")
        self.config = config
        self.balance = balance
        self._lambda_mid = math.exp(sum(math.log(v) for v in config.lambdas) / len(config.lambdas))
        self.mdei = MDEI() if config.use_mdei else None
        # per latent channel, how much its rate counts in the loss (None: all fully); the reported
        # bpp always counts every channel
        self.rate_weights: Tensor | None = None

    def sample_weights(self, lambdas: Tensor) -> Tensor:
        """Each sample's loss weight, ``(lambda_i / lambda_mid) ** -balance`` (see the module docstring)."""
        return (lambdas / self._lambda_mid) ** -self.balance

    def forward(self, result: ForwardResult, target: Tensor, qualities: Tensor) -> LossTerms:
        b, _, h, w = target.shape
        pixels = h * w
        bits_y = -torch.log2(result.likelihoods_y).flatten(2).sum(2)  # (B, channels)
        bits_z = -torch.log2(result.likelihoods_z).reshape(b, -1).sum(1)
        bpp = (bits_y.sum(1) + bits_z) / pixels
        rate = bpp if self.rate_weights is None else (bits_y @ self.rate_weights.to(bits_y) + bits_z) / pixels
        mse = (result.x_hat - target).pow(2).reshape(b, -1).mean(1)
        if self.mdei is not None:
            diff = self.mdei(result.x_hat) - self.mdei(target)
            mdse = diff.pow(2).reshape(b, -1).mean(1)
        else:
            mdse = torch.zeros_like(mse)
        lambdas = torch.tensor(
            [self.config.lambda_for(float(q)) for q in qualities.tolist()],
            dtype=mse.dtype,
            device=mse.device,
        )
        loss = rate + lambdas * 255**2 * (mse + self.config.psi * mdse)
        if self.balance:
            loss = loss * self.sample_weights(lambdas)
        return LossTerms(loss.mean(), bpp.mean(), mse.mean(), mdse.mean())
