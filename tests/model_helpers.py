"""Helpers shared by the model tests: crops of the sample tiles and untrained models whose latents
carry information."""

from __future__ import annotations

import math

import torch

from dmenet_geo.model import DMENet, DMENetConfig


def crop(x: torch.Tensor, h: int, w: int, top: int = 0, left: int = 0) -> torch.Tensor:
    return x[..., top : top + h, left : left + w].contiguous()


def loud_model(n: int, seed: int = 0) -> DMENet:
    """An untrained eval-mode model whose latents carry real information.

    Untrained, ``g_a`` outputs |y| ~ 0.06, so nearly every symbol would be 0 and the exactness tests
    would prove little. Gains 32x larger on y (8x on z), undone by the inverse gains, give about
    20 % (quality 1) to 80 % (quality 8) non-zero symbols and a dozen distinct scale indexes.
    """
    torch.manual_seed(seed)
    model = DMENet(DMENetConfig(n=n))
    with torch.no_grad():
        model.log_gain.add_(math.log(32.0))
        model.log_inv_gain.sub_(math.log(32.0))
        model.log_hyper_gain.add_(math.log(8.0))
        model.log_hyper_inv_gain.sub_(math.log(8.0))
    model.update(force=True)
    return model.eval()
