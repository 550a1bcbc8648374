"""Image-quality and rate metrics: PSNR (data-range peak, and the paper's per-band peak, eq. 16),
MS-SSIM and MS-SSIM in dB (eq. 18), and bits per pixel from real byte counts."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor

__all__ = ["psnr", "psnr_band_peak", "ms_ssim", "ms_ssim_db", "bpp", "mse"]

ArrayLike = Tensor | np.ndarray


def _as_float64(a: ArrayLike) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def mse(original: ArrayLike, reconstruction: ArrayLike) -> float:
    a, b = _as_float64(original), _as_float64(reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(original: ArrayLike, reconstruction: ArrayLike, data_range: float = 255.0) -> float:
    """The usual PSNR: ``10 log10(peak^2 / MSE)`` over all bands, ``peak = data_range``."""
    err = mse(original, reconstruction)
    return math.inf if err == 0 else 10 * math.log10(data_range**2 / err)


def psnr_band_peak(original: ArrayLike, reconstruction: ArrayLike) -> float:
    """Eq. 16: the mean over bands of ``10 log10(max(X_i)^2 / MSE_i)``; bands on axis -3."""
    a, b = _as_float64(original), _as_float64(reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    a = a.reshape(-1, *a.shape[-3:]).swapaxes(0, 1).reshape(a.shape[-3], -1)
    b = b.reshape(-1, *b.shape[-3:]).swapaxes(0, 1).reshape(b.shape[-3], -1)
    values = []
    for band_a, band_b in zip(a, b, strict=False):
        err = float(np.mean((band_a - band_b) ** 2))
        peak = float(band_a.max())
        values.append(math.inf if err == 0 else 10 * math.log10(peak**2 / err))
    return float(np.mean(values))


def ms_ssim(original: ArrayLike, reconstruction: ArrayLike, data_range: float = 255.0) -> float:
    """MS-SSIM (5 scales, standard weights) of (B, C, H, W) or (C, H, W) images, H, W >= 161."""
    a = torch.from_numpy(_as_float64(original)).float()
    b = torch.from_numpy(_as_float64(reconstruction)).float()
    if a.dim() == 3:
        a, b = a[None], b[None]
    return float(_ms_ssim(a, b, data_range=data_range, size_average=True))


def ms_ssim_db(original: ArrayLike, reconstruction: ArrayLike, data_range: float = 255.0) -> float:
    """Eq. 18: ``-10 log10(1 - MS-SSIM)``."""
    value = ms_ssim(original, reconstruction, data_range)
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` for a height x width image (all bands together)."""
    if height <= 0 or width <= 0:
        raise ValueError("height and width must be positive")
    return 8.0 * num_bytes / (height * width)
