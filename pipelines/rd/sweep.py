"""A learned codec's quality sweep: code the tiles batch by batch at each quality, then measure."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pipelines.rd.results import RDPoint, point_line
from pipelines.rd.tiles import log, tile_metrics

__all__ = ["Coded", "sweep"]


@dataclass
class Coded:
    """One batch coded and decoded: bytes and reconstruction per tile, and the time it took."""

    nbytes: list[int] = field(default_factory=list)
    recs: list[np.ndarray] = field(default_factory=list)
    enc_s: float = 0.0
    dec_s: float = 0.0


def sweep(
    tiles: Sequence[np.ndarray],
    qualities: Sequence[float],
    label: str,
    batch_size: int,
    progress: bool,
    code: Callable[[Sequence[np.ndarray], float], Coded],
    workers: int = 1,
) -> list[RDPoint]:
    """One RD point per quality: ``code`` every batch of tiles, then measure the reconstructions.

    ``workers`` > 1 codes that many batches at once in threads (torch releases the GIL in its
    kernels): worth it where one batch cannot use the cores, as in encoder refinement, which
    optimises one tile at a time; give torch one thread per worker. The points are the same as
    with one worker, and the encode and decode times stay sums over the batches."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    pixels = tiles[0].shape[0] * tiles[0].shape[1]
    batches = [tiles[start : start + batch_size] for start in range(0, len(tiles), batch_size)]
    points = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, q in enumerate(qualities, 1):
            t0 = time.perf_counter()
            total = Coded()
            for part in pool.map(code, batches, [float(q)] * len(batches)):
                total.nbytes += part.nbytes
                total.recs += part.recs
                total.enc_s += part.enc_s
                total.dec_s += part.dec_s
            per_tile = [tile_metrics(t, r) for t, r in zip(tiles, total.recs, strict=True)]
            p = RDPoint.from_tiles(float(q), total.nbytes, per_tile, pixels, total.enc_s, total.dec_s)
            points.append(p)
            line = point_line(f"[{i}/{len(qualities)}] {label} q={q:g}", p, time.perf_counter() - t0)
            log(line, progress)
    return points
