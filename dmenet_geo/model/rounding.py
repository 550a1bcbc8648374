"""Rounding a latent to the coder's grid with a straight-through gradient."""

from __future__ import annotations

from torch import Tensor

__all__ = ["ste_round"]


def ste_round(v: Tensor, centre: Tensor) -> Tensor:
    """``round(v - centre) + centre`` in the forward pass; the identity for ``v`` backward (no
    gradient reaches ``centre``)."""
    return v + ((v - centre).round() + centre - v).detach()

