"""The chunk grid of a (height, width) raster: chunk windows, chunk footprints in map units, and the
grouping of chunks into rectangular blocks that one task reads and encodes together."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from shapely.geometry.base import BaseGeometry

__all__ = ["Block", "ChunkGrid"]


@dataclass(frozen=True)
class Block:
    """A rectangle of chunks read with one window read; ``chunks`` are the selected chunk indexes."""

    row: int
    col: int
    height: int
    width: int
    chunks: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ChunkGrid:
    """Regular ``chunk x chunk`` tiling of a ``height x width`` raster (edge chunks are smaller)."""

    height: int
    width: int
    chunk: int

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.chunk)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.chunk)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def window(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(row, col, height, width)`` of chunk (i, j), clipped to the raster."""
        r, c = i * self.chunk, j * self.chunk
        return r, c, min(self.chunk, self.height - r), min(self.chunk, self.width - c)

    def all_chunks(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.rows) for j in range(self.cols)]

    def chunk_boxes(self, transform: Affine, chunks: list[tuple[int, int]]) -> np.ndarray:
        """Shapely polygons (map coordinates) of the given chunks' valid pixel areas."""
        boxes = []
        for i, j in chunks:
            r, c, h, w = self.window(i, j)
            corners = [transform @ (c + dc, r + dr) for dc, dr in ((0, 0), (w, 0), (w, h), (0, h))]
            boxes.append(shapely.Polygon(corners))
        return np.array(boxes, dtype=object)

    def intersecting(
        self, transform: Affine, geometry: BaseGeometry, chunks: list[tuple[int, int]] | None = None
    ) -> list[tuple[int, int]]:
        """The chunks (of ``chunks``, default all) whose area intersects ``geometry`` (same CRS)."""
        cand = self.all_chunks() if chunks is None else chunks
        if not cand:
            return []
        shapely.prepare(geometry)
        hits = shapely.intersects(geometry, self.chunk_boxes(transform, cand))
        return [ij for ij, hit in zip(cand, hits, strict=True) if hit]

    def blocks(self, selected: list[tuple[int, int]], chunks_per_block: int) -> list[Block]:
        """Group the selected chunks into blocks of up to ``chunks_per_block`` chunks (a rectangle
        ``block_rows x block_cols`` of the grid); blocks with no selected chunk are dropped."""
        k = max(1, int(chunks_per_block))
        bcols = min(self.cols, k)
        brows = max(1, min(self.rows, k // bcols))
        chosen = set(selected)
        out = []
        for bi in range(0, self.rows, brows):
            for bj in range(0, self.cols, bcols):
                members = tuple(
                    (i, j)
                    for i in range(bi, min(bi + brows, self.rows))
                    for j in range(bj, min(bj + bcols, self.cols))
                    if (i, j) in chosen
                )
                if not members:
                    continue
                # read only the bounding rectangle of the selected chunks
                i0, i1 = min(i for i, _ in members), max(i for i, _ in members)
                j0, j1 = min(j for _, j in members), max(j for _, j in members)
                r, c, _, _ = self.window(i0, j0)
                r1, c1, h1, w1 = self.window(i1, j1)
                out.append(Block(r, c, r1 + h1 - r, c1 + w1 - c, members))
        return out
