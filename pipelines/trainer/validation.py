"""The validation crops of a training run and their estimated rate and quality."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.metrics import psnr
from dmenet_geo.model.training import CropDataset, list_images

VAL_CROP = 256


def validation_crops(folders: Sequence[Path], count: int) -> torch.Tensor:
    """The top-left 256x256 of ``count`` images drawn with a fixed seed: the same crops in every run."""
    files = list_images(list(folders))
    files = [files[i] for i in sorted(random.Random(1).sample(range(len(files)), min(count, len(files))))]
    images = CropDataset(files, VAL_CROP, 0.0).images
    return torch.stack(
        [torch.from_numpy(img[:VAL_CROP, :VAL_CROP].copy()).permute(2, 0, 1).float() / 255 for img in images]
    )


def validation_levels(config: DMENetConfig) -> list[float]:
    """The qualities validated: the lowest, the middle and the highest operating point."""
    return [1.0, float((config.levels + 1) // 2), float(config.levels)] if config.levels > 1 else [1.0]


def validate(
    model: DMENet, crops: torch.Tensor, levels: list[float], device: torch.device
) -> dict[str, float]:
    """Estimated bpp and PSNR (rounded latents) at a few qualities."""
    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for q in levels:
            res = model(crops.to(device), q)
            b, _, h, w = crops.shape
            bits = -(res.likelihoods_y.log().sum() + res.likelihoods_z.log().sum()) / math.log(2)
            out[f"bpp@{q:g}"] = float(bits) / (b * h * w)
            out[f"psnr@{q:g}"] = psnr(res.x_hat.clamp(0, 1).cpu(), crops, data_range=1.0)
    model.train()
    return out


def validation_loss(stats: dict[str, float], config: DMENetConfig, levels: list[float]) -> float:
    """The rate-distortion loss of :func:`validate`'s figures, summed over the levels (for the plateau)."""
    return sum(
        stats[f"bpp@{q:g}"] + config.lambda_for(q) * 255**2 * 10 ** (-stats[f"psnr@{q:g}"] / 10)
        for q in levels
    )
