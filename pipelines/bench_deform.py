"""SEB's deformable convolution on the CPU: torchvision's kernel against ``deform_conv2d_gathered``.

    OMP_NUM_THREADS=1 python pipelines/bench_deform.py [--batch 8] [--threads 1] [--repeats 3]

Random inputs (offsets of standard deviation 0.5 pixels) at the shapes SEB meets in the shipped
models (channels x side: 32x64 and 64x64 in the synthesis, 128x32 in ``wide``'s analysis), in float32
(encoder, training) and float64 (the exact decoder). Prints the best of ``--repeats`` milliseconds
for each, the speed-up and the largest difference between the two outputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

SHAPES = ((32, 64), (64, 64), (128, 32))  # (channels, side)


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import torch
    from torchvision.ops import deform_conv2d

    from dmenet_geo.model.layers import deform_conv2d_gathered

    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} torch thread(s); best of {args.repeats}, ms")
    print(f"{'dtype':8s} {'C':>4s} {'side':>4s} {'torchvision':>12s} {'gathered':>9s} {'speed-up':>8s}"
          f" {'max diff':>9s}")
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for c, side in SHAPES:
            x = torch.randn(args.batch, c, side, side, generator=g, dtype=dtype)
            offset = torch.randn(args.batch, 18, side, side, generator=g, dtype=dtype) * 0.5
            weight = torch.randn(c, c, 3, 3, generator=g, dtype=dtype) * 0.05
            bias = torch.randn(c, generator=g, dtype=dtype)
            torchvision = partial(deform_conv2d, x, offset, weight, bias, padding=(1, 1))
            gathered = partial(deform_conv2d_gathered, x, offset, weight, bias)
            with torch.inference_mode():
                diff = float((gathered() - torchvision()).abs().max())
                tv, ours = best_ms(torchvision, args.repeats), best_ms(gathered, args.repeats)
            name = str(dtype).removeprefix("torch.")
            print(f"{name:8s} {c:4d} {side:4d} {tv:12.1f} {ours:9.1f} {tv / ours:7.2f}x {diff:9.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
