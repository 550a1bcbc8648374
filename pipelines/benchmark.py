"""Scale benchmark (issue 6): DMENet against JPEG 2000 in the same GeoTIFF -> Zarr -> Dask pipeline.

The scene is a georeferenced mosaic of REAL imagery: the 805 RSSCN7 400x400 RGB tiles (Google Earth,
Zou et al. 2015; /work/shared/data/{train,val}/rsscn7), each placed by a fixed pseudo-random choice
per mosaic cell with one of the 8 flips/rotations, so a smaller mosaic is exactly the top-left corner
of a bigger one. It is written once per size with windowed writes (512-row strips; memory stays at
one strip) as a tiled (512x512), deflate-compressed GeoTIFF in EPSG:32610 (UTM 10N, San Francisco),
0.5 m pixels, and cached under ``bench_cache/`` (git-ignored). Without the shared data the mosaic
falls back to the repository's real ``sample_tiles/*.png``.

For every size and codec, each measurement runs in a fresh Python process (separate peak RSS):

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
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / "bench_cache"
MOSAIC_VERSION = 1
TILE = 400  # RSSCN7 tiles are 400x400
STRIP = 512  # rows per windowed write (= the GeoTIFF's block height)
FULL_SIZE = 17408
DEFAULT_SIZES = (2048, 4096, 8192)
QUICK_SIZE = 1024
CRS = "EPSG:32610"  # WGS 84 / UTM zone 10N
ORIGIN = (548_000.0, 4_186_000.0)  # upper-left corner, San Francisco
PIXEL = 0.5  # metres
RESULT_TAG = "BENCH_RESULT "
CODECS = ("dmenet", "jpeg2k")


# ------------------------------------------------------------------------------------- mosaic
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


# ----------------------------------------------------------------------- measuring processes
class _RssSampler:
    """Peak RSS of this process while a block runs (sampled every 20 ms), next to ru_maxrss."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> _RssSampler:
        self.base = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


