"""The exact decoder's float64 convolutions on the CPU: PyTorch's against ``tap_convolutions``.

    python pipelines/bench_tapconv.py [--threads 1] [--repeats 5]

One image (the decoder synthesises one at a time), random weights, at the shapes of the SDPM in the
synthesis of the shipped models (channels x side: 32x64 for N = 64, 64x64 for N = 128): PEB's four
branches (1x1, 3x3 and the dilated 3x3s), computed one ``F.conv2d`` each against one
:func:`~dmenet_geo.model.tapconv.tap_convolutions` call, and SEB's offset convolution alone. Also
SEB's gather (``F.embedding_bag``) from a strided channel-last view of the image against a
contiguous copy, as ``deform_conv2d_gathered`` read it before and after session 22. Prints the best
of ``--repeats`` milliseconds, the speed-ups and the largest differences.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the ``pipelines`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.bench_deform import best_ms  # noqa: E402

SHAPES = ((32, 64), (64, 64))  # (channels, side)


Cases = dict[str, tuple[Callable[[], list[Any]], Callable[[], list[Any]]]]


def cases(c: int, side: int) -> Cases:
    """PyTorch's computation and ours, per case, for one random float64 image of c x side x side."""
    import torch
    import torch.nn.functional as F

    from dmenet_geo.model.layers import PEB, SEB
    from dmenet_geo.model.tapconv import tap_convolutions

    x = torch.randn(1, c, side, side, dtype=torch.float64)
    peb, seb = PEB(c).double().eval(), SEB(c).double().eval()
    branches = [peb.branch_a, peb.branch_b, peb.branch_c, peb.branch_d]
    hw = side * side
    strided = x.permute(0, 2, 3, 1).reshape(hw, c)  # what SEB's gather read before session 22
    rows = torch.randint(0, hw, (hw * 9, 4))
    share = torch.rand(hw * 9, 4, dtype=torch.float64)

    def gather(table: torch.Tensor) -> list[Any]:
        return [F.embedding_bag(rows, table, mode="sum", per_sample_weights=share)]

    return {
        "PEB branches": (lambda: [conv(x) for conv in branches], lambda: tap_convolutions(x, branches)),
        "SEB offsets": (lambda: [seb.offset(x)], lambda: tap_convolutions(x, [seb.offset])),
        "SEB gather": (lambda: gather(strided), lambda: gather(strided.contiguous())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"float64, one image, {args.threads} torch thread(s); best of {args.repeats}, ms")
    header = ("what", "C", "side", "PyTorch", "ours", "speed-up", "max diff")
    print("{:16s} {:>4s} {:>4s} {:>9s} {:>7s} {:>8s} {:>9s}".format(*header))
    for c, side in SHAPES:
        with torch.inference_mode():
            for name, (theirs, ours) in cases(c, side).items():
                diff = max(float((a - b).abs().max()) for a, b in zip(theirs(), ours(), strict=True))
                before, after = best_ms(theirs, args.repeats), best_ms(ours, args.repeats)
                speed = before / after
                print(f"{name:16s} {c:4d} {side:4d} {before:9.2f} {after:7.2f} {speed:7.2f}x {diff:9.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
