"""Building blocks of DMENet: C/R blocks, SDPM (SS, SEB, PEB) and LSM (LKE).

Section 2 of Shi et al. (DMENet) with Tables 1 and 2. Choices where the paper is silent:

* R blocks up-sample with a 3x3 transposed convolution (stride 2, output padding 1): the table gives
  "Conv2D 3x3 2 up" and a transposed convolution is the usual learned 2x up-sampler in GDN codecs.
* SS keeps the first ``m = c // 2`` channels and passes the other half through the 3x3 convolution:
  an even split is the channel-preserving residual the text describes, at half the cost.
* SEB is one 3x3 deformable convolution (``torchvision.ops.deform_conv2d``) whose offsets come from a
  zero-initialised 3x3 convolution, so SEB starts as a plain 3x3 convolution and learns to bend. On
  the CPU it runs as a weighted gather of each sample's four neighbours + a matrix product
  (:func:`deform_conv2d_gathered`, the same function, 2-5x faster); CUDA uses torchvision's kernel.
* LSM's 5x5 convolution (producing E of eq. 9) is depthwise, like LKE's strip convolutions: the paper
  keeps LSM's spatial part single-channel and leaves channel mixing to the final 1x1 convolution.
  (A dense 5x5 would add 25 N^2 parameters: 1.6 M at N = 256.)
* PEB's four branches each reduce to ``c // 4`` channels: A is 1x1, B is 3x3, C is 3x3 with dilation
  2 and D is 3x3 with dilation 3 (receptive fields 1, 3, 5 and 7). Their concatenation has ``c``
  channels, so eq. 8's residual ``+ Output_SEB`` is added before the final 1x1 convolution. In the
  exact decoder's float64 on the CPU the four branches, and SEB's offset convolution, run as one
  matrix product over their taps (:mod:`dmenet_geo.model.tapconv`).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from dmenet_geo.model.tapconv import tap_convolutions

__all__ = ["CBlock", "RBlock", "SDPM", "SEB", "PEB", "LSM", "LKE", "DepthwiseConv2d"]


class CBlock(nn.Module):
    """Table 1 compression block: strided convolution (2x down) then GDN."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2)
        self.gdn = GDN(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.gdn(self.conv(x))


class RBlock(nn.Module):
    """Table 1 reconstruction block: 3x3 transposed convolution (2x up) then IGDN."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
        self.igdn = GDN(out_ch, inverse=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.igdn(self.conv(x))


class SEB(nn.Module):
    """Shape enhancement: a 3x3 deformable convolution with learned offsets."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.offset = nn.Conv2d(ch, 2 * 9, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)  # type: ignore[arg-type]
        self.weight = nn.Parameter(torch.empty(ch, ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(ch))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    #: On the CPU (float32 for the encoder and training, float64 for the exact decoder's g_s) the same
    #: deformable convolution runs as :func:`deform_conv2d_gathered`: 2.2-3.2x faster than torchvision's
    #: CPU kernel in float64 and 2.9-5.1x in float32 (``pipelines/bench_deform.py``: batch 8, one
    #: thread); outputs agree to rounding (~1e-14 relative in float64).
    gathered_on_cpu = True

    def forward(self, x: Tensor) -> Tensor:
        offset = tap_convolutions(x, [self.offset])[0] if _float64_cpu(x) else self.offset(x)
        if self.gathered_on_cpu and x.device.type == "cpu":
            return deform_conv2d_gathered(x, offset, self.weight, self.bias)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(1, 1))


def deform_conv2d_gathered(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=k // 2)`` (stride 1, dilation 1,
    one offset group, no mask) in two steps: every (pixel, tap) sample as the weighted sum of its four
    bilinear neighbours, gathered from channel-last pixels by ``F.embedding_bag`` (neighbours outside
    the image weigh 0, like torchvision's zeros), then one matrix product with the kernel (in float64,
    one per block of pixels).

    Every step is elementwise or a per-row sum over four terms, so the result does not depend on the
    thread count; the matrix product behaves like the float64 convolutions around it."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    k, hw = kh * kw, h * w
    off = offset.view(b, k, 2, h, w)  # torchvision's layout: (dy, dx) per kernel tap, row-major taps
    ky = (torch.arange(kh, dtype=x.dtype, device=x.device) - kh // 2).repeat_interleave(kw).view(1, k, 1, 1)
    kx = (torch.arange(kw, dtype=x.dtype, device=x.device) - kw // 2).repeat(kh).view(1, k, 1, 1)
    py = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1) + ky + off[:, :, 0]
    px = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w) + kx + off[:, :, 1]
    py, px = py.permute(0, 2, 3, 1), px.permute(0, 2, 3, 1)  # (b, h, w, k): samples by pixel, then tap
    y0, x0 = torch.floor(py), torch.floor(px)
    fy, fx = py - y0, px - x0
    iy, ix = y0.long(), x0.long()
    index, weights = [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = iy + dy, ix + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index.append(yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))
            weights.append(wy * wx * inside)
    first = (torch.arange(b, device=x.device) * hw).view(b, 1, 1, 1, 1)  # each image's first table row
    rows = (torch.stack(index, dim=-1) + first).view(-1, 4)
    table = x.permute(0, 2, 3, 1).reshape(b * hw, c).contiguous()  # a (slow) strided view when b == 1
    share = torch.stack(weights, dim=-1).view(-1, 4)
    kernel = weight.permute(0, 2, 3, 1).reshape(o, k * c).t()  # rows ordered (tap, channel) like cols
    if _float64_cpu(x):
        # The exact decoder: blocks of GATHER_BLOCK pixels, each image on its own, so that the
        # gathered samples (9 x 64 channels x 8 bytes a pixel at N = 128) stay in cache for their
        # product. Block bounds never depend on the batch.
        parts = []
        for start in range(0, b * hw, hw):
            for lo in range(start, start + hw, GATHER_BLOCK):
                rng = slice(lo * k, min(lo + GATHER_BLOCK, start + hw) * k)
                cols = F.embedding_bag(rows[rng], table, mode="sum", per_sample_weights=share[rng])
                parts.append(torch.matmul(cols.view(-1, k * c), kernel))
        product = torch.cat(parts).view(b, hw, o)
    else:
        cols = F.embedding_bag(rows, table, mode="sum", per_sample_weights=share)  # (b * h * w * k, c)
        product = torch.matmul(cols.view(b, hw, k * c), kernel)  # (b, h*w, o)
    return (product + bias).transpose(1, 2).contiguous().view(b, o, h, w)


#: Pixels per block of the float64 gathered deformable convolution (see :func:`deform_conv2d_gathered`).
GATHER_BLOCK = 512


class PEB(nn.Module):
    """Pyramid enhancement: four multi-scale branches, concat, + residual, 1x1 (eq. 8)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        q = ch // 4
        self.branch_a = nn.Conv2d(ch, q, 1)
        self.branch_b = nn.Conv2d(ch, q, 3, padding=1)
        self.branch_c = nn.Conv2d(ch, q, 3, padding=2, dilation=2)
        self.branch_d = nn.Conv2d(ch, ch - 3 * q, 3, padding=3, dilation=3)
        self.fuse = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        convs = [self.branch_a, self.branch_b, self.branch_c, self.branch_d]
        if _float64_cpu(x):  # one matrix product for the four branches' taps (pipelines/bench_tapconv.py)
            branches = torch.cat(tap_convolutions(x, convs), dim=1)
        else:
            branches = torch.cat([conv(x) for conv in convs], dim=1)
        return self.fuse(branches + x)


class SDPM(nn.Module):
    """SS channel slicing (eq. 7), then SEB, then PEB."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.keep = ch // 2
        self.slice_conv = nn.Conv2d(ch - self.keep, ch - self.keep, 3, padding=1)
        self.seb = SEB(ch)
        self.peb = PEB(ch)

    def forward(self, x: Tensor) -> Tensor:
        kept, rest = x[:, : self.keep], x[:, self.keep :]
        out = torch.cat([kept, self.slice_conv(rest)], dim=1)
        return self.peb(self.seb(out))


def _float64_cpu(x: Tensor) -> bool:
    """The exact decoder's arithmetic, where :mod:`dmenet_geo.model.tapconv` beats ``F.conv2d``."""
    return x.dtype == torch.float64 and x.device.type == "cpu"


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution (stride 1, "same" padding). In float64 on the CPU (the exact entropy
    parameters) it runs as one multiply-add per kernel tap over all channels: PyTorch's float64 CPU
    convolution loops over the groups, one call per channel, which made LSM cost a 256x256 chunk
    about 20 ms to decode alone with N = 128, against ~2 ms this way. Elsewhere: nn.Conv2d."""

    def __init__(self, ch: int, kernel: tuple[int, int]) -> None:
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"a 'same' depthwise convolution needs an odd kernel, got {kernel}")
        super().__init__(ch, ch, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=ch)

    def forward(self, x: Tensor) -> Tensor:
        if not _float64_cpu(x):
            return super().forward(x)
        (kh, kw), (ph, pw) = self.kernel_size, cast(tuple[int, int], self.padding)
        h, w = x.shape[-2:]
        padded = F.pad(x, (pw, pw, ph, ph))
        out = torch.zeros_like(x) if self.bias is None else self.bias.view(1, -1, 1, 1).expand_as(x).clone()
        for i in range(kh):
            for j in range(kw):
                out.addcmul_(padded[:, :, i : i + h, j : j + w], self.weight[:, :, i, j].view(1, -1, 1, 1))
        return out


class LKE(nn.Module):
    """Large-kernel strip enhancement (eq. 9): depthwise k x 1 then 1 x k pairs plus the residual."""

    KERNELS = (7, 11, 21)

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.vertical = nn.ModuleList(DepthwiseConv2d(ch, (k, 1)) for k in self.KERNELS)
        self.horizontal = nn.ModuleList(DepthwiseConv2d(ch, (1, k)) for k in self.KERNELS)

    def forward(self, e: Tensor) -> Tensor:
        out = e
        for vertical, horizontal in zip(self.vertical, self.horizontal, strict=False):
            out = out + horizontal(vertical(e))
        return out


class LSM(nn.Module):
    """Latent spatial enhancement: depthwise 5x5 conv (E), LKE, then a 1x1 conv to ``out_ch`` (eq. 10)."""

    def __init__(self, ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_in = DepthwiseConv2d(ch, (5, 5))
        self.lke = LKE(ch)
        self.point = nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.point(self.lke(self.conv_in(x)))
