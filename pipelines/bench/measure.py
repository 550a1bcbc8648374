"""One benchmark measurement per fresh Python process, so each has its own peak RSS.

``run_measure(kind, opts)`` starts ``python pipelines/bench/measure.py KIND OPTS_JSON`` and reads
the result from its last ``BENCH_RESULT`` line. Kinds: ``host``, ``compress``, ``decode`` (with the
PSNR check after the timed step) and ``window``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULT_TAG = "BENCH_RESULT "


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
    codec = DMENetCodec(quality=opts["quality"], model=opts["model"])
    codec.decode(codec.encode(np.zeros((3, 64, 64), dtype=np.uint8)))  # load weights, build float64 copies
    info["model_load_s"] = round(time.perf_counter() - t0, 3)
    return info


def _measure_compress(opts: dict[str, Any]) -> dict[str, Any]:
    import dmenet_geo

    info = _setup(opts)
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        summary = dmenet_geo.compress_geotiff(
            opts["src"], opts["store"], quality=opts["quality"], model=opts["model"], progress=False,
            overview=True,
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
    cmd = [sys.executable, str(Path(__file__).resolve()), kind, json.dumps(opts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} ({opts.get('codec')}, {opts.get('size')}) failed with exit status "
                           f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG):])


def main(argv: list[str]) -> int:
    """``measure.py KIND OPTS_JSON``: run one measurement and print its ``BENCH_RESULT`` line."""
    if len(argv) != 2 or argv[0] not in MEASURES:
        print(f"usage: measure.py {{{','.join(MEASURES)}}} OPTS_JSON", file=sys.stderr)
        return 2
    result = MEASURES[argv[0]](json.loads(argv[1]))
    print(RESULT_TAG + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
