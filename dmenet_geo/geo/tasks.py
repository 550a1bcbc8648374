"""One task of the compression graph: read a block of chunks, encode them in one batch, write their
bytes into the store, and return what the driver needs (sizes, qualities, PSNR samples, overview
cells, the coarse valid mask). The task's memory is the block's pixels, nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dmenet_geo.geo.grid import Block, ChunkGrid
from dmenet_geo.geo.overview import reduce_any, reduce_mean, valid_mask
from dmenet_geo.geo.quality import chunk_psnr, encode_fixed, encode_to_target
from dmenet_geo.geo.source import RasterSource, read_window
from dmenet_geo.geo.store import RawChunkIO

__all__ = ["BlockResult", "EncodeSettings", "process_block"]


@dataclass(frozen=True)
class EncodeSettings:
    """Everything a task needs besides its block (small and picklable)."""

    source: RasterSource
    grid: ChunkGrid
    chunk_shape: tuple[int, int]  # stored chunk shape (edge chunks are padded to it)
    quality: float
    target_psnr: float | None
    model: str
    overview_factors: tuple[int, ...]
    mask_factor: int
    sample: frozenset[tuple[int, int]]  # chunks whose PSNR is measured (fixed-quality mode)
    store: RawChunkIO


@dataclass
class BlockResult:
    """What one block produced."""

    row: int
    col: int
    written: dict[tuple[int, int], int] = field(default_factory=dict)  # chunk -> bytes
    qualities: dict[tuple[int, int], float] = field(default_factory=dict)
    psnr: dict[tuple[int, int], float] = field(default_factory=dict)
    skipped_nodata: int = 0
    overviews: list[np.ndarray] = field(default_factory=list)  # one per factor
    mask: np.ndarray | None = None  # cells of mask_factor pixels holding valid, written data


def _pad(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad an edge chunk to the stored chunk shape by repeating its last row/column (cheap to code;
    zarr never returns the padding)."""
    ph, pw = shape[0] - a.shape[1], shape[1] - a.shape[2]
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(a)
    return np.pad(a, ((0, 0), (0, ph), (0, pw)), mode="edge")


def process_block(block: Block, s: EncodeSettings) -> BlockResult:
    src = s.source
    data = read_window(src, block.row, block.col, block.height, block.width)
    valid = valid_mask(data, src.nodata)
    result = BlockResult(block.row, block.col)
    written_px = np.zeros(data.shape[1:], dtype=bool)
    todo: list[tuple[tuple[int, int], np.ndarray, tuple[int, int]]] = []
    for i, j in block.chunks:
        r, c, h, w = s.grid.window(i, j)
        r, c = r - block.row, c - block.col
        if src.nodata is not None and not valid[:, r : r + h, c : c + w].any():
            result.skipped_nodata += 1
            continue
        todo.append(((i, j), _pad(data[:, r : r + h, c : c + w], s.chunk_shape), (h, w)))
        written_px[r : r + h, c : c + w] = True
    arrays = [a for _, a, _ in todo]
    if s.target_psnr is None:
        encoded = encode_fixed(arrays, s.quality, src.nodata, s.model) if arrays else []
        qualities = [s.quality] * len(arrays)
        psnrs: list[float | None] = [None] * len(arrays)
    else:
        coded = encode_to_target(arrays, s.target_psnr, src.nodata, s.model, [hw for _, _, hw in todo])
        encoded = [c.data for c in coded]
        qualities = [c.quality for c in coded]
        psnrs = [c.psnr for c in coded]
    for (ij, _, _), b, q in zip(todo, encoded, qualities, strict=True):
        s.store.put((0, *ij), b)
        result.written[ij] = len(b)
        result.qualities[ij] = q
    if s.target_psnr is None:
        sampled = [(k, t) for k, t in enumerate(todo) if t[0] in s.sample]
        if sampled:
            from dmenet_geo.codec import DMENetCodec

            codec = DMENetCodec(quality=s.quality, nodata=src.nodata, model=s.model)
            decoded = codec.decode_batch([encoded[k] for k, _ in sampled])
            for (k, (_, arr, (h, w))), d in zip(sampled, decoded, strict=True):
                psnrs[k] = chunk_psnr(arr[:, :h, :w], d[:, :h, :w], src.nodata)
    for (ij, _, _), p in zip(todo, psnrs, strict=True):
        if p is not None and not np.isnan(p):
            result.psnr[ij] = p
    kept = valid & written_px  # pixels outside written chunks (AOI, all-nodata) stay nodata
    for factor in s.overview_factors:
        result.overviews.append(reduce_mean(data, kept, factor, src.nodata))
    result.mask = reduce_any(kept.any(axis=0), s.mask_factor)
    return result