def _setup(opts: dict[str, Any]) -> dict[str, Any]:
    """Thread and device settings of a measuring process; loads and warms the model (timed)."""
    import dask.array  # noqa: F401  - imports are not part of any measured time
    import rioxarray  # noqa: F401
    import xarray  # noqa: F401

    import dmenet_geo.geo  # noqa: F401
    from dmenet_geo.codec import register_codecs

    register_codecs()
    info: dict[str, Any] = {"workers": opts["workers"]}
    if opts["codec"] != "dmenet":
        from dmenet_geo.codec import Jpeg2kCodec

        Jpeg2kCodec(level=40).encode(np.zeros((3, 64, 64), dtype=np.uint8))  # loads the library
        return info
    import torch

    from dmenet_geo.codec import DMENetCodec, set_runtime

    threads = opts.get("torch_threads") or max(1, (os.cpu_count() or 1) // max(1, opts["workers"]))
    torch.set_num_threads(threads)
    rt = set_runtime(device=opts.get("device"), batch_size=opts.get("batch_size"))
    device = rt.resolved_device()
    info.update({"torch_threads": torch.get_num_threads(), "device": device, "batch_size": rt.batch_size})
    if device.startswith("cuda"):
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    t0 = time.perf_counter()
    codec = DMENetCodec(quality=opts["quality"])
    codec.decode(codec.encode(np.zeros((3, 64, 64), dtype=np.uint8)))  # load weights, build float64 copies
    info["model_load_s"] = round(time.perf_counter() - t0, 3)
    return info


def _measure_compress(opts: dict[str, Any]) -> dict[str, Any]:
    import dmenet_geo

    info = _setup(opts)
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        summary = dmenet_geo.compress_geotiff(
            opts["src"], opts["store"], quality=opts["quality"], progress=False, overview=True,
            chunk=opts["chunk"], chunks_per_task=opts["chunks_per_task"], num_workers=opts["workers"],
            codec=opts["codec"], jpeg2k_level=opts["jpeg2k_level"], psnr_samples=opts["psnr_samples"],
        )
        seconds = time.perf_counter() - t0
    s = summary.to_dict()
    return {**info, "seconds": round(seconds, 3), "chunks": s["chunks_written"],
            "chunks_per_s": round(s["chunks_written"] / seconds, 2), "ratio": s["ratio"], "bpp": s["bpp"],
            "bytes_in": s["bytes_in"], "bytes_out": s["bytes_out"], "store_bytes": s["store_bytes"],
            "base_rss_mb": _mb(rss.base), "peak_rss_mb": _peak_mb(rss)}


def _peak_mb(rss: _RssSampler) -> float:
    """Peak RSS of this process: the kernel's high-water mark (VmHWM, exact; unlike ru_maxrss it is
    not inherited from the parent across fork/exec), or the sampled peak where there is none."""
    hwm = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return _mb(max(rss.peak, hwm))


def _measure_decode(opts: dict[str, Any]) -> dict[str, Any]:
    import zarr

    import dmenet_geo

    info = _setup(opts)
    k = max(1, int(opts["read_chunks"]))
    block = k * opts["chunk"]
    # zarr reads the batch size when the array is opened: k x k chunks per Dask block reach the codec
    # (and the model) as one batch
    with _RssSampler() as rss, zarr.config.set({"codec_pipeline.batch_size": k * k}):
        t0 = time.perf_counter()
        ds = dmenet_geo.open_dataset(opts["store"], chunks="native" if k == 1 else {"y": block, "x": block})
        image = ds["image"].data
        open_s = time.perf_counter() - t0

        def reduce_block(b: np.ndarray) -> np.ndarray:  # one number per block: nothing big is kept
            return np.full((1, 1, 1), float(b.sum(dtype=np.float64)))

        sums = image.map_blocks(reduce_block, chunks=(1, 1, 1), dtype=np.float64)
        t1 = time.perf_counter()
        total = sums.compute(scheduler="threads", num_workers=opts["workers"])
        decode_s = time.perf_counter() - t1
        seconds = time.perf_counter() - t0
    chunks = math.ceil(image.shape[1] / opts["chunk"]) * math.ceil(image.shape[2] / opts["chunk"])
    out = {**info, "seconds": round(seconds, 3), "open_s": round(open_s, 3), "decode_s": round(decode_s, 3),
           "chunks": chunks, "chunks_per_s": round(chunks / seconds, 2), "read_chunks": k,
           "mean_value": round(float(total.sum()) / float(np.prod(image.shape)), 4),
           "base_rss_mb": _mb(rss.base), "peak_rss_mb": _peak_mb(rss)}
    out["quality"] = _quality(opts)  # after the measured step (its peak is already recorded)
    return out


def window_offset(size: int, window: int, chunk: int) -> tuple[int, int]:
    """A window position straddling the chunk grid (not chunk-aligned), inside the scene."""
    off = max(0, min(size - window, (size - window) // 2 // chunk * chunk + chunk // 2))
    return off, off


def _measure_window(opts: dict[str, Any]) -> dict[str, Any]:
    import dask

    import dmenet_geo

    info = _setup(opts)
    size, win, chunk = opts["size"], opts["window"], opts["chunk"]
    r, c = window_offset(size, win, chunk)
    with _RssSampler() as rss, dask.config.set(scheduler="threads", num_workers=opts["workers"]):
        t0 = time.perf_counter()
        ds = dmenet_geo.open_dataset(opts["store"])  # fresh lazy open: nothing cached
        values = ds["image"].isel(y=slice(r, r + win), x=slice(c, c + win)).values
        seconds = time.perf_counter() - t0
    chunks = (((r + win - 1) // chunk - r // chunk + 1) * ((c + win - 1) // chunk - c // chunk + 1))
    return {**info, "seconds": round(seconds, 3), "row": r, "col": c, "shape": list(values.shape),
            "chunks": chunks, "base_rss_mb": _mb(rss.base), "peak_rss_mb": _peak_mb(rss)}


def _measure_host(opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _quality(opts: dict[str, Any]) -> dict[str, Any]:
    """PSNR on ``psnr_chunks`` chunks spread over the scene, decoded through zarr, against the GeoTIFF."""
    import rasterio
    import zarr
    from rasterio.windows import Window

    image = zarr.open_array(opts["store"], path="image", mode="r")
    chunk, size = opts["chunk"], opts["size"]
    n = math.ceil(size / chunk)
    picks = np.unique(np.linspace(0, n * n - 1, num=min(opts["psnr_chunks"], n * n)).round().astype(int))
    psnrs, sq, count = [], 0.0, 0
    with rasterio.open(opts["src"]) as src:
        for p in picks:
            i, j = divmod(int(p), n)
            r, c = i * chunk, j * chunk
            h, w = min(chunk, size - r), min(chunk, size - c)
            ref = src.read(window=Window(c, r, w, h)).astype(np.float64)
            got = np.asarray(image[:, r : r + h, c : c + w]).astype(np.float64)
            err = float(((ref - got) ** 2).sum())
            sq += err
            count += ref.size
            mse = err / ref.size
            psnrs.append(math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
    mse = sq / count
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"chunks": len(picks), "psnr_db": None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 3),
            "psnr_chunk_mean_db": round(sum(finite) / len(finite), 3) if finite else None,
            "psnr_chunk_min_db": round(min(finite), 3) if finite else None}


MEASURES = {"host": _measure_host, "compress": _measure_compress, "decode": _measure_decode,
            "window": _measure_window}


def run_measure(kind: str, opts: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One measurement in a fresh process; its result is the last ``BENCH_RESULT`` line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", kind, json.dumps(opts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} ({opts.get('codec')}, {opts.get('size')}) failed with exit status "
                           f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


# ----------------------------------------------------------------------------------- driver
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def bench_size(size: int, src: Path, work: Path, args: argparse.Namespace, log: Any) -> dict[str, Any]:
    window = args.window if size >= 2 * args.window else size // 2  # --quick: 512 in a 1024 scene
    base = {"size": size, "src": str(src), "chunk": args.chunk, "workers": args.workers,
            "torch_threads": args.torch_threads, "device": args.device, "batch_size": args.batch_size,
            "chunks_per_task": args.chunks_per_task, "quality": args.quality, "window": window,
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
        res: dict[str, Any] = {"setting": {"quality": args.quality} if codec == "dmenet"
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
    p.add_argument("--_measure", nargs=2, metavar=("KIND", "OPTS"), help=argparse.SUPPRESS)
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
    if args._measure:
        kind, opts = args._measure
        result = MEASURES[kind](json.loads(opts))
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    files, citation = source_images(args.data)
    tag = "custom" if args.data else "rsscn7" if "RSSCN7" in citation else "samples"
    results: dict[str, Any] = {
        "benchmark": "dmenet_geo issue 6: DMENet vs JPEG 2000, GeoTIFF -> Zarr v3 -> Dask",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": run_measure("host", {}),  # the driver itself stays light (children inherit its peak RSS)
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k != "_measure"},
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
