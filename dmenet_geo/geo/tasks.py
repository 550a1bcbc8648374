"""One task of the compression graph: read a block of chunks, encode them in one batch, write their
bytes into the store, and return what the driver needs (sizes, qualities, PSNR samples, overview
cells, the coarse valid mask). The task's memory is the block's pixels, nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.faults import checkpoint
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
    codec: Any = None  # a classical chunk codec (encode_batch/decode_batch) instead of DMENet
    refine: int = 0  # DMENet latent refinement steps per chunk (fixed quality only)


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


def process_block(
    block: Block, s: EncodeSettings, existing: Mapping[tuple[int, int], int] | None = None
) -> BlockResult:
    """Encode and write the block's chunks. ``existing`` (resumed runs): chunks already stored, with
    their sizes; they are not encoded again, only re-measured where the summary needs it (their
    quality with ``target_psnr``, PSNR for the sampled chunks), so the result equals a fresh run's."""
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
    all_todo, reuse = todo, existing or {}
    todo = [t for t in all_todo if t[0] not in reuse]
    arrays = [a for _, a, _ in todo]
    if s.codec is not None:  # e.g. JPEG 2000: its own rate control, PSNR sampled like fixed quality
        encoded = s.codec.encode_batch(arrays) if arrays else []
        qualities = [s.quality] * len(arrays)
        psnrs: list[float | None] = [None] * len(arrays)
    elif s.target_psnr is None:
        encoded = encode_fixed(arrays, s.quality, src.nodata, s.model, s.refine) if arrays else []
        qualities = [s.quality] * len(arrays)
        psnrs = [None] * len(arrays)
    else:
        coded = encode_to_target(arrays, s.target_psnr, src.nodata, s.model, [hw for _, _, hw in todo])
        encoded = [c.data for c in coded]
        qualities = [c.quality for c in coded]
        psnrs = [c.psnr for c in coded]
    checkpoint("encoded", len(todo))
    sizes: dict[tuple[int, int], int] = {}
    quals: dict[tuple[int, int], float] = {}
    for (ij, _, _), b, q in zip(todo, encoded, qualities, strict=True):
        s.store.put((0, *ij), b)
        sizes[ij] = len(b)
        quals[ij] = q
    if s.target_psnr is None:
        sampled = [(k, t) for k, t in enumerate(todo) if t[0] in s.sample]
        if sampled:
            from dmenet_geo.codec import DMENetCodec

            codec = s.codec
            if codec is None:
                codec = DMENetCodec(quality=s.quality, nodata=src.nodata, model=s.model)
            decoded = codec.decode_batch([encoded[k] for k, _ in sampled])
            for (k, (_, arr, (h, w))), d in zip(sampled, decoded, strict=True):
                psnrs[k] = chunk_psnr(arr[:, :h, :w], d[:, :h, :w], src.nodata)
    measured = dict(zip((t[0] for t in todo), psnrs, strict=True))
    if reuse:
        _measure_stored([t for t in all_todo if t[0] in reuse], reuse, s, sizes, quals, measured)
    for ij, _, _ in all_todo:  # chunk order, as a fresh run inserts them (the summary's means match)
        result.written[ij] = sizes[ij]
        result.qualities[ij] = quals[ij]
        p = measured.get(ij)
        if p is not None and not np.isnan(p):
            result.psnr[ij] = p
    kept = valid & written_px  # pixels outside written chunks (AOI, all-nodata) stay nodata
    for factor in s.overview_factors:
        result.overviews.append(reduce_mean(data, kept, factor, src.nodata))
    result.mask = reduce_any(kept.any(axis=0), s.mask_factor)
    return result


def _measure_stored(
    stored: list[tuple[tuple[int, int], np.ndarray, tuple[int, int]]],
    sizes_in_store: Mapping[tuple[int, int], int],
    s: EncodeSettings,
    sizes: dict[tuple[int, int], int],
    quals: dict[tuple[int, int], float],
    measured: dict[tuple[int, int], float | None],
) -> None:
    """Sizes, qualities and PSNR of chunks an earlier run stored (decoding only those measured)."""
    from dmenet_geo.codec import DMENetCodec, chunk_quality

    target = s.target_psnr is not None and s.codec is None
    need = [t for t in stored if target or t[0] in s.sample]
    data: dict[tuple[int, int], bytes] = {}
    for ij, _, _ in need:
        b = s.store.get((0, *ij))
        if b is None:
            raise GeoError(f"{s.store.store}: chunk {ij} disappeared while resuming")
        data[ij] = b
    for ij, _, _ in stored:
        sizes[ij] = sizes_in_store[ij]
        quals[ij] = chunk_quality(data[ij]) if target else s.quality
        measured[ij] = None
    if need:
        codec = s.codec or DMENetCodec(quality=s.quality, nodata=s.source.nodata, model=s.model)
        decoded = codec.decode_batch([data[ij] for ij, _, _ in need])
        for (ij, arr, (h, w)), d in zip(need, decoded, strict=True):
            measured[ij] = chunk_psnr(arr[:, :h, :w], d[:, :h, :w], s.source.nodata)
