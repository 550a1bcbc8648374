"""Shared helpers for the geo and CLI tests (``tests/test_geo*.py``, ``tests/test_cli*.py``): the test
rasters, a decode counter, fast compression settings and the quality threshold.

It holds no tests; the other modules import it (``from test_geo_common import ...``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

UINT8_RGB = DATA / "landsat7_rgb_uint8_300x270.tif"  # nodata 0, EPSG:32618
UINT16_RGB = DATA / "landsat8_rgb_uint16_300x270.tif"  # no nodata, EPSG:32621
UINT8_RGBN = DATA / "rgbn_uint8_4band_260x300.tif"  # 4 bands with descriptions, no nodata
INT16_NODATA = DATA / "landsat5_int16_nodata_wgs84_270x300.tif"  # nodata -9999, EPSG:4326
ALL_RASTERS = (UINT8_RGB, UINT16_RGB, UINT8_RGBN, INT16_NODATA)

#: Compression settings that keep the tests quick on a 2-core CPU (small chunks, no threads).
FAST: dict[str, Any] = {"chunk": 128, "progress": False, "scheduler": "synchronous"}


#: Minimum PSNR (dB, see dmenet_geo.geo.quality.chunk_psnr) of a GeoTIFF round trip in these tests:
#: about 3 dB under the lowest the shipped default gives in these tests (23.4 dB, session 23; the
#: highest 43.4 dB).
PSNR_MIN_DB = 20.0


def read_source(path: Path, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """All bands of ``path`` (or of a ``(row, col, height, width)`` window)."""
    with rasterio.open(path) as src:
        if window is None:
            return src.read()
        r, c, h, w = window
        return src.read(window=Window(c, r, w, h))


def psnr(original: np.ndarray, reconstruction: np.ndarray, nodata: float | None) -> float:
    from dmenet_geo.geo.quality import chunk_psnr

    value = chunk_psnr(original, reconstruction, nodata)
    assert not math.isnan(value), "no valid pixels to compare"
    return value


class DecodeCounter:
    """Counts chunks decoded through ``DMENetCodec.decode_batch`` (which zarr's serializer uses)."""

    def __init__(self) -> None:
        self.chunks = 0
        self.calls = 0

    def reset(self) -> None:
        self.chunks = self.calls = 0


@contextlib.contextmanager
def count_decodes(monkeypatch: Any) -> Iterator[DecodeCounter]:
    from dmenet_geo.codec import DMENetCodec

    counter = DecodeCounter()
    original = DMENetCodec.decode_batch

    def counting(self: Any, buffers: Any) -> Any:
        buffers = list(buffers)
        counter.calls += 1
        counter.chunks += len(buffers)
        return original(self, buffers)

    monkeypatch.setattr(DMENetCodec, "decode_batch", counting)
    yield counter


def leftovers(directory: Path) -> list[str]:
    """Names of partial/old stores left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name or ".old-" in p.name)
