"""A residual post-filter on the decoded image: beyond the paper.

DMENet's synthesis ends in a stride-2 transposed convolution from ``N`` channels at half resolution
to the three colours, so nothing after it processes the picture at full resolution. The post-filter
adds a small convolutional network that sees the decoded picture (rearranged 2x2 into 12 channels at
half resolution, so its convolutions cost a quarter) and the quality it was coded at, and adds a
correction to it. Its last layer starts at zero, so a model with a fresh filter decodes exactly
like the same model without one. It changes only the decoder: the bitstream is the same, and
``pipelines/train_postfilter.py`` trains it alone on pictures the frozen model decoded.

When decoding, the filter runs in float64 like the synthesis (:mod:`dmenet_geo.model.exact`), so its
output does not depend on the batch size or the thread count beyond float64's last bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PostFilter", "FACTOR"]

FACTOR = 2  # the 2x2 space-to-depth rearrangement: 3 colours -> 12 channels at half resolution


class PostFilter(nn.Module):
    """``x_hat + f(x_hat, quality)`` for decoded pictures in [0, 1] with even height and width."""

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        width = 3 * FACTOR * FACTOR
        self.net = nn.Sequential(
            nn.Conv2d(width + 1, channels, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, width, 3, padding=1),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x_hat: Tensor, quality: Tensor) -> Tensor:
        """``x_hat`` (B, 3, H, W), ``quality`` (B,) in ``[1, levels]``; returns the filtered picture."""
        if x_hat.shape[-2] % FACTOR or x_hat.shape[-1] % FACTOR:
            raise ValueError(f"the post-filter needs an even height and width, got {tuple(x_hat.shape[-2:])}")
        packed = F.pixel_unshuffle(x_hat - 0.5, FACTOR)
        middle, half = (1 + self.levels) / 2, max((self.levels - 1) / 2, 1.0)
        level = ((quality.to(packed) - middle) / half).reshape(-1, 1, 1, 1)
        inputs = [packed, level.expand(-1, 1, *packed.shape[-2:])]
        return x_hat + F.pixel_shuffle(self.net(torch.cat(inputs, dim=1)), FACTOR)
