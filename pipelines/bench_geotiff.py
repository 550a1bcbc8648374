"""Benchmark the GeoTIFF -> Zarr path: compress time of a real scene, then the time and the number of
chunks decoded for a lazy 512 x 512 window read (aligned with the chunk grid, and straddling it).

    .venv/bin/python pipelines/bench_geotiff.py                      # landsat8_rgb_uint16.tif, 2041x1860
    .venv/bin/python pipelines/bench_geotiff.py --src other.tif --device cuda --workers 1
    .venv/bin/python pipelines/bench_geotiff.py --read-threads 1     # torch threads for the reads

Targets (2-core CPU): compress <= 60 s; window read <= 1 s and <= 9 chunks decoded.
Uses the package's public API only (the decode counter wraps ``DMENetCodec.decode_batch``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_SRC = SHARED / "data" / "geotiff" / "landsat8_rgb_uint16.tif"


def _counting_decoder() -> dict[str, int]:
    from dmenet_geo.codec import DMENetCodec

    counter = {"chunks": 0}
    original = DMENetCodec.decode_batch

    def counting(self: Any, buffers: Any) -> Any:
        buffers = list(buffers)
        counter["chunks"] += len(buffers)
        return original(self, buffers)

    DMENetCodec.decode_batch = counting  # type: ignore[method-assign]
    return counter


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--quality", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunks-per-task", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: CUDA if available)")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--read-threads", type=int, default=None,
                        help="torch threads for the window reads (default: torch's, one per core); Dask "
                        "decodes the chunks on its own threads, one per core")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import dmenet_geo
    from dmenet_geo.codec import DMENetCodec, set_runtime

    if args.device:
        set_runtime(device=args.device)
    results: dict[str, Any] = {"src": str(args.src)}
    work = Path(tempfile.mkdtemp(prefix="bench-geotiff-"))
    try:
        t0 = time.perf_counter()  # model load (weights check, torch init), kept out of the compress time
        DMENetCodec(quality=args.quality).encode(np.zeros((3, 64, 64), dtype=np.uint8))
        results["model_load_s"] = round(time.perf_counter() - t0, 3)

        store = work / "scene.zarr"
        t0 = time.perf_counter()
        summary = dmenet_geo.compress_geotiff(args.src, store, quality=args.quality, progress=False,
                                              num_workers=args.workers, chunks_per_task=args.chunks_per_task)
        results["compress_s"] = round(time.perf_counter() - t0, 3)
        results["summary"] = summary.to_dict()

        counter = _counting_decoder()
        if args.read_threads is not None:
            import torch

            torch.set_num_threads(args.read_threads)
        results["read_torch_threads"] = _torch_threads()
        size = args.window
        for name, (row, col) in {"aligned": (512, 512), "unaligned": (700, 900)}.items():
            counter["chunks"] = 0
            t0 = time.perf_counter()
            ds = dmenet_geo.open_dataset(store)  # a fresh, lazy open each time: nothing cached
            opened = counter["chunks"]
            h, w = ds.sizes["y"], ds.sizes["x"]
            r, c = min(row, max(0, h - size)), min(col, max(0, w - size))
            window = ds["image"].isel(y=slice(r, r + size), x=slice(c, c + size)).values
            results[f"window_{name}"] = {
                "row": r,
                "col": c,
                "shape": list(window.shape),
                "seconds": round(time.perf_counter() - t0, 3),
                "chunks_decoded": counter["chunks"], "chunks_decoded_on_open": opened,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    s = results["summary"]
    print(f"source      {args.src.name}: {s['width']}x{s['height']}, {len(s['bands'])} bands {s['dtype']}")
    print(f"model load  {results['model_load_s']:.2f} s")
    print(f"compress    {results['compress_s']:.2f} s (target <= 60 s): ratio {s['ratio']}, {s['bpp']} bpp, "
          f"PSNR {s['psnr']} dB (sampled), {s['chunks_written']} chunks")
    for name in ("aligned", "unaligned"):
        wr = results[f"window_{name}"]
        print(f"window      {name:9s} {size}x{size} at ({wr['row']}, {wr['col']}): {wr['seconds']:.3f} s "
              f"(target <= 1 s), {wr['chunks_decoded']} chunks decoded (target <= 9), "
              f"{wr['chunks_decoded_on_open']} on open, {results['read_torch_threads']} torch threads")


if __name__ == "__main__":
    main()
