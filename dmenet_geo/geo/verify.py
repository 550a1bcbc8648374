"""``verify_store``: decode every stored chunk of a store and report which (if any) fail."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from dmenet_geo.geo.backend import check_store
from dmenet_geo.geo.store import (
    IMAGE,
    RawChunkIO,
    child_array,
    child_group,
    open_root,
    overview_path,
    serializer_codec,
)

__all__ = ["VerifyReport", "verify_store"]


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_store`; ``ok`` when every stored chunk decoded to the right shape."""

    store: str
    chunks_total: int
    chunks_stored: int
    chunks_ok: int
    failures: tuple[tuple[tuple[int, int], str], ...] = field(default_factory=tuple)
    overviews_ok: bool = True

    @property
    def ok(self) -> bool:
        return not self.failures and self.overviews_ok

    def __str__(self) -> str:
        head = (f"{self.store}: {self.chunks_ok}/{self.chunks_stored} stored chunks decode "
                f"({self.chunks_total - self.chunks_stored} not stored: nodata or outside the AOI)")
        lines = [head + (", overviews readable" if self.overviews_ok else ", overviews UNREADABLE")]
        lines += [f"  chunk {ij}: {msg}" for ij, msg in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def verify_store(store: str | os.PathLike[str], batch: int = 16, progress: bool = False) -> VerifyReport:
    """Read every stored ``image`` chunk's bytes and decode them (in batches) with the store's codec
    configuration; a chunk fails when decoding raises or returns the wrong shape or dtype."""
    from tqdm import tqdm

    from dmenet_geo.codec import register_codecs

    path = check_store(store)
    register_codecs()
    root = open_root(path)
    image = child_array(root, IMAGE)
    codec = serializer_codec(image)
    io = RawChunkIO(path, IMAGE, mode="r")
    rows, cols = image.cdata_shape[1], image.cdata_shape[2]
    expected = (image.chunks[0], image.chunks[1], image.chunks[2])
    coords = [(i, j) for i in range(rows) for j in range(cols)]
    stored, ok = 0, 0
    failures: list[tuple[tuple[int, int], str]] = []

    def check(items: list[tuple[tuple[int, int], bytes]]) -> None:
        nonlocal ok
        try:
            arrays = codec.decode_batch([b for _, b in items])
        except Exception as exc:  # noqa: BLE001 - any failure is a verification finding
            if len(items) == 1:
                failures.append((items[0][0], f"{type(exc).__name__}: {exc}"))
            else:
                for item in items:
                    check([item])
            return
        for (ij, _), arr in zip(items, arrays, strict=True):
            if arr.shape != expected or arr.dtype != image.dtype:
                failures.append((ij, f"decoded {arr.shape} {arr.dtype}, expected {expected} {image.dtype}"))
            else:
                ok += 1

    pending: list[tuple[tuple[int, int], bytes]] = []
    for ij in tqdm(coords, unit="chunk", desc="verify", disable=not progress):
        data = io.get((0, *ij))
        if data is None:
            continue
        stored += 1
        pending.append((ij, data))
        if len(pending) >= batch:
            check(pending)
            pending = []
    if pending:
        check(pending)
    overviews_ok = True
    level = 1
    while (group := child_group(root, overview_path(level))) is not None:
        try:
            arr = child_array(group, IMAGE)
            step = arr.chunks[1]
            for r in range(0, arr.shape[1], step):  # one row of chunks at a time
                np.asarray(arr[:, r : r + step, :])
        except Exception:  # noqa: BLE001
            overviews_ok = False
        level += 1
    return VerifyReport(os.path.abspath(path), len(coords), stored, ok, tuple(failures), overviews_ok)
