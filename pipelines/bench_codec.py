"""Seconds per 3x256x256 uint8 chunk for ``DMENetCodec`` encode and decode, on real tiles.

    python pipelines/bench_codec.py --data /work/shared/data/val --tiles 20 --threads 1 2

Tiles: ``--tiles`` images spread evenly over the sorted image files under ``--data``, each cut to
its central 256x256 RGB window, as (3, 256, 256) uint8 chunks. For every torch thread count:

* single calls: ``codec.encode(chunk)`` / ``codec.decode(data)`` per tile; the median over tiles;
* batched calls: ``codec.encode_batch(all)`` / ``codec.decode_batch(all)``; total seconds divided
  by the number of tiles, the median over ``--repeats`` runs.

The model is loaded and warmed up before any timing. The target is ``--target`` seconds (0.1) per
chunk for each of the four numbers; ``--check`` makes the exit status 1 when one misses it. Also
printed: the mean chunk size in bits per pixel, the mean PSNR, and whether batched and single
decodes are bit-identical. ``--json PATH`` writes the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "val"
TILE = 256


def list_images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {folder}")
    if 0 < limit < len(files):
        idx = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in idx]
    return files


def load_chunks(paths: list[Path], tile: int = TILE) -> list[np.ndarray]:
    """Central ``tile`` x ``tile`` RGB windows as (3, tile, tile) uint8; smaller images are skipped."""
    from PIL import Image

    chunks = []
    for path in paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        if h < tile or w < tile:
            print(f"skipping {path} ({w}x{h} < {tile}x{tile})", file=sys.stderr)
            continue
        r, c = (h - tile) // 2, (w - tile) // 2
        chunks.append(np.ascontiguousarray(np.moveaxis(rgb[r : r + tile, c : c + tile], -1, 0)))
    return chunks


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench(codec: Any, chunks: list[np.ndarray], threads: int, repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    codec.decode(codec.encode(chunks[0]))  # warm-up at this thread count
    enc_single, dec_single, sizes, decoded = [], [], [], []
    for chunk in chunks:
        data, t_enc = _timed(codec.encode, chunk)
        out, t_dec = _timed(codec.decode, data)
        enc_single.append(t_enc)
        dec_single.append(t_dec)
        sizes.append(len(data))
        decoded.append(out)
    n = len(chunks)
    enc_batch, dec_batch = [], []
    identical = True
    for rep in range(repeats):
        datas, t_enc = _timed(codec.encode_batch, chunks)
        outs, t_dec = _timed(codec.decode_batch, datas)
        enc_batch.append(t_enc / n)
        dec_batch.append(t_dec / n)
        if rep == 0:  # untimed: batched decodes must equal one-at-a-time decodes
            pairs = zip(outs, datas, strict=True)
            identical = all(a.tobytes() == codec.decode(d).tobytes() for a, d in pairs)
    return {
        "threads": threads,
        "tiles": n,
        "encode_single_s": statistics.median(enc_single),
        "decode_single_s": statistics.median(dec_single),
        "encode_batch_s": statistics.median(enc_batch),
        "decode_batch_s": statistics.median(dec_batch),
        "bpp": 8 * float(np.mean(sizes)) / (TILE * TILE),
        "psnr_db": float(np.mean([psnr(a, b) for a, b in zip(chunks, decoded, strict=True)])),
        "batch_equals_single": bool(identical),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images (searched recursively)")
    ap.add_argument("--tiles", type=int, default=20, help="number of images (one 256x256 chunk each)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the batched calls")
    ap.add_argument("--quality", type=float, default=4.0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: DMENET_DEVICE or auto)")
    ap.add_argument("--batch-size", type=int, default=None, help="model batch size (set_runtime)")
    ap.add_argument("--target", type=float, default=0.1, help="seconds per chunk to meet")
    ap.add_argument("--check", action="store_true", help="exit 1 when a median misses --target")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dmenet_geo.codec import DMENetCodec, set_runtime

    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load_avg > 0.5:
        print(f"warning: load average {load_avg:.2f} before the benchmark: other processes compete for the "
              f"{os.cpu_count()} CPUs, so the timings (above all with more than one thread) are not "
              "representative", file=sys.stderr)
    rt = set_runtime(device=args.device, batch_size=args.batch_size)
    chunks = load_chunks(list_images(args.data, args.tiles))
    if not chunks:
        raise SystemExit("no usable tiles")
    codec = DMENetCodec(quality=args.quality, model=args.model)
    t0 = time.perf_counter()
    codec.decode(codec.encode(chunks[0]))
    load_s = time.perf_counter() - t0

    results = [bench(codec, chunks, t, args.repeats) for t in args.threads]
    keys = ["encode_single_s", "decode_single_s", "encode_batch_s", "decode_batch_s"]
    print(f"DMENetCodec(quality={args.quality}, model={args.model!r}) on {rt.resolved_device()}, "
          f"model batch size {rt.batch_size}, {len(chunks)} chunks of 3x{TILE}x{TILE} uint8 from {args.data}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, first call (model load) "
          f"{load_s:.2f} s; seconds per chunk (median), target <= {args.target} s")
    print(f"{'threads':>7} {'enc single':>11} {'dec single':>11} {'enc batch':>10} {'dec batch':>10} "
          f"{'bpp':>6} {'PSNR':>6}  batch==single")
    missed = []
    for r in results:
        marks = []
        for k in keys:
            ok = r[k] <= args.target
            marks.append(f"{r[k]:.4f}{'' if ok else '*'}")
            if not ok:
                missed.append(f"{k} at {r['threads']} threads: {r[k]:.4f} s")
        print(f"{r['threads']:>7} {marks[0]:>11} {marks[1]:>11} {marks[2]:>10} {marks[3]:>10} "
              f"{r['bpp']:>6.3f} {r['psnr_db']:>6.2f}  {r['batch_equals_single']}")
    print("all within target" if not missed else "over target (*): " + "; ".join(missed))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": rt.resolved_device(), "batch_size": rt.batch_size,
                                         "quality": args.quality, "target_s": args.target,
                                         "load_s": load_s, "load_avg_before": load_avg,
                                         "cpus": os.cpu_count(), "results": results}, indent=2))
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
