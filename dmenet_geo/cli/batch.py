"""``dmenet-geo batch INPUTS... --out DST``: many GeoTIFFs -> one Zarr store per scene, resumable,
on dask.distributed (a LocalCluster, or ``--scheduler ADDRESS``), with a STAC catalog and a report.

Exit status 0 only when every scene succeeded (done now or already complete), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dmenet_geo.cli.common import parse_bands, print_json

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch", help="compress many GeoTIFFs into an archive of stores (resumable)",
        description="Compress GeoTIFFs (files, folders, globs, manifests; local or s3://) into "
                    "DST/<scene>.zarr, one store per scene, on a Dask cluster. Running the same command "
                    "again finishes only what an interrupted run left (chunk-level resume). Writes "
                    "DST/catalog.json (STAC) and DST/batch-report.json. S3 credentials and endpoint "
                    "come from the usual AWS_* variables (AWS_ENDPOINT_URL or AWS_S3_ENDPOINT).")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="GeoTIFF, folder, glob, s3:// URL or prefix, or manifest (@list.txt, *.txt, *.json)")
    p.add_argument("--out", required=True, metavar="DST", help="archive folder or s3:// prefix")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--quality", type=float, default=4.0, help="quality in [1, 8] for every chunk (default 4)")
    q.add_argument("--target-psnr", type=float, default=None, metavar="DB",
                   help="per chunk, the lowest quality reaching this PSNR (dB)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="optimise each chunk's latent for STEPS steps before coding: fewer bytes, about "
                        "0.12 s per step and chunk on one CPU core (default 0: off; fixed --quality only)")
    p.add_argument("--model", default="default", help="shipped weights to code with (default: 'default')")
    p.add_argument("--bands", type=parse_bands, default=None, help="1-based bands (default all)")
    p.add_argument("--chunk", type=int, default=256, help="chunk size in pixels (default 256)")
    p.add_argument("--no-overview", action="store_true", help="do not store overviews")
    p.add_argument("--chunks-per-task", type=int, default=8, help="chunks encoded per batch (default 8)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler to use (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="LocalCluster threads per worker (default 1)")
    p.add_argument("--in-process", action="store_true",
                   help="LocalCluster workers as threads of this process")
    p.add_argument("--device", default=None, help="model device on the workers: cpu, cuda, cuda:1")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads per worker (default: the host's cores shared among its Dask threads)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of folder inputs")
    p.add_argument("--overwrite", action="store_true", help="redo every scene from scratch")
    p.add_argument("--break-lock", action="store_true",
                   help="take over an s3:// destination whose lease a killed job left behind")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="JSON report path (default DST/batch-report.json)")
    p.add_argument("--no-catalog", action="store_true", help="do not write the STAC catalog")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dmenet_geo.archive import BatchOptions, run_batch

    options = BatchOptions(
        quality=args.quality, target_psnr=args.target_psnr,
        bands=None if args.bands is None else tuple(args.bands), chunk=args.chunk,
        overview=not args.no_overview, chunks_per_task=args.chunks_per_task, device=args.device,
        torch_threads=args.torch_threads, refine=args.refine, model=args.model,
    )
    report = run_batch(
        args.inputs, args.out, options, scheduler=args.scheduler, workers=args.workers,
        threads_per_worker=args.threads_per_worker, processes=not args.in_process, overwrite=args.overwrite,
        recursive=args.recursive, progress=not args.quiet and sys.stderr.isatty(),
        catalog=not args.no_catalog, report_path=args.report, break_lock=args.break_lock,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print(report)
    if not report.ok:
        sys.stderr.write(f"dmenet-geo: error: {len(report.failed)} of {len(report.scenes)} scenes failed\n")
        return 1
    return 0
