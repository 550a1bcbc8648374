"""Float64 CPU convolutions as one matrix product per input plus shifted sums ("tap" convolutions).

PyTorch has no fast float64 convolution on the CPU: it copies every input pixel once per kernel tap
into a column buffer, then multiplies. When a layer has few output channels the product reads that
buffer (9x the input) for only a few multiply-adds per value, and dilated kernels take a slower path
still (``slow_conv_dilated2d``). Here the input is multiplied once by the weights of every tap of
every convolution that reads it, ``(taps * out, in) @ (in, H * W)``, and each output is the sum of
its taps' rows shifted into place: PEB's four branches 2.3-4.1x faster, SEB's offsets 1.8-2.2x
(``python pipelines/bench_tapconv.py``, one thread, two runs). Same arithmetic, other summation order:
results agree with ``F.conv2d`` to ~1e-14, and they do not depend on the thread count more than
the matrix product does.

Only stride 1 with "same" zero padding (``padding = dilation * (kernel // 2)``), one group, odd
kernels: what PEB and SDPM use. :func:`tap_convolutions` checks and refuses anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

__all__ = ["tap_convolutions", "supports_taps"]


def supports_taps(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a stride-1, single-group, odd-kernel convolution with "same" padding."""
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    padding = conv.padding
    return (
        conv.stride == (1, 1)
        and conv.groups == 1
        and kh % 2 == 1
        and kw % 2 == 1
        and not isinstance(padding, str)
        and tuple(padding) == (dh * (kh // 2), dw * (kw // 2))
        and conv.padding_mode == "zeros"
    )


def tap_convolutions(x: Tensor, convs: Sequence[nn.Conv2d]) -> list[Tensor]:
    """``[conv(x) for conv in convs]`` with one matrix product for all their taps (see the module)."""
    for conv in convs:
        if not supports_taps(conv):
            raise ValueError(f"tap convolutions need stride 1, one group and 'same' padding, got {conv}")
    b, c, h, w = x.shape
    weights = [conv.weight.permute(2, 3, 0, 1).reshape(-1, c) for conv in convs]  # rows: (tap, out)
    products = torch.matmul(torch.cat(weights).to(x.dtype), x.reshape(b, c, h * w)).view(b, -1, h, w)
    outputs, row = [], 0
    for conv in convs:
        (kh, kw), (dh, dw) = conv.kernel_size, conv.dilation
        out_ch = conv.out_channels
        out = x.new_zeros(b, out_ch, h, w)
        for i in range(kh):
            for j in range(kw):
                _add_shifted(out, products[:, row : row + out_ch], (i - kh // 2) * dh, (j - kw // 2) * dw)
                row += out_ch
        if conv.bias is not None:
            out += cast(Tensor, conv.bias).to(x.dtype).view(1, -1, 1, 1)
        outputs.append(out)
    return outputs


def _add_shifted(out: Tensor, tap: Tensor, dy: int, dx: int) -> None:
    """``out[..., y, x] += tap[..., y + dy, x + dx]`` wherever ``(y + dy, x + dx)`` is inside."""
    h, w = out.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return
    out[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] += tap[
        ..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
