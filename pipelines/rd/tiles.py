"""Images to tiles, and the quality of one reconstructed tile.

Every image is cut into non-overlapping ``tile`` x ``tile`` RGB uint8 tiles (partial tiles at the
right and bottom edges are dropped); each tile is coded on its own, as one Zarr chunk would be.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DB_CAP",
    "IMAGE_SUFFIXES",
    "TileMetrics",
    "list_images",
    "load_tiles",
    "log",
    "read_rgb",
    "tile_metrics",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DB_CAP = 100.0  # PSNR / MS-SSIM dB of an exact reconstruction (MSE 0) is counted as this


def log(msg: str, enabled: bool = True) -> None:
    """A progress line on stderr."""
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def list_images(folder: Path | str | Sequence[Path | str], limit: int | None = None) -> list[Path]:
    """Image files under the folder(s), sorted; ``limit`` keeps that many spread evenly over the list."""
    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    files: list[Path] = []
    for f in map(Path, folders):
        if f.is_file():
            files.append(f)
            continue
        if not f.is_dir():
            raise FileNotFoundError(f"image folder not found: {f}")
        files += [p for p in f.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    files = sorted(set(files))
    if not files:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    if limit is not None and 0 < limit < len(files):
        idx = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in idx]
    return files


def read_rgb(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8, or None (with a note) for images that are not 8-bit."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr"):
                return np.asarray(im.convert("RGB"))
            arr = np.asarray(im)
    except Exception:  # unusual TIFFs: let imagecodecs try
        import imagecodecs

        arr = np.asarray(imagecodecs.imread(str(path)))
    if arr.dtype != np.uint8:
        log(f"skipping {path}: dtype {arr.dtype} (only 8-bit images are evaluated)")
        return None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:  # planar
            arr = np.moveaxis(arr, 0, -1)
        else:
            log(f"skipping {path}: shape {arr.shape}")
            return None
    return np.ascontiguousarray(arr[..., :3])


def load_tiles(paths: Iterable[Path], tile: int = 256) -> list[np.ndarray]:
    """Non-overlapping ``tile`` x ``tile`` RGB uint8 tiles (H, W, 3) of the images, row-major."""
    tiles: list[np.ndarray] = []
    for path in paths:
        img = read_rgb(Path(path))
        if img is None:
            continue
        h, w = img.shape[:2]
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                tiles.append(np.ascontiguousarray(img[r : r + tile, c : c + tile]))
    return tiles


@dataclass(frozen=True)
class TileMetrics:
    """Quality of one reconstructed tile (dB values capped at :data:`DB_CAP`)."""

    mse: float
    psnr: float  # peak 255 over the three RGB bands
    ms_ssim: float
    ms_ssim_db: float  # -10 log10(1 - MS-SSIM)


def tile_metrics(original: np.ndarray, reconstruction: np.ndarray) -> TileMetrics:
    """MSE, PSNR (peak 255) and MS-SSIM of two (H, W, 3) uint8 tiles."""
    from dmenet_geo.model import metrics

    if original.shape != reconstruction.shape:
        raise ValueError(f"reconstruction shape {reconstruction.shape} != original {original.shape}")
    a = np.moveaxis(original, -1, 0)
    b = np.moveaxis(reconstruction, -1, 0)
    msssim = metrics.ms_ssim(a, b, data_range=255.0)
    return TileMetrics(
        mse=metrics.mse(a, b),
        psnr=min(metrics.psnr(a, b, data_range=255.0), DB_CAP),
        ms_ssim=msssim,
        ms_ssim_db=DB_CAP if msssim >= 1 else min(-10 * math.log10(1 - msssim), DB_CAP),
    )
