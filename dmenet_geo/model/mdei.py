"""MDEI: multi-dimensional edge information, and the structural loss Loss_MDSE (eqs. 2-6).

Three branches see the image (values in [0, 1]): HA (a horizontal profile), VA (a vertical
profile) and EEM (edges = image minus its Gaussian-pyramid smoothing). Their weighted sum is the
structural feature map; Loss_MDSE is the MSE between the maps of the original and the
reconstruction.

Choices where the paper is ambiguous:

* HA pools over channels and rows (average and standard deviation) to a 1 x W profile, VA over
  channels and columns to an H x 1 profile; the 1 x 3 bar convolution runs along the profile, then
  sigmoid and expand back to C x H x W.
* The bar kernel starts as the second difference [-1, 2, -1] and the EEM kernels as the 5 x 5
  binomial kernel (M / N) * [1 4 6 4 1]^T [1 4 6 4 1] with M = 1, N = 256 (the second convolution 4x
  that, compensating the zeros inserted by up-sampling), applied per band.
* Down-sampling keeps every other row and column; up-sampling inserts zeros between samples.
* The paper lets MDEI's parameters (bar kernels, M, N) adapt during training. Minimised by the same
  loss they feed, they can only shrink the loss by flattening the features (M -> 0 makes EEM's
  output equal its input for both images, a zero bar kernel makes HA and VA constant), so here they
  are buffers by default; ``learnable=True`` restores the paper's behaviour for ablations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MDEI", "MDEIWeights", "mdse_loss"]

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])


class MDEIWeights:
    """The paper's branch and pooling weights a..g (Fig. 2)."""

    a = 0.5
    b = 0.5
    c = 0.5
    d = 0.5
    e = 0.5
    f = 0.1
    g = 0.5


class _Axial(nn.Module):
    """HA (``axis=-1``: a profile along W) or VA (``axis=-2``: a profile along H)."""

    def __init__(self, axis: int, w_avg: float, w_std: float, learnable: bool) -> None:
        super().__init__()
        self.axis = axis
        self.w_avg = w_avg
        self.w_std = w_std
        kernel = torch.tensor([[-1.0, 2.0, -1.0]]).view(1, 1, 1, 3)
        if learnable:
            self.kernel = nn.Parameter(kernel)
        else:
            self.register_buffer("kernel", kernel)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # Bring the profile axis last: (B, C*other, L).
        t = x if self.axis == -1 else x.transpose(-1, -2)
        flat = t.reshape(b, -1, t.shape[-1])
        profile = self.w_avg * flat.mean(dim=1) + self.w_std * flat.std(dim=1, unbiased=False)
        bar = F.conv2d(profile.view(b, 1, 1, -1), self.kernel, padding=(0, 1))
        gate = torch.sigmoid(bar).view(b, 1, -1)
        if self.axis == -1:
            return gate.view(b, 1, 1, w).expand(b, c, h, w)
        return gate.view(b, 1, h, 1).expand(b, c, h, w)


class EEM(nn.Module):
    """Edge extraction (eq. 4): X - G2(up(down(G1(X)))), per band, 5x5 Gaussian kernels."""

    MARGIN = 8

    def __init__(self, learnable: bool) -> None:
        super().__init__()
        self.register_buffer("base", torch.outer(_BINOMIAL, _BINOMIAL).view(1, 1, 5, 5))
        m, n = torch.tensor(1.0), torch.tensor(256.0)
        if learnable:
            self.m = nn.Parameter(m)
            self.n = nn.Parameter(n)
        else:
            self.register_buffer("m", m)
            self.register_buffer("n", n)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        base: Tensor = self.base  # type: ignore[assignment]
        kernel = (self.m / self.n * base).expand(c, 1, 5, 5)
        # Pad once (replicate, an even margin keeps the sampling grid) and crop at the end, so the
        # zero-inserted image is never padded and borders show no false edges.
        pad = self.MARGIN
        xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        smooth = F.conv2d(xp, kernel, padding=2, groups=c)
        up = torch.zeros_like(xp)
        up[..., ::2, ::2] = smooth[..., ::2, ::2]
        blurred = F.conv2d(up, 4 * kernel, padding=2, groups=c)
        return (xp - blurred)[..., pad:-pad, pad:-pad]


class MDEI(nn.Module):
    """Structural feature map ``e * HA + f * EEM + g * VA`` (eq. 5)."""

    def __init__(self, learnable: bool = False) -> None:
        super().__init__()
        w = MDEIWeights
        self.ha = _Axial(-1, w.a, w.b, learnable)
        self.va = _Axial(-2, w.c, w.d, learnable)
        self.eem = EEM(learnable)

    def forward(self, x: Tensor) -> Tensor:
        w = MDEIWeights
        return w.e * self.ha(x) + w.f * self.eem(x) + w.g * self.va(x)


def mdse_loss(mdei: MDEI, original: Tensor, reconstruction: Tensor) -> Tensor:
    """Loss_MDSE (eq. 6): MSE between the structural maps of both images."""
    return F.mse_loss(mdei(reconstruction), mdei(original))
