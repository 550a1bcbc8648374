"""``dmenet-geo compress SRC DST``: GeoTIFF -> DMENet Zarr store."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from dmenet_geo.cli.common import parse_bands, print_json

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser("compress", help="compress a GeoTIFF into a Zarr store",
                       description="Compress a GeoTIFF into a DMENet Zarr v3 store (atomic write).")
    p.add_argument("src", help="input GeoTIFF (any rasterio-readable georeferenced raster)")
    p.add_argument("dst", help="output store directory (e.g. scene.zarr)")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--quality", type=float, default=4.0, help="quality in [1, 8] for every chunk (default 4)")
    q.add_argument("--target-psnr", type=float, default=None, metavar="DB",
                   help="per chunk, the lowest quality reaching this PSNR (dB)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="optimise each chunk's latent for STEPS gradient steps before coding: fewer bytes at "
                        "the same quality (20 steps: about 4 %% fewer), about 0.12 s per step and chunk on "
                        "one CPU core (default 0: off; fixed --quality only)")
    p.add_argument("--model", default="default",
                   help="shipped weights to code with (default: 'default'); readers need nothing but the "
                        "package: the store names the weights' SHA-256")
    p.add_argument("--bands", type=parse_bands, default=None,
                   help="1-based bands, e.g. 1,2,3 or 1-3 (default all)")
    p.add_argument("--aoi", default=None, metavar="WKT|GEOJSON",
                   help="area of interest: WKT, GeoJSON text or a GeoJSON/WKT file; only chunks it touches "
                        "are written")
    p.add_argument("--aoi-crs", default="EPSG:4326", help="CRS of --aoi (default EPSG:4326)")
    p.add_argument("--chunk", type=int, default=256, help="chunk size in pixels (default 256)")
    p.add_argument("--no-overview", action="store_true", help="do not store the reduced-resolution overviews")
    p.add_argument("--workers", type=int, default=2, help="Dask worker threads (default 2)")
    p.add_argument("--chunks-per-task", type=int, default=8, help="chunks encoded per batch (default 8)")
    p.add_argument("--device", default=None,
                   help="model device: cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dmenet_geo.codec import set_runtime
    from dmenet_geo.geo import compress_geotiff

    if args.device:
        set_runtime(device=args.device)
    if args.workers and "OMP_NUM_THREADS" not in os.environ:
        # each Dask worker runs its own model calls: cores // workers torch threads each, not all the
        # cores each (2 workers x 2 threads on 2 cores burned ~1.7x the CPU for no speed-up)
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    summary = compress_geotiff(
        args.src,
        args.dst,
        quality=args.quality,
        target_psnr=args.target_psnr,
        bands=args.bands,
        aoi=args.aoi,
        aoi_crs=args.aoi_crs,
        chunk=args.chunk,
        overview=not args.no_overview,
        progress=not args.quiet and sys.stderr.isatty(),
        num_workers=args.workers,
        chunks_per_task=args.chunks_per_task,
        overwrite=args.overwrite,
        refine=args.refine,
        model=args.model,
    )
    if args.json:
        print_json(summary.to_dict())
    else:
        print(summary)
    return 0
