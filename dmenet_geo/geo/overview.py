"""Reduced-resolution views computed block by block: nodata-aware averages (the overviews) and the
coarse valid-data mask the footprint is traced from.

A block's origin is a multiple of the chunk size, and every factor divides the chunk size, so each
block fills whole overview cells (except at the raster's right and bottom edges, where a cell
averages the pixels that exist) and no two blocks share a cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmenet_geo.geo.errors import GeoError

__all__ = ["choose_factors", "footprint_factor", "reduce_mean", "reduce_any", "valid_mask"]

MAX_PREVIEW_SIDE = 512
MAX_MASK_SIDE = 4096


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def choose_factors(
    height: int, width: int, chunk: int, overview: bool | int | Sequence[int]
) -> tuple[int, ...]:
    """Overview factors. ``True``: 8x, then 32x, 128x ... while the previous level is still more than
    512 pixels on its long side (bounded by the chunk size); ``False``: none; an int or a list: those."""
    if overview is False or overview is None:
        return ()
    if overview is True:
        factors = [min(8, chunk)]
        while max(height, width) / factors[-1] > MAX_PREVIEW_SIDE and factors[-1] * 4 <= chunk:
            factors.append(factors[-1] * 4)
        return tuple(factors)
    wanted = [int(overview)] if isinstance(overview, (int, np.integer)) else [int(f) for f in overview]
    for f in wanted:
        if f < 2 or not _is_pow2(f) or chunk % f:
            raise GeoError(f"overview factor {f} must be a power of two >= 2 dividing the chunk size {chunk}")
    return tuple(sorted(set(wanted)))


def footprint_factor(height: int, width: int, chunk: int) -> int:
    """Cell size (pixels) of the valid-data mask: 4, doubled while the mask would exceed 4096 cells
    on a side, never beyond the chunk size."""
    f = min(4, chunk)
    while max(height, width) / f > MAX_MASK_SIDE and f * 2 <= chunk and chunk % (f * 2) == 0:
        f *= 2
    return f


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Per-band validity of ``(bands, h, w)`` pixels: not equal to nodata and not NaN."""
    valid = np.ones(data.shape, dtype=bool)
    if data.dtype.kind == "f":
        valid &= ~np.isnan(data)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    return valid


def _cells(a: np.ndarray, factor: int, fill: float) -> np.ndarray:
    """Pad (..., h, w) to multiples of ``factor`` and expose the cells as (..., H, f, W, f)."""
    *lead, h, w = a.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        a = np.pad(a, [(0, 0)] * len(lead) + [(0, ph), (0, pw)], constant_values=fill)
    return a.reshape(*lead, (h + ph) // factor, factor, (w + pw) // factor, factor)


def reduce_mean(data: np.ndarray, valid: np.ndarray, factor: int, nodata: float | None) -> np.ndarray:
    """Average ``factor x factor`` cells of valid pixels; cells with none become nodata (or 0)."""
    sums = _cells(np.where(valid, data, 0).astype(np.float64), factor, 0).sum(axis=(-3, -1))
    counts = _cells(valid.astype(np.int32), factor, 0).sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    fill = 0.0 if nodata is None else nodata
    mean = np.where(counts > 0, mean, fill)
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
        if nodata is not None:
            # an average must not land on the nodata value by accident
            clash = (counts > 0) & (mean == nodata)
            mean[clash] = nodata + (1 if nodata < info.max else -1)
    return mean.astype(data.dtype)


def reduce_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """A ``(h, w)`` bool mask reduced to cells: true where any pixel of the cell is true."""
    return _cells(mask, factor, False).any(axis=(-3, -1))
