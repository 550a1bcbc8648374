"""Picture quality of coded chunks: PSNR, and the per-chunk quality search for a target PSNR.

PSNR peak: 255 for uint8; for other dtypes the chunk's valid data range (max - min over its bands,
at least 1), which is the range the codec itself scales each chunk to. Nodata pixels are ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmenet_geo.codec import DMENetCodec
from dmenet_geo.geo.overview import valid_mask

__all__ = ["QUALITY_MAX", "QUALITY_MIN", "Coded", "chunk_psnr", "encode_fixed", "encode_to_target"]

QUALITY_MIN = 1.0
QUALITY_MAX = 8.0


@dataclass(frozen=True)
class Coded:
    """One encoded chunk: its bytes, the quality used and (when measured) its PSNR in dB."""

    data: bytes
    quality: float
    psnr: float | None


def chunk_psnr(original: np.ndarray, reconstruction: np.ndarray, nodata: float | None) -> float:
    """PSNR (dB) of a chunk over its valid pixels; ``inf`` when identical, ``nan`` when all nodata."""
    valid = valid_mask(original, nodata)
    if not valid.any():
        return math.nan
    a = original[valid].astype(np.float64)
    b = reconstruction[valid].astype(np.float64)
    peak = 255.0 if original.dtype == np.uint8 else max(float(a.max() - a.min()), 1.0)
    err = float(np.mean((a - b) ** 2))
    return math.inf if err == 0 else 10.0 * math.log10(peak * peak / err)


def _reached(coded: Coded | None, target: float) -> bool:
    return coded is not None and coded.psnr is not None and not coded.psnr < target


def _codec(quality: float, nodata: float | None, model: str, refine: int = 0) -> DMENetCodec:
    return DMENetCodec(quality=quality, nodata=nodata, model=model, refine=refine)


def encode_fixed(
    arrays: Sequence[np.ndarray],
    quality: float,
    nodata: float | None,
    model: str = "default",
    refine: int = 0,
) -> list[bytes]:
    """Encode chunks at one quality, in one batch (``refine``: latent refinement steps per chunk)."""
    return list(_codec(quality, nodata, model, refine).encode_batch(list(arrays)))


def _encode_grouped(
    arrays: Sequence[np.ndarray], qualities: Sequence[float], nodata: float | None, model: str
) -> tuple[list[bytes], list[np.ndarray]]:
    """Encode each chunk at its own quality (batched per distinct quality) and decode it back."""
    groups: dict[float, list[int]] = defaultdict(list)
    for i, q in enumerate(qualities):
        groups[q].append(i)
    data: list[bytes] = [b""] * len(arrays)
    recon: list[np.ndarray] = [np.empty(0)] * len(arrays)
    for q, idx in groups.items():
        codec = _codec(q, nodata, model)
        encoded = codec.encode_batch([arrays[i] for i in idx])
        decoded = codec.decode_batch(encoded)
        for i, b, d in zip(idx, encoded, decoded, strict=True):
            data[i], recon[i] = b, d
    return data, recon


def encode_to_target(
    arrays: Sequence[np.ndarray],
    target_psnr: float,
    nodata: float | None,
    model: str = "default",
    regions: Sequence[tuple[int, int]] | None = None,
    steps: int = 6,
) -> list[Coded]:
    """For each chunk the lowest quality whose PSNR reaches ``target_psnr`` (bisection over the
    float quality in [1, 8], ``steps`` halvings after checking both ends; all chunks of the batch
    advance together). A chunk that misses the target even at quality 8 keeps quality 8.

    ``regions``: the ``(height, width)`` of each chunk's real pixels (edge chunks are padded); PSNR
    is measured there only.
    """
    n = len(arrays)
    sizes: list[tuple[int, int]] = (
        [(int(h), int(w)) for h, w in regions] if regions is not None
        else [(a.shape[-2], a.shape[-1]) for a in arrays]
    )

    def measure(qualities: list[float], which: list[int]) -> list[tuple[bytes, float]]:
        chosen = [arrays[i] for i in which]
        data, recon = _encode_grouped(chosen, [qualities[i] for i in which], nodata, model)
        out = []
        for k, i in enumerate(which):
            h, w = sizes[i]
            out.append((data[k], chunk_psnr(arrays[i][:, :h, :w], recon[k][:, :h, :w], nodata)))
        return out

    best: list[Coded | None] = [None] * n
    lo = [QUALITY_MIN] * n
    hi = [QUALITY_MAX] * n
    everyone = list(range(n))
    # the cheapest setting first: many chunks (flat water, haze) already reach the target there
    for i, (b, p) in zip(everyone, measure(lo, everyone), strict=True):
        if not p < target_psnr:  # reached (nan, an all-nodata chunk, counts as reached)
            best[i] = Coded(b, QUALITY_MIN, p)
    open_ = [i for i in everyone if best[i] is None]
    if open_:
        for i, (b, p) in zip(open_, measure(hi, open_), strict=True):
            best[i] = Coded(b, QUALITY_MAX, p)
        open_ = [i for i in open_ if _reached(best[i], target_psnr)]
    for _ in range(steps):
        if not open_:
            break
        mids = [0.0] * n
        for i in open_:
            mids[i] = round((lo[i] + hi[i]) / 2, 4)
        for i, (b, p) in zip(open_, measure(mids, open_), strict=True):
            if p < target_psnr:
                lo[i] = mids[i]
            else:
                hi[i] = mids[i]
                best[i] = Coded(b, mids[i], p)
    return [c for c in best if c is not None]
