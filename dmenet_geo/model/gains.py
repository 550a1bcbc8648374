"""Gain units (Cui et al., CVPR 2021): one set of weights, a continuous quality.

A model keeps log-gain tables of shape ``(levels, channels)``, one row per operating point (one
lambda each), for ``y`` and for ``z``, and the inverse gains for the decoder side. Quality ``q`` in
``[1, levels]`` picks a row; between integers the log-gains are interpolated linearly, so any float
quality in range is valid. DMENet and the learned baseline in ``pipelines/rd`` share these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dmenet_geo.model.config import DMENetConfig

__all__ = ["initial_log_gains", "interpolate_gains", "quality_tensor"]


def interpolate_gains(table: Tensor, quality: Tensor) -> Tensor:
    """Gain vectors, (B, N, 1, 1), for a (B,) tensor of qualities from a (levels, N) log-gain table.

    Quality ``q`` in ``[1, levels]``; between integers the log-gains are interpolated linearly.
    """
    levels = table.shape[0]
    q = quality.to(table.device, torch.float64)
    if levels == 1:
        log_g = table[0:1].expand(q.shape[0], -1)
    else:
        lo = torch.clamp(torch.floor(q) - 1, 0, levels - 2).long()
        frac = (q - 1 - lo).to(table.dtype).unsqueeze(1)
        log_g = table[lo] * (1 - frac) + table[lo + 1] * frac
    return torch.exp(log_g)[:, :, None, None]


def initial_log_gains(lambdas: Sequence[float], n: int) -> Tensor:
    """Initial (levels, n) log-gain table: gains spread as sqrt(lambda), 1 at the largest lambda
    (the quantisation step goes as 1 / gain)."""
    lam = torch.tensor(lambdas, dtype=torch.float64)
    return (0.5 * torch.log(lam / lam.max())).float().unsqueeze(1).repeat(1, n)


def quality_tensor(config: DMENetConfig, quality: float | Sequence[float] | Tensor, batch: int) -> Tensor:
    """A (batch,) float64 CPU tensor of qualities (one value is broadcast), each checked against
    ``config``."""
    if isinstance(quality, Tensor):
        q = quality.detach().to("cpu", torch.float64).reshape(-1)
    elif isinstance(quality, (int, float)):
        q = torch.full((batch,), float(quality), dtype=torch.float64)
    else:
        q = torch.tensor([float(v) for v in quality], dtype=torch.float64)
    if q.numel() == 1 and batch > 1:
        q = q.expand(batch)
    if q.numel() != batch:
        raise ValueError(f"expected {batch} qualities, got {q.numel()}")
    for v in q.tolist():
        config.check_quality(v)
    return q
