"""Checkerboard (and channel-group) context for the latent ``y``: beyond the paper.

DMENet codes ``y`` with a mean-scale Gaussian whose parameters come from the hyperprior alone.
Here ``y`` is coded in *stages*. Its channels form ``groups`` equal groups, coded one after the
other; inside a group the positions are split like a checkerboard, the *anchors* (``(row + col)``
even) first (He et al., CVPR 2021; channel groups as in ELIC, He et al., CVPR 2022). Each stage's
parameters come from the hyperprior and every latent value decoded in earlier stages (a 5x5
convolution over them), so decoding is ``2 * groups`` parallel passes, never a serial scan.

The module refines the hyperprior's raw parameters as a residual whose last layer starts at zero,
so a model with a fresh context codes exactly like the same model without one; training the context
alone (``pipelines/train_context.py``) on a frozen model then lowers the rate without touching the
analysis, synthesis or hyperprior weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmenet_geo.model.rounding import ste_round

__all__ = ["CheckerboardContext", "CodingStages", "anchor_mask", "stage_masks"]


def anchor_mask(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """A (height, width) bool tensor, True at anchor positions ((row + col) even)."""
    rows = torch.arange(height, device=device).unsqueeze(1)
    cols = torch.arange(width, device=device).unsqueeze(0)
    return (rows + cols) % 2 == 0


def stage_masks(
    channels: int, groups: int, height: int, width: int, device: torch.device | str = "cpu"
) -> list[Tensor]:
    """The (channels, height, width) bool masks of the coding stages, in coding order: for each
    channel group its anchors, then its other positions. Together they cover every position once."""
    anchors = anchor_mask(height, width, device)
    size = channels // groups
    masks = []
    for g in range(groups):
        in_group = torch.zeros(channels, 1, 1, dtype=torch.bool, device=device)
        in_group[g * size : (g + 1) * size] = True
        masks += [in_group & anchors, in_group & ~anchors]
    return masks


class CheckerboardContext(nn.Module):
    """Maps the hyperprior's raw (scales, means), (B, 2n, H, W), and the latent values known so far
    to refined parameters for every position (each stage uses those of its own positions).

    With one group the input is the decoded anchors (zeros elsewhere); with more, a 0/1 map of the
    known positions is added, since which channels are known then varies from stage to stage."""

    def __init__(self, n: int, groups: int = 1) -> None:
        super().__init__()
        if groups < 1 or n % groups:
            raise ValueError(f"groups must divide the {n} latent channels, got {groups}")
        self.n, self.groups = n, groups
        self.spatial = nn.Conv2d(n if groups == 1 else 2 * n, 2 * n, 5, padding=2)
        self.fuse = nn.Sequential(
            nn.Conv2d(4 * n, 3 * n, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(3 * n, 3 * n, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(3 * n, 2 * n, 1),
        )
        with torch.no_grad():  # the residual starts at zero: the hyperprior's parameters unchanged
            for p in self.fuse[-1].parameters():
                p.zero_()

    def stages(self, height: int, width: int, device: torch.device | str = "cpu") -> list[Tensor]:
        return stage_masks(self.n, self.groups, height, width, device)

    def forward(self, params: Tensor, known_values: Tensor, known: Tensor) -> Tensor:
        """``known_values``: decoded latent where ``known`` (a bool mask broadcastable to it), else 0."""
        inputs = known_values
        if self.groups > 1:
            inputs = torch.cat([known_values, known.to(known_values.dtype).expand_as(known_values)], dim=1)
        return self.refine(params, self.spatial(inputs))

    def refine(self, params: Tensor, spatial: Tensor) -> Tensor:
        """The refined parameters from the raw ones and the spatial convolution of what is known."""
        return params + self.fuse(torch.cat([params, spatial], dim=1))

    def empty_spatial(self, params: Tensor) -> Tensor:
        """The spatial convolution with nothing known (its bias), shaped like ``params``."""
        bias = self.spatial.bias
        assert bias is not None
        return bias.to(params.dtype).reshape(1, -1, 1, 1).expand_as(params)

    def add_stage(self, spatial: Tensor, decoded: Tensor, mask: Tensor, stage: int) -> Tensor:
        """With channel groups: ``spatial`` plus the convolution of stage ``stage``'s values (``decoded``
        where ``mask``) and of its 0/1 map. Only that stage's group of input channels is convolved, a
        ``1 / groups`` share of the full convolution over everything known."""
        size = self.n // self.groups
        start = stage // 2 * size
        group = slice(start, start + size)
        weight = self.spatial.weight.to(decoded.dtype)
        values = torch.where(mask, decoded, torch.zeros((), dtype=decoded.dtype, device=decoded.device))
        ones = mask[group].to(decoded.dtype).unsqueeze(0)
        value_part = F.conv2d(values[:, group], weight[:, group], padding=2)
        mask_part = F.conv2d(ones, weight[:, self.n + start : self.n + start + size], padding=2)
        return spatial + value_part + mask_part

    def staged(self, params: Tensor, y: Tensor, straight_through: bool = False) -> Tensor:
        """Training-time parameters for every position, each from its stage's context: the earlier
        stages' values of ``y``, rounded around their means as the decoder would see them. The
        rounding passes no gradient to ``y`` unless ``straight_through`` (the identity backward)."""
        out = torch.zeros_like(params)
        stages = CodingStages(self, params)
        for mask in stages.masks:
            stage = stages.parameters()
            out = torch.where(mask.repeat(2, 1, 1), stage, out)
            means = stage.chunk(2, dim=1)[1]
            decoded = ste_round(y, means) if straight_through else (torch.round(y - means) + means).detach()
            stages.record(decoded)
        return out


class CodingStages:
    """The entropy parameters of each stage in turn, as the coder and the training pass see them.

    Call :meth:`parameters` for the next stage, code it, then :meth:`record` its decoded values.
    With one group this is exactly ``context(params, known_values, known)``, as the shipped
    checkerboard models were coded. With channel groups the spatial convolution is a running sum
    (:meth:`CheckerboardContext.add_stage`), which differs from the full convolution in its last
    bits, never between encoder and decoder, which both come here.
    """

    def __init__(self, context: CheckerboardContext, params: Tensor) -> None:
        b, _, height, width = params.shape
        device = params.device
        self.context, self.params = context, params
        self.masks = context.stages(height, width, device)
        self._stage = 0
        if context.groups == 1:
            self._known_values = torch.zeros(b, context.n, height, width, dtype=params.dtype, device=device)
            self._known = torch.zeros(context.n, height, width, dtype=torch.bool, device=device)
        else:
            self._spatial = context.empty_spatial(params)

    def parameters(self) -> Tensor:
        """Refined (scales, means) for every position; the next stage uses those of its own."""
        if self.context.groups == 1:
            return self.context(self.params, self._known_values, self._known)
        return self.context.refine(self.params, self._spatial)

    def record(self, decoded: Tensor) -> None:
        """The stage just coded: ``decoded`` holds its latent values at its positions."""
        mask = self.masks[self._stage]
        if self.context.groups == 1:
            self._known_values = torch.where(mask, decoded, self._known_values)
            self._known = self._known | mask
        else:
            self._spatial = self.context.add_stage(self._spatial, decoded, mask, self._stage)
        self._stage += 1
