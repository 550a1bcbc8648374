"""The learned baseline: CompressAI's mean-scale hyperprior (mbt2018-mean) made variable-rate.

It gets the same gain units as DMENet (one log-gain table per quantity, interpolated between the
integer qualities), so that a comparison at equal training budget isolates DMENet's own design
(C/R blocks, SDPM, LSM, MDEI loss) from the rate-control mechanism. Trained by
``pipelines/train.py --arch mbt2018-mean`` with the same loss minus the MDEI term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from compressai.models import MeanScaleHyperprior
from torch import Tensor, nn

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import ForwardResult
from dmenet_geo.model.gains import initial_log_gains, interpolate_gains, quality_tensor

__all__ = ["GainMeanScaleHyperprior", "ARCH"]

ARCH = "mbt2018-mean"


class GainMeanScaleHyperprior(MeanScaleHyperprior):  # type: ignore[misc]
    """mbt2018-mean with N = ``config.n``, M = ``config.latent`` and gain units over ``config.lambdas``."""

    def __init__(self, config: DMENetConfig) -> None:
        super().__init__(N=config.n, M=config.latent)
        self.config = config
        init = initial_log_gains(config.lambdas, config.latent)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self.log_hyper_gain = nn.Parameter(torch.zeros(config.levels, config.n))
        self.log_hyper_inv_gain = nn.Parameter(torch.zeros(config.levels, config.n))

    def _q(self, quality: float | Sequence[float] | Tensor, batch: int) -> Tensor:
        return quality_tensor(self.config, quality, batch)

    def forward(self, x: Tensor, quality: float | Sequence[float] | Tensor) -> ForwardResult:  # type: ignore[override]
        q = self._q(quality, x.shape[0])
        y = self.g_a(x) * interpolate_gains(self.log_gain, q)
        z = self.h_a(y) * interpolate_gains(self.log_hyper_gain, q)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        params = self.h_s(z_hat * interpolate_gains(self.log_hyper_inv_gain, q))
        scales, means = params.chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        x_hat = self.g_s(y_hat * interpolate_gains(self.log_inv_gain, q))
        return ForwardResult(x_hat, y_likelihoods, z_likelihoods)

    def compress_at(self, x: Tensor, quality: float) -> tuple[list[bytes], list[bytes], tuple[int, int]]:
        """Entropy-coded ``y`` and ``z`` strings of a batch, at one quality."""
        q = self._q(quality, x.shape[0])
        y = self.g_a(x) * interpolate_gains(self.log_gain, q)
        z = self.h_a(y) * interpolate_gains(self.log_hyper_gain, q)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        params = self.h_s(z_hat * interpolate_gains(self.log_hyper_inv_gain, q))
        scales, means = params.chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return y_strings, z_strings, (int(z.shape[-2]), int(z.shape[-1]))

    def decompress_at(
        self, y_strings: list[bytes], z_strings: list[bytes], shape: tuple[int, int], quality: float
    ) -> Tensor:
        """Reconstruction in [0, 1] of what :meth:`compress_at` coded."""
        q = self._q(quality, len(y_strings))
        z_hat = self.entropy_bottleneck.decompress(z_strings, shape)
        params = self.h_s(z_hat * interpolate_gains(self.log_hyper_inv_gain, q))
        scales, means = params.chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_hat = self.gaussian_conditional.decompress(y_strings, indexes, means=means)
        return self.g_s(y_hat * interpolate_gains(self.log_inv_gain, q)).clamp_(0, 1)
