"""Scale benchmark (issue 6): DMENet against JPEG 2000 in the same GeoTIFF -> Zarr -> Dask pipeline.

The scene is a georeferenced mosaic of REAL imagery: the 805 RSSCN7 400x400 RGB tiles (Google Earth,
Zou et al. 2015; /work/shared/data/{train,val}/rsscn7), each placed by a fixed pseudo-random choice
per mosaic cell with one of the 8 flips/rotations, so a smaller mosaic is exactly the top-left corner
of a bigger one. It is written once per size with windowed writes (512-row strips; memory stays at
one strip) as a tiled (512x512), deflate-compressed GeoTIFF in EPSG:32610 (UTM 10N, San Francisco),
0.5 m pixels, and cached under ``bench_cache/`` (git-ignored). Without the shared data the mosaic
falls back to the repository's real ``sample_tiles/*.png``.

For every size and codec, each measurement runs in a fresh Python process (separate peak RSS;
``pipelines/bench/measure.py``; the mosaic is built by ``pipelines/bench/mosaic.py``):

* compress: ``dmenet_geo.compress_geotiff(..., codec=...)`` GeoTIFF -> Zarr v3 store (same chunking,
  blocks of ``--chunks-per-task`` chunks, Dask threads, overviews included, no PSNR sampling); the
  model load / warm-up is timed apart;
* decode: every chunk of the store through ``open_dataset`` + Dask (``map_blocks`` reduces each
  block to one number, so the scene is never materialised), zarr's codec pipeline doing the decode;
* window: a fresh lazy open and a ``--window`` x ``--window`` read at an offset that straddles the
  chunk grid;
* quality (not timed, in the decode process after its measurement): PSNR on ``--psnr-chunks`` chunks
  spread over the scene, decoded through zarr, against the GeoTIFF.

Reported: seconds, chunks/s, peak RSS (the measuring process's high-water mark, VmHWM, and its RSS
before the measured step), compression ratio (raw bytes / chunk bytes) and bpp, PSNR, and the time ratios
DMENet / JPEG 2000. JPEG 2000's level (OpenJPEG's PSNR target) is by default DMENet's measured PSNR
on the same size (``--jpeg2k-level auto``, at least 20 dB), i.e. an equal-quality comparison.

    .venv/bin/python pipelines/benchmark.py --quick                     # 1024x1024, CI (~30 s)
    .venv/bin/python pipelines/benchmark.py --skip-17408 --json out.json  # 2048, 4096, 8192
    .venv/bin/python pipelines/benchmark.py --json bench_cache/benchmark.json   # + 17408x17408
    # on a GPU: bigger model and encode batches, 4x4 chunks per Dask block (one decode batch of 16),
    # more Dask workers so the CPU-side entropy coding of some blocks overlaps the GPU transforms
    .venv/bin/python pipelines/benchmark.py --device cuda --batch-size 64 --chunks-per-task 64 \\
        --read-chunks 4 --workers 4 --json bench_cache/benchmark-cuda.json

CPU thread layout: ``--workers`` Dask threads, each running torch with ``--torch-threads``
intra-op threads (default: cores // workers, so the two together do not oversubscribe the CPU; on
2 cores, 2 workers x 1 thread beat 1 x 2 and 2 x 2, which burn up to 2x the CPU time in OpenMP
spinning for no speed-up). Batch size does not matter on the CPU (per-chunk cost is flat from 1 to
16), it does on a GPU. The JSON is rewritten after every size, so a long run keeps partial results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``pipelines.bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.bench.measure import run_measure  # noqa: E402
from pipelines.bench.mosaic import REPO, build_mosaic, mosaic_path, source_images  # noqa: E402

DEFAULT_CACHE = REPO / "bench_cache"
FULL_SIZE = 17408
DEFAULT_SIZES = (2048, 4096, 8192)
QUICK_SIZE = 1024
CODECS = ("dmenet", "jpeg2k")


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def bench_size(size: int, src: Path, work: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    window = args.window if size >= 2 * args.window else size // 2  # --quick: 512 in a 1024 scene
    base = {"size": size, "src": str(src), "chunk": args.chunk, "workers": args.workers,
            "torch_threads": args.torch_threads, "device": args.device, "batch_size": args.batch_size,
            "chunks_per_task": args.chunks_per_task, "quality": args.quality, "model": args.model,
            "window": window,
            "psnr_chunks": args.psnr_chunks,
            "psnr_samples": 0,  # no PSNR decodes inside the timed compress (quality is measured apart)
            "read_chunks": args.read_chunks or (4 if (args.device or "").startswith("cuda") else 1)}
    out: dict[str, Any] = {"size": size, "pixels": size * size, "chunks": math.ceil(size / args.chunk) ** 2,
                           "window": window, "codecs": {}}
    level: float | None = None
    for codec in args.codecs:
        opts = {**base, "codec": codec, "store": str(work / f"{codec}-{size}.zarr"), "jpeg2k_level": 40.0}
        if codec == "jpeg2k":
            if args.jpeg2k_level == "auto":
                dm = out["codecs"].get("dmenet", {}).get("quality", {}).get("psnr_db")
                level = max(20.0, round(float(dm), 1)) if dm else 40.0
            else:
                level = float(args.jpeg2k_level)
            opts["jpeg2k_level"] = level
        shutil.rmtree(opts["store"], ignore_errors=True)
        res: dict[str, Any] = {"setting": {"quality": args.quality, "model": args.model} if codec == "dmenet"
                               else {"jpeg2k_level": level}}
        for kind in ("compress", "decode", "window"):
            log(f"  {size}x{size} {codec:7s} {kind} ...")
            res[kind] = run_measure(kind, opts)
        res["quality"] = res["decode"].pop("quality")
        out["codecs"][codec] = res
        if not args.keep_stores:
            shutil.rmtree(opts["store"], ignore_errors=True)
    if "dmenet" in out["codecs"] and "jpeg2k" in out["codecs"]:
        d, j = out["codecs"]["dmenet"], out["codecs"]["jpeg2k"]
        out["dmenet_over_jpeg2k"] = {
            "compress_time": _ratio(d["compress"]["seconds"], j["compress"]["seconds"]),
            "decode_time": _ratio(d["decode"]["seconds"], j["decode"]["seconds"]),
            "window_time": _ratio(d["window"]["seconds"], j["window"]["seconds"]),
            "compression_ratio": _ratio(d["compress"]["ratio"], j["compress"]["ratio"]),
        }
    return out


def print_table(results: dict[str, Any]) -> None:
    rows = []
    head = ("size", "codec", "setting", "comp s", "chunk/s", "MB peak", "dec s", "chunk/s", "MB peak",
            "win s", "MB peak", "ratio", "bpp", "PSNR dB")
    for run in results["runs"]:
        for codec, r in run["codecs"].items():
            setting = (f"q={r['setting']['quality']:g}" if codec == "dmenet"
                       else f"L={r['setting']['jpeg2k_level']:g}dB")
            c, d, w, q = r["compress"], r["decode"], r["window"], r["quality"]
            rows.append((str(run["size"]), codec, setting, f"{c['seconds']:.2f}", f"{c['chunks_per_s']:.1f}",
                         f"{c['peak_rss_mb']:.0f}", f"{d['seconds']:.2f}", f"{d['chunks_per_s']:.1f}",
                         f"{d['peak_rss_mb']:.0f}", f"{w['seconds']:.3f}", f"{w['peak_rss_mb']:.0f}",
                         f"{c['ratio']:.1f}", f"{c['bpp']:.3f}", str(q["psnr_db"])))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(n) for h, n in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(v.rjust(n) for v, n in zip(r, widths, strict=True)))
    for run in results["runs"]:
        if "dmenet_over_jpeg2k" in run:
            t = run["dmenet_over_jpeg2k"]
            print(f"{run['size']}: DMENet / JPEG 2000 time: compress {t['compress_time']}x, decode "
                  f"{t['decode_time']}x, {run['window']}px window {t['window_time']}x; compression ratio "
                  f"{t['compression_ratio']}x")
    dm = [r for r in results["runs"] if "dmenet" in r["codecs"]]
    if len(dm) > 1:
        parts = []
        for r in dm:
            c, d, mpx = r["codecs"]["dmenet"]["compress"], r["codecs"]["dmenet"]["decode"], r["pixels"] / 1e6
            parts.append(f"{r['size']}: {c['seconds'] / mpx:.3f} s/Mpx compress, "
                         f"{d['seconds'] / mpx:.3f} s/Mpx decode, "
                         f"peak {c['peak_rss_mb']:.0f}/{d['peak_rss_mb']:.0f} MB")
        print("scaling (DMENet): " + "; ".join(parts))
    first = results["runs"][0]["codecs"].get("dmenet", {}).get("compress", {})
    if first:
        print(f"device {first.get('device')} ({first.get('cuda_device', platform.processor() or 'cpu')}), "
              f"batch size {first.get('batch_size')}, {first.get('workers')} Dask workers x "
              f"{first.get('torch_threads')} torch threads")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"one small size ({QUICK_SIZE}) for CI")
    p.add_argument("--sizes", default=None,
                   help=f"comma-separated scene sizes (default {','.join(map(str, DEFAULT_SIZES))} and "
                        f"{FULL_SIZE})")
    p.add_argument("--skip-17408", action="store_true", help=f"leave out the {FULL_SIZE}x{FULL_SIZE} scene")
    p.add_argument("--codecs", default=",".join(CODECS), help="dmenet,jpeg2k (default both)")
    p.add_argument("--quality", type=float, default=4.0, help="DMENet quality (default 4)")
    p.add_argument("--model", default="default", help="shipped DMENet model (default: 'default')")
    p.add_argument("--jpeg2k-level", default="auto",
                   help="JPEG 2000 PSNR target in dB, or 'auto': DMENet's measured PSNR (default)")
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--chunks-per-task", type=int, default=8, help="chunks read and encoded per Dask task")
    p.add_argument("--workers", type=int, default=2, help="Dask worker threads (default 2)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads per process (default: cores // workers)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--batch-size", type=int, default=None, help="model batch size (default: the codec's, 16)")
    p.add_argument("--read-chunks", type=int, default=None,
                   help="store chunks per Dask block side in the full decode (default 1; 4 on CUDA)")
    p.add_argument("--window", type=int, default=1024, help="window read size (default 1024)")
    p.add_argument("--psnr-chunks", type=int, default=64, help="chunks sampled for PSNR (default 64)")
    p.add_argument("--data", type=Path, default=None, help="folder of real JPEG tiles (default RSSCN7)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="mosaics and stores (git-ignored)")
    p.add_argument("--keep-stores", action="store_true", help="keep the Zarr stores under the cache dir")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    elif args.quick:
        sizes = [QUICK_SIZE]
    else:
        sizes = list(DEFAULT_SIZES) + ([] if args.skip_17408 else [FULL_SIZE])
    if args.skip_17408:
        sizes = [s for s in sizes if s != FULL_SIZE]
    if args.quick and not args.sizes:
        args.psnr_chunks = min(args.psnr_chunks, 16)
    args.sizes = sizes
    args.codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    bad = [c for c in args.codecs if c not in CODECS]
    if bad:
        p.error(f"unknown codec(s) {bad}; choose from {CODECS}")
    if any(s < args.chunk or s % 16 for s in sizes):
        p.error("sizes must be multiples of 16 and at least one chunk")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    files, citation = source_images(args.data)
    tag = "custom" if args.data else "rsscn7" if "RSSCN7" in citation else "samples"
    results: dict[str, Any] = {
        "benchmark": "dmenet_geo issue 6: DMENet vs JPEG 2000, GeoTIFF -> Zarr v3 -> Dask",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": run_measure("host", {}),  # the driver itself stays light (children inherit its peak RSS)
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "mosaics": [], "runs": [],
    }
    work = args.cache_dir / f"work-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        for size in args.sizes:
            path = mosaic_path(args.cache_dir, size, tag)
            log(f"mosaic {size}x{size}: {'cached' if path.exists() else 'building'} {path}")
            results["mosaics"].append(build_mosaic(path, size, files, citation))
            results["runs"].append(bench_size(size, path, work, args, log))
            if args.json:  # written after every size, so a long run leaves partial results
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=2))
    finally:
        if not args.keep_stores:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if args.json:
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
