"""Training helpers: an image-folder dataset of random crops, and one optimisation step."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.losses import LossTerms, RateDistortionLoss

__all__ = [
    "CropDataset", "Optimisers", "train_step", "list_images", "retarget_gains", "cosine_lr", "GAIN_TABLES"
]

# The per-quality gain tables of a DMENet state dict, one row per operating point.
GAIN_TABLES = ("log_gain", "log_inv_gain", "log_hyper_gain", "log_hyper_inv_gain")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def list_images(folders: list[Path]) -> list[Path]:
    """All image files under the folders, sorted (so a seed fixes the order)."""
    files: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        files += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    return sorted(files)


class CropDataset:
    """RGB images held in memory as uint8; ``batch`` draws random crops with flips.

    With ``downscale`` > 0, that fraction of crops is cut from the image down-scaled 2x (box
    filter), which hides the source's JPEG blocking (where the image is large enough).
    """

    def __init__(self, files: list[Path], crop: int, downscale: float = 0.0) -> None:
        self.crop = crop
        self.downscale = downscale
        self.images: list[np.ndarray] = []
        self.halves: list[np.ndarray | None] = []
        for path in files:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
            if min(arr.shape[:2]) < crop:
                continue
            self.images.append(arr)
            h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
            half = arr[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
            self.halves.append(half.round().astype(np.uint8) if min(half.shape[:2]) >= crop else None)
        if not self.images:
            raise ValueError(f"no image is at least {crop}x{crop}")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: random.Random) -> np.ndarray:
        i = rng.randrange(len(self.images))
        img = self.images[i]
        half = self.halves[i]
        if half is not None and rng.random() < self.downscale:
            img = half
        y = rng.randrange(img.shape[0] - self.crop + 1)
        x = rng.randrange(img.shape[1] - self.crop + 1)
        tile = img[y : y + self.crop, x : x + self.crop]
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        if rng.random() < 0.5:
            tile = tile[::-1]
        return tile

    def batch(self, size: int, rng: random.Random, device: torch.device | str = "cpu") -> Tensor:
        """``size`` crops as a (size, 3, crop, crop) float tensor in [0, 1] on ``device`` (moved there
        as uint8, a quarter of the bytes, and converted there)."""
        tiles = np.stack([self.sample(rng) for _ in range(size)])
        return torch.from_numpy(tiles).to(device).permute(0, 3, 1, 2).float() / 255.0


@dataclass
class Optimisers:
    """The paper's two Adam optimisers: main network, and the entropy bottleneck's quantiles."""

    main: torch.optim.Adam
    aux: torch.optim.Adam

    @classmethod
    def build(cls, model: DMENet, lr: float, aux_lr: float) -> Optimisers:
        main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
        aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
        return cls(torch.optim.Adam(main_params, lr=lr), torch.optim.Adam(aux_params, lr=aux_lr))


def train_step(
    model: DMENet,
    criterion: RateDistortionLoss,
    opt: Optimisers,
    x: Tensor,
    qualities: Tensor,
    clip: float = 1.0,
) -> LossTerms:
    """One step of both optimisers; returns the (detached) loss terms."""
    model.train()
    opt.main.zero_grad(set_to_none=True)
    opt.aux.zero_grad(set_to_none=True)
    terms = criterion(model(x, qualities), x, qualities)
    terms.loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.main.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    opt.aux.step()
    return LossTerms(terms.loss.detach(), terms.bpp.detach(), terms.mse.detach(), terms.mdse.detach())


def cosine_lr(start: float, floor: float, fraction: float) -> float:
    """The learning rate ``fraction`` (clamped to 0..1) of the way along a cosine from ``start`` to
    ``floor``."""
    fraction = min(max(fraction, 0.0), 1.0)
    return floor + 0.5 * (start - floor) * (1 + math.cos(math.pi * fraction))


def retarget_gains(
    state: dict[str, Tensor], old_lambdas: tuple[float, ...], new_lambdas: tuple[float, ...]
) -> dict[str, Tensor]:
    """A copy of ``state`` whose gain tables serve ``new_lambdas`` instead of ``old_lambdas``.

    Each new row is interpolated linearly in log-lambda between the two nearest trained rows, and
    extrapolated from the end segments outside the trained range; training then refines them. This
    lets a model resume at a different set of operating points without starting over.
    """
    if len(old_lambdas) < 2:
        raise ValueError("retargeting needs a variable-rate model (at least two trained lambdas)")
    old = torch.log(torch.tensor(old_lambdas, dtype=torch.float64))
    new = torch.log(torch.tensor(new_lambdas, dtype=torch.float64))
    seg = torch.clamp(torch.searchsorted(old, new, right=True) - 1, 0, len(old_lambdas) - 2)
    frac = ((new - old[seg]) / (old[seg + 1] - old[seg])).unsqueeze(1)
    out = dict(state)
    for key in GAIN_TABLES:
        table = state[key].to(torch.float64)
        if table.shape[0] != len(old_lambdas):
            raise ValueError(f"{key} has {table.shape[0]} rows for {len(old_lambdas)} lambdas")
        rows = table[seg] * (1 - frac) + table[seg + 1] * frac
        out[key] = rows.to(state[key].dtype)
    return out
