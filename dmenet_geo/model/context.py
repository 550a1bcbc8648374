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

from typing import cast

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
        self._known_terms: tuple[Tensor | None, dict[tuple[object, ...], Tensor]] = (None, {})  # _known_term
        self.register_load_state_dict_post_hook(self._forget_known_terms)
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

    def refine_entries(self, params: Tensor, hidden: Tensor, spatial: Tensor, rows: Tensor) -> Tensor:
        """:meth:`refine` at some entries only: ``params`` (B, 2n, K) raw parameters, ``hidden``
        (B, 3n, K) the first layer's part from them (:meth:`params_hidden`) and ``spatial`` (B, 2n, K)
        the convolution of what is known, all at the same K positions; returns the refined rows
        ``rows`` (of the 2n) there. The same arithmetic as :meth:`refine`, evaluated on fewer values."""
        first, second, last = (cast(nn.Conv2d, self.fuse[i]) for i in (0, 2, 4))
        slope = cast(nn.LeakyReLU, self.fuse[1]).negative_slope
        h = F.leaky_relu(hidden + torch.matmul(first.weight[:, 2 * self.n :, 0, 0], spatial), slope)
        h = F.leaky_relu(torch.matmul(second.weight[:, :, 0, 0], h) + _column(second.bias), slope)
        out = torch.matmul(last.weight[rows, :, 0, 0], h) + _column(last.bias)[rows]
        return params[:, rows] + out

    def params_hidden(self, params: Tensor) -> Tensor:
        """The first fuse layer's part from the raw parameters (B, 2n, K), bias included."""
        first = cast(nn.Conv2d, self.fuse[0])
        return torch.matmul(first.weight[:, : 2 * self.n, 0, 0], params) + _column(first.bias)

    def add_stage(self, spatial: Tensor, values: Tensor, stage: int) -> Tensor:
        """With channel groups: ``spatial`` plus the convolution of stage ``stage``'s values
        (``values``, (B, n / groups, H, W): its group's channels, zero outside its positions) and of
        its 0/1 map. Only that group's input channels are convolved, a ``1 / groups`` share of the
        full convolution over everything known."""
        start = stage // 2 * (self.n // self.groups)
        weight = self.spatial.weight.to(values.dtype)
        value_part = F.conv2d(values, weight[:, start : start + values.shape[1]], padding=2)
        return spatial + value_part + self._known_term(stage, values)

    def _known_term(self, stage: int, values: Tensor) -> Tensor:
        """The convolution of stage ``stage``'s 0/1 map. It depends on the weights and the latent's
        size only, so a frozen context (as the coder's float64 copies are) computes it once per size
        and keeps it until its weights are replaced or loaded."""
        height, width = values.shape[-2:]
        weight = self.spatial.weight

        def convolve() -> Tensor:
            size = self.n // self.groups
            start = self.n + stage // 2 * size
            half = anchor_mask(height, width, values.device) ^ bool(stage % 2)
            known = half.to(values.dtype).expand(1, size, height, width)
            return F.conv2d(known, weight[:, start : start + size].to(values.dtype), padding=2)

        if weight.requires_grad:
            return convolve()
        owner, terms = self._known_terms
        if owner is not weight:  # a tuple, so that the module does not register the weight twice
            terms = {}
            self._known_terms = (weight, terms)
        key = (stage, height, width, values.dtype, values.device)
        if key not in terms:
            terms[key] = convolve()
        return terms[key]

    def _forget_known_terms(self, *_: object) -> None:
        self._known_terms = (None, {})

    def staged(self, params: Tensor, y: Tensor, straight_through: bool = False) -> Tensor:
        """Training-time parameters for every position, each from its stage's context: the earlier
        stages' values of ``y``, rounded around their means as the decoder would see them. The
        rounding passes no gradient to ``y`` unless ``straight_through`` (the identity backward).

        Each stage's parameters are those the coder computes (:meth:`CodingStages.stage_parameters`:
        with channel groups at the stage's own entries only), placed into the output."""
        stages = CodingStages(self, params)
        parts = []
        for _ in stages.masks:
            stage = stages.stage_parameters()
            means = stage[:, stage.shape[1] // 2 :]
            values = stages.gather(y)
            if straight_through:
                decoded = ste_round(values, means)
            else:
                decoded = (torch.round(values - means) + means).detach()
            parts.append(stage)
            stages.record_stage(decoded)
        return stages.scatter(parts)


class CodingStages:
    """The entropy parameters of each stage in turn, as the coder and the training pass see them.

    The coder calls :meth:`stage_parameters` for the next stage's entries (in coding order: channel,
    row, column), codes them, then :meth:`record_stage` with their decoded values; the training pass
    (:meth:`CheckerboardContext.staged`) does the same, differentiably, and :meth:`scatter` places
    the entries into a full tensor. :meth:`parameters` gives every position's refined parameters for
    the current stage (the coder's one-group path, and the tests). With one group the parameters are
    exactly ``context(params, known_values, known)``, as the shipped checkerboard models were coded.
    With channel groups the spatial convolution is a running sum
    (:meth:`CheckerboardContext.add_stage`) and the coder evaluates the fuse layers at the stage's
    entries only (:meth:`CheckerboardContext.refine_entries`); both differ from the full context in
    their last bits, never between encoder and decoder, which both come here.
    """

    def __init__(self, context: CheckerboardContext, params: Tensor) -> None:
        b, _, height, width = params.shape
        device = params.device
        self.context, self.params = context, params
        self.masks = context.stages(height, width, device)
        anchors = anchor_mask(height, width, device).reshape(-1)
        halves = (anchors.nonzero().squeeze(1), (~anchors).nonzero().squeeze(1))
        size = context.n // context.groups
        self._entries = [
            (slice(g * size, (g + 1) * size), halves[k]) for g in range(context.groups) for k in (0, 1)
        ]
        self._stage = 0
        self._shape = (height, width)
        rows = [torch.arange(g * size, (g + 1) * size, device=device) for g in range(context.groups)]
        self._rows = [torch.cat([r, r + context.n]) for r in rows]  # each group's scales, then means
        if context.groups == 1:
            self._known_values = torch.zeros(b, context.n, height * width, dtype=params.dtype, device=device)
            self._known = torch.zeros(context.n, height, width, dtype=torch.bool, device=device)
        else:
            self._spatial = context.empty_spatial(params)
            self._at: dict[int, tuple[Tensor, Tensor]] = {}

    def gather(self, full: Tensor) -> Tensor:
        """The current stage's entries of ``full`` (B, C, H, W) as (B, c, K): its channels of the
        first C / 2 (C = n) or of both halves (C = 2n, scales then means), at its K positions."""
        channels, positions = self._entries[self._stage]
        flat = full.flatten(2)
        if full.shape[1] == self.context.n:
            return flat[:, channels, positions]
        n = self.context.n
        upper = slice(n + channels.start, n + channels.stop)
        return torch.cat([flat[:, channels, positions], flat[:, upper, positions]], dim=1)

    def place(self, full: Tensor, part: Tensor) -> None:
        """Write the current stage's entries ``part`` (B, c, K) into ``full`` (B, n, H, W), in place."""
        channels, positions = self._entries[self._stage]
        full.view(full.shape[0], full.shape[1], -1)[:, channels, positions] = part

    def scatter(self, parts: list[Tensor]) -> Tensor:
        """Every stage's entries (B, 2c, K), as :meth:`stage_parameters` returned them in coding
        order, placed into one (B, 2n, H, W) tensor; differentiable."""
        n, (height, width) = self.context.n, self._shape
        index = [
            (self._rows[stage // 2].unsqueeze(1) * (height * width) + positions).reshape(-1)
            for stage, (_, positions) in enumerate(self._entries)
        ]
        values = torch.cat([part.flatten(1) for part in parts], dim=1)
        out = values.new_zeros(values.shape[0], 2 * n * height * width)
        return out.index_copy(1, torch.cat(index), values).reshape(-1, 2 * n, height, width)

    def parameters(self) -> Tensor:
        """Refined (scales, means) for every position; the next stage uses those of its own."""
        if self.context.groups == 1:
            known_values = self._known_values.reshape(self._known_values.shape[:2] + self._shape)
            return self.context(self.params, known_values, self._known)
        return self.context.refine(self.params, self._spatial)

    def stage_parameters(self) -> Tensor:
        """Refined (scales, means) of the current stage's entries only, (B, 2c, K)."""
        if self.context.groups == 1:
            return self.gather(self.parameters())
        _, positions = self._entries[self._stage]
        half = self._stage % 2
        if half not in self._at:  # the raw parameters and their first-layer part, at these positions
            at = self.params.flatten(2)[:, :, positions]
            self._at[half] = (at, self.context.params_hidden(at))
        params, hidden = self._at[half]
        rows = self._rows[self._stage // 2]
        return self.context.refine_entries(params, hidden, self._spatial.flatten(2)[:, :, positions], rows)

    def record_stage(self, values: Tensor) -> None:
        """The stage just coded: its decoded latent values, (B, c, K) as :meth:`gather` orders them."""
        _, positions = self._entries[self._stage]
        self._stage += 1
        if self._stage == len(self.masks):
            return  # nothing is coded after the last stage
        if self.context.groups == 1:
            self._known_values = self._known_values.index_copy(2, positions, values)
            self._known = self._known | self.masks[self._stage - 1]
            return
        b, c = values.shape[:2]
        empty = values.new_zeros(b, c, self._shape[0] * self._shape[1])
        stage_values = empty.index_copy(2, positions, values).reshape(b, c, *self._shape)
        self._spatial = self.context.add_stage(self._spatial, stage_values, self._stage - 1)


def _column(bias: Tensor | None) -> Tensor:
    """A convolution's bias as a (C, 1) column for matrix products over (B, C, K)."""
    assert bias is not None
    return bias.reshape(-1, 1)
