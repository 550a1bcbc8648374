"""Building blocks of DMENet: C/R blocks, SDPM (SS, SEB, PEB) and LSM (LKE).

Section 2 of Shi et al. (DMENet) with Tables 1 and 2. Choices where the paper is silent:

* R blocks up-sample with a 3x3 transposed convolution (stride 2, output padding 1): the table gives
  "Conv2D 3x3 2 up" and a transposed convolution is the usual learned 2x up-sampler in GDN codecs.
* SS keeps the first ``m = c // 2`` channels and passes the other half through the 3x3 convolution:
  an even split is the channel-preserving residual the text describes, at half the cost.
* SEB is one 3x3 deformable convolution (``torchvision.ops.deform_conv2d``) whose offsets come from a
  zero-initialised 3x3 convolution, so SEB starts as a plain 3x3 convolution and learns to bend. On
  the CPU in float32 it runs as ``grid_sample`` + a matrix product (:func:`deform_conv2d_sampled`,
  the same function, much faster); float64 (exact decoding) and CUDA use torchvision's kernel.
* LSM's 5x5 convolution (producing E of eq. 9) is depthwise, like LKE's strip convolutions: the paper
  keeps LSM's spatial part single-channel and leaves channel mixing to the final 1x1 convolution.
  (A dense 5x5 would add 25 N^2 parameters: 1.6 M at N = 256.)
* PEB's four branches each reduce to ``c // 4`` channels: A is 1x1, B is 3x3, C is 3x3 with dilation
  2 and D is 3x3 with dilation 3 (receptive fields 1, 3, 5 and 7). Their concatenation has ``c``
  channels, so eq. 8's residual ``+ Output_SEB`` is added before the final 1x1 convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

__all__ = ["CBlock", "RBlock", "SDPM", "SEB", "PEB", "LSM", "LKE"]


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

    #: CPU float32 (the encoder's g_a, CPU training): the same deformable convolution computed as one
    #: ``grid_sample`` + one matrix product, 3-4x faster than torchvision's CPU kernel (outputs agree to
    #: float32 rounding, ~5e-6 relative). float64 (the exact decoder's g_s) and CUDA keep torchvision.
    sampled_on_cpu = True

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offset(x)
        if self.sampled_on_cpu and x.device.type == "cpu" and x.dtype == torch.float32:
            return deform_conv2d_sampled(x, offset, self.weight, self.bias)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(1, 1))


def deform_conv2d_sampled(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=k // 2)`` (stride 1, dilation 1,
    one offset group, no mask) as a bilinear ``grid_sample`` of the k*k shifted sampling grids, zero
    outside the image like torchvision, followed by one matrix product with the kernel."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    k = kh * kw
    off = offset.view(b, k, 2, h, w)  # torchvision's layout: (dy, dx) per kernel tap, row-major taps
    ky = (torch.arange(kh, dtype=x.dtype, device=x.device) - kh // 2).repeat_interleave(kw).view(1, k, 1, 1)
    kx = (torch.arange(kw, dtype=x.dtype, device=x.device) - kw // 2).repeat(kh).view(1, k, 1, 1)
    py = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1) + ky + off[:, :, 0]
    px = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w) + kx + off[:, :, 1]
    # align_corners=False: pixel p sits at (2p + 1) / size - 1 (also right for a 1-pixel axis)
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).view(b, k * h, w, 2)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = torch.matmul(weight.reshape(o, c * k), cols.view(b, c * k, h * w))  # (b, c, k*h, w) = (b, c*k, h*w)
    return out.view(b, o, h, w) + bias.view(1, o, 1, 1)


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
        branches = torch.cat([self.branch_a(x), self.branch_b(x), self.branch_c(x), self.branch_d(x)], dim=1)
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


class LKE(nn.Module):
    """Large-kernel strip enhancement (eq. 9): depthwise k x 1 then 1 x k pairs plus the residual."""

    KERNELS = (7, 11, 21)

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.vertical = nn.ModuleList(
            nn.Conv2d(ch, ch, (k, 1), padding=(k // 2, 0), groups=ch) for k in self.KERNELS
        )
        self.horizontal = nn.ModuleList(
            nn.Conv2d(ch, ch, (1, k), padding=(0, k // 2), groups=ch) for k in self.KERNELS
        )

    def forward(self, e: Tensor) -> Tensor:
        out = e
        for vertical, horizontal in zip(self.vertical, self.horizontal, strict=False):
            out = out + horizontal(vertical(e))
        return out


class LSM(nn.Module):
    """Latent spatial enhancement: depthwise 5x5 conv (E), LKE, then a 1x1 conv to ``out_ch`` (eq. 10)."""

    def __init__(self, ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(ch, ch, 5, padding=2, groups=ch)
        self.lke = LKE(ch)
        self.point = nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.point(self.lke(self.conv_in(x)))
