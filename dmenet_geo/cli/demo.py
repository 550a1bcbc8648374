"""``dmenet-geo demo``: compress the sample Landsat-7 crop, describe the store, then read a window
lazily and compare it with the source (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "sample_geotiff"]

SAMPLE = "landsat7_rgb_byte_crop.tif"


def sample_geotiff() -> Path:
    """``sample_tiles/landsat7_rgb_byte_crop.tif`` of the source checkout."""
    return Path(__file__).resolve().parents[2] / "sample_tiles" / SAMPLE


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="compress a sample scene and read it back",
                       description=f"Compress sample_tiles/{SAMPLE}, show the store and a lazy window read.")
    p.add_argument("--src", default=None, help=f"GeoTIFF to use instead of sample_tiles/{SAMPLE}")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="keep the store in DIR (default: a temporary directory, removed afterwards)")
    p.add_argument("--quality", type=float, default=4.0, help="quality in [1, 8] (default 4)")
    p.add_argument("--window", type=int, default=256, help="side of the window read back (default 256)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from dmenet_geo.geo import GeoError, compress_geotiff, open_dataset, store_info
    from dmenet_geo.geo.quality import chunk_psnr

    src = Path(args.src) if args.src else sample_geotiff()
    if not src.exists():
        raise GeoError(f"{src} not found (run sample_tiles/make_samples.py, or pass --src)")
    workdir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dmenet-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / (src.stem + ".zarr")
    try:
        print(f"== compress {src.name}")
        summary = compress_geotiff(src, store, quality=args.quality, overwrite=True,
                                   progress=sys.stderr.isatty())
        print(summary)
        print("\n== info")
        print(store_info(store))

        print("\n== lazy window read")
        t0 = time.perf_counter()
        ds = open_dataset(store)
        opened = time.perf_counter() - t0
        h, w = ds.sizes["y"], ds.sizes["x"]
        size = min(args.window, h, w)
        row, col = (h - size) // 2, (w - size) // 2
        chunk_h, chunk_w = ds["image"].encoding["chunks"][1:]
        touched = (math.ceil((row + size) / chunk_h) - row // chunk_h) * (
            math.ceil((col + size) / chunk_w) - col // chunk_w)
        total = math.ceil(h / chunk_h) * math.ceil(w / chunk_w)
        t0 = time.perf_counter()
        window = ds["image"].isel(y=slice(row, row + size), x=slice(col, col + size)).values
        elapsed = time.perf_counter() - t0
        with rasterio.open(src) as f:
            original = f.read(window=Window(col, row, size, size))
            nodata = f.nodata
        psnr = chunk_psnr(original, window, nodata)
        x0, y0 = float(ds.x[col]), float(ds.y[row])
        print(f"opened in {opened * 1000:.0f} ms (nothing decoded); CRS {ds['image'].rio.crs}")
        print(f"window {size}x{size} at row {row}, col {col} (x={x0:.1f}, y={y0:.1f}): "
              f"{elapsed * 1000:.0f} ms, decoded {touched} of {total} chunks")
        print(f"PSNR vs source: {psnr:.2f} dB (valid pixels), max |error| "
              f"{int(np.abs(original.astype(np.int64) - window.astype(np.int64)).max())}")
        if args.out:
            print(f"\nstore kept at {store}")
    finally:
        if not args.out:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
