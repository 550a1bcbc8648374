"""Model complexity in the form of the paper's Table 3, for one 3x256x256 input.

    python pipelines/complexity.py [--threads 1] [--device cpu] [--json complexity.json]

For each width (N = 256 as in the paper, and the package default ``DMENetConfig().n``) a fresh
subprocess builds an untrained model and measures:

* **Parameters**: every parameter of the model (analysis and synthesis transforms, hyperprior, LSM,
  entropy bottleneck and the gain vectors of all operating points).
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over the forward of g_a, h_a, the entropy
  parameters (hyper decoder + LSM) and g_s (FlopCounterMode counts a multiply-add as 2 FLOPs and
  counts only convolutions and matrix products). It does not see ``torchvision::deform_conv2d``
  (SEB), so SEB's MACs are added analytically: ``H*W*C_out*C_in*9`` for the kernel plus
  ``H*W*C_in*9*4`` for the bilinear sampling. Element-wise work (GDN's square root and division,
  ReLU, sigmoid) and the entropy coder are not counted. Both MACs and FLOPs (2 x MACs) are shown:
  the paper does not say which it reports (tools such as thop/ptflops report MACs as "FLOPs").
* **Peak memory**: on CUDA ``torch.cuda.max_memory_allocated`` during one compress + decompress
  (weights included); on the CPU the growth of the process's peak resident set
  (``resource.getrusage(...).ru_maxrss``) over one compress + decompress, after the model is built.
* **Compression / reconstruction time**: ``model.compress`` / ``model.decompress`` of the tile at
  the highest quality (``config.levels``), median of 5 runs after one warm-up. Both include the
  float64 CPU entropy-parameter pass and the rANS coder; with untrained weights most latent symbols
  are 0, so trained weights spend somewhat longer in the entropy coder. The synthesis transform is
  also timed alone in float32 and in a float64 copy, since an exact decoder may run it in float64;
  so is the post-filter of a model that has one (the decoder runs it in float64 too).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (also the worker): make ``pipelines`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.bench.counts import count_flops, deform_conv_macs, params_by_part  # noqa: E402
from pipelines.complexity_report import PAPER, format_table  # noqa: E402

INPUT_SHAPE = (1, 3, 256, 256)
REPEATS = 5


# ------------------------------------------------------------------------------------ worker


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(n: int, device: str, threads: int, model_name: str | None = None) -> dict[str, Any]:
    """All measurements for one width (run in a fresh process so that peak memory is its own)."""
    import torch

    from dmenet_geo.model import DMENet, DMENetConfig, load_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_name:
        model = load_model(model_name, device="cpu")
        label = f"weights '{model_name}'"
    else:
        model = DMENet(DMENetConfig(n=n))
        model.update(force=True)
        label = "untrained"
    model = model.eval()
    config = model.config
    quality = float(config.levels)
    n_params = sum(p.numel() for p in model.parameters())

    gen = torch.Generator().manual_seed(0)
    model = model.to(device)
    x = torch.rand(INPUT_SHAPE, generator=gen).to(device)

    # Peak memory of one compress + decompress: measured first, before any other forward pass has
    # raised the process's high-water mark.
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        latents = model.compress(x, quality)
        model.decompress(latents)
        torch.cuda.synchronize()
        peak_bytes = int(torch.cuda.max_memory_allocated())
        memory_kind = "CUDA max_memory_allocated (incl. weights)"
    else:
        before = _maxrss_bytes()
        latents = model.compress(x, quality)
        model.decompress(latents)
        peak_bytes = _maxrss_bytes() - before
        memory_kind = "CPU peak RSS growth (ru_maxrss)"

    flops = count_flops(model, x)
    deform_macs = deform_conv_macs(model, x)

    def timed(fn: Any) -> list[float]:
        fn()  # warm-up
        times = []
        for _ in range(REPEATS):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return times

    compress_times = timed(lambda: model.compress(x, quality))
    latents = model.compress(x, quality)
    decompress_times = timed(lambda: model.decompress(latents))
    x_hat, digests = model.decompress(latents)
    assert digests == latents.digests, "decoded symbols differ from the encoder's"
    num_bytes = sum(len(s) for s in latents.y_strings + latents.z_strings)

    # The synthesis transform alone, in float32 and in a float64 copy (the decoder may use either).
    with torch.no_grad():
        y_hat = torch.round(model.g_a(x))
        g_s64 = copy.deepcopy(model.g_s).double()
        y_hat64 = y_hat.double()
        gs32_times = timed(lambda: model.g_s(y_hat))
        gs64_times = timed(lambda: g_s64(y_hat64))
        # the post-filter alone likewise (the decoder runs it in float64 after the synthesis)
        pf_times: dict[str, float | None] = {"post_filter_float32_s": None, "post_filter_float64_s": None}
        if model.post_filter is not None:
            pf64 = copy.deepcopy(model.post_filter).double()
            q32 = torch.full((1,), float(quality), device=x.device)
            x64, q64 = x.double(), q32.double()
            pf_times["post_filter_float32_s"] = statistics.median(timed(lambda: model.post_filter(x, q32)))
            pf_times["post_filter_float64_s"] = statistics.median(timed(lambda: pf64(x64, q64)))

    conv_flops = sum(flops.values())
    return {
        "n": config.n,
        "latent_channels": config.latent,
        "weights": label,
        "quality": quality,
        "params": n_params,
        "params_by_part": params_by_part(model),
        "flops_by_part": flops,
        "flops_counted": conv_flops,
        "deform_conv_macs": deform_macs,
        "macs_total": conv_flops // 2 + deform_macs,
        "flops_total": conv_flops + 2 * deform_macs,
        "peak_memory_bytes": peak_bytes,
        "memory_kind": memory_kind,
        "compress_s": statistics.median(compress_times),
        "decompress_s": statistics.median(decompress_times),
        "g_s_float32_s": statistics.median(gs32_times),
        "g_s_float64_s": statistics.median(gs64_times),
        **pf_times,
        "compress_times_s": compress_times,
        "decompress_times_s": decompress_times,
        "bytes": num_bytes,
        "bpp": 8 * num_bytes / (INPUT_SHAPE[2] * INPUT_SHAPE[3]),
        "x_hat_shape": list(x_hat.shape),
        "device": device,
        "threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------- orchestration


def run_worker(n: int, device: str, threads: int, model_name: str | None) -> dict[str, Any]:
    """Run :func:`measure` in a fresh Python process and return its JSON result."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(n), "--device", device]
    cmd += ["--threads", str(threads)]
    if model_name:
        cmd += ["--model", model_name]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for N={n} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=None,
        help="channel widths N (default: 256 and the default N)",
    )
    p.add_argument("--model", default=None, help="also measure this named / .pt model (trained weights)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.device, args.threads, args.model)))
        return

    from dmenet_geo.model import DMENetConfig

    widths = args.widths or sorted({256, DMENetConfig().n}, reverse=True)
    rows = [run_worker(n, args.device, args.threads, None) for n in widths]
    if args.model:
        rows.append(run_worker(0, args.device, args.threads, args.model))
    print(format_table(rows, args.device, args.threads, REPEATS))
    if args.json:
        args.json.write_text(json.dumps({"paper": PAPER, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
