"""The benchmark's scene: a georeferenced mosaic of real RSSCN7 tiles, cached as a tiled GeoTIFF.

Each mosaic cell holds one 400x400 tile chosen (with one of the 8 flips/rotations) by a fixed
pseudo-random draw per cell, so a smaller mosaic is exactly the top-left corner of a bigger one.
It is written with windowed writes of 512-row strips, so memory stays at one strip.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MOSAIC_VERSION = 1
TILE = 400  # RSSCN7 tiles are 400x400
STRIP = 512  # rows per windowed write (= the GeoTIFF's block height)
CRS = "EPSG:32610"  # WGS 84 / UTM zone 10N
ORIGIN = (548_000.0, 4_186_000.0)  # upper-left corner, San Francisco
PIXEL = 0.5  # metres


def source_images(data: Path | None) -> tuple[list[Path], str]:
    """The real images the mosaic is made of (sorted), and a one-line citation."""
    roots = [data] if data else [SHARED_DATA / "train" / "rsscn7", SHARED_DATA / "val" / "rsscn7"]
    files = sorted(p for root in roots if root.exists() for p in root.rglob("*.jpg"))
    if files:
        return files, "RSSCN7 (Zou et al. 2015), Google Earth imagery, 400x400 RGB tiles; research use"
    files = sorted((REPO / "sample_tiles").glob("*.png"))
    if not files:
        raise SystemExit("no real imagery found (neither /work/shared/data nor sample_tiles/)")
    return files, "dmenet_geo sample_tiles/*.png (real tiles, see sample_tiles/README)"


def _load_tile(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        if rgb.size != (TILE, TILE):  # sample tiles are 256x256: fit them to the mosaic cell
            rgb = rgb.resize((TILE, TILE), Image.Resampling.BICUBIC)
        return np.asarray(rgb)


def _cell(files: list[Path], ti: int, tj: int, cache: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """The (TILE, TILE, 3) content of mosaic cell (ti, tj): a fixed choice of image and of one of the 8
    flips/rotations, independent of the mosaic size."""
    if (ti, tj) not in cache:
        rng = np.random.default_rng([MOSAIC_VERSION, ti, tj])
        idx, op = int(rng.integers(len(files))), int(rng.integers(8))
        img = np.rot90(_load_tile(files[idx]), op % 4)
        cache[(ti, tj)] = np.ascontiguousarray(img[:, ::-1] if op >= 4 else img)
    return cache[(ti, tj)]


def mosaic_path(cache_dir: Path, size: int, tag: str) -> Path:
    return cache_dir / f"mosaic-{tag}-v{MOSAIC_VERSION}-{size}.tif"


def build_mosaic(path: Path, size: int, files: list[Path], citation: str) -> dict[str, Any]:
    """Write the size x size x 3 uint8 mosaic (cached: an existing file is reused)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    info: dict[str, Any] = {"path": str(path), "size": size, "sources": citation, "images": len(files),
                            "crs": CRS, "pixel_m": PIXEL, "cached": path.exists()}
    if path.exists():
        info["bytes"] = path.stat().st_size
        info["build_s"] = 0.0
        return info
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": CRS, "transform": from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2,
        "interleave": "pixel", "photometric": "RGB", "BIGTIFF": "IF_SAFER",
    }
    t0 = time.perf_counter()
    cells: dict[tuple[int, int], np.ndarray] = {}
    try:
        env = rasterio.Env(GDAL_CACHEMAX=64, GDAL_NUM_THREADS="ALL_CPUS")
        with env, rasterio.open(tmp, "w", **profile) as dst:
            dst.update_tags(SOURCE=citation, MOSAIC=f"dmenet_geo benchmark mosaic v{MOSAIC_VERSION}")
            ncells = math.ceil(size / TILE)
            for r0 in range(0, size, STRIP):
                h = min(STRIP, size - r0)
                strip = np.empty((h, size, 3), dtype=np.uint8)
                for ti in range(r0 // TILE, (r0 + h - 1) // TILE + 1):
                    a, b = max(r0, ti * TILE), min(r0 + h, (ti + 1) * TILE)
                    for tj in range(ncells):
                        c0, c1 = tj * TILE, min(size, (tj + 1) * TILE)
                        cell = _cell(files, ti, tj, cells)
                        strip[a - r0 : b - r0, c0:c1] = cell[a - ti * TILE : b - ti * TILE, : c1 - c0]
                dst.write(strip.transpose(2, 0, 1), window=Window(0, r0, size, h))
                for key in [k for k in cells if (k[0] + 1) * TILE <= r0 + h]:  # cells above the next strip
                    del cells[key]
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    info["bytes"] = path.stat().st_size
    info["build_s"] = round(time.perf_counter() - t0, 2)
    return info
