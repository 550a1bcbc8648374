"""Would a post-filter exact in float32 keep the float64 filter's gains? A measurement, not in the codec.

    python pipelines/postfilter_int.py --weights dmenet_geo/weights/default.pt \\
        --train ../shared/data/train/rsscn7 --val ../shared/data/val --out runs/pfint --minutes 20

The decoder runs the post-filter (:mod:`dmenet_geo.model.postfilter`) in float64, because float32
convolutions change their last bits with the batch size and the thread count. This script
quantises a model's filter so that its convolutions only ever see integers:

* the input ``x_hat - 0.5`` and the quality plane in multiples of ``1 / INPUT_SCALE``;
* each output channel's weights as integers in ``[-WEIGHT_MAX, WEIGHT_MAX]`` times a step (its
  largest weight / ``WEIGHT_MAX``);
* the two hidden activations as integers in ``[-ACT_MAX, ACT_MAX]`` times a step calibrated on
  ``--calib-crops`` training crops (the ``--percentile`` of |h|, / ``ACT_MAX``).

Every product is then an integer and every partial sum stays below 2^24
(:func:`partial_sum_bound`), so a float32 convolution that sums products (not a Winograd or FFT
algorithm) gives the exact result in any order; scaling, bias, activation and re-quantisation are
element-wise. It reports the PSNR gain on the validation tiles at qualities 1, 3, 5 and 8 of the
float filter, of the filter quantised as it is, and after ``--minutes`` of quantisation-aware
training (straight-through rounding) on crops the model without its filter coded (the cache of
``pipelines/train_postfilter.py``, ``OUT/decoded.pt``); checks that float32 and float64
convolutions, batches and single pictures, and 1 and 2 threads give identical results; and times
both filters on one 256x256 picture on one thread. Writes ``OUT/result.json`` and
``OUT/integer_filter.pt`` (the trained integer filter's state).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script: make ``pipelines`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.postfilter import FACTOR, PostFilter  # noqa: E402
from pipelines import train_postfilter as tp  # noqa: E402

__all__ = ["IntegerFilter", "Result", "partial_sum_bound", "main"]

INPUT_SCALE = 1024.0  # input and quality plane in multiples of 1/1024
WEIGHT_MAX = 127  # integer weights in [-127, 127]
ACT_MAX = 255  # integer hidden activations in [-255, 255]
EXACT_LIMIT = 2**24  # float32 holds every integer up to this exactly


def _fake_quantise(x: Tensor, step: Tensor | float, limit: float) -> Tensor:
    """``x`` rounded to a multiple of ``step`` within ``+-limit`` steps; the gradient passes straight."""
    return x + (torch.clamp(torch.round(x / step), -limit, limit) * step - x).detach()


class IntegerFilter(nn.Module):
    """A :class:`PostFilter`'s network with integer weights and activations (see the module doc)."""

    act_step: Tensor

    def __init__(self, pf: PostFilter) -> None:
        super().__init__()
        self.levels = pf.levels
        self.convs = nn.ModuleList([copy.deepcopy(m) for m in pf.net if isinstance(m, nn.Conv2d)])
        self.register_buffer("act_step", torch.ones(len(self.convs) - 1, dtype=torch.float64))

    def _inputs(self, x_hat: Tensor, quality: Tensor) -> Tensor:
        packed = F.pixel_unshuffle(x_hat - 0.5, FACTOR)
        middle, half = (1 + self.levels) / 2, max((self.levels - 1) / 2, 1.0)
        level = ((quality.to(packed) - middle) / half).reshape(-1, 1, 1, 1)
        return torch.cat([packed, level.expand(-1, 1, *packed.shape[-2:])], dim=1)

    def layers(self) -> list[nn.Conv2d]:
        return [m for m in self.convs if isinstance(m, nn.Conv2d)]

    def weight_steps(self, conv: nn.Conv2d) -> Tensor:
        """One step per output channel: its largest weight maps to ``WEIGHT_MAX``."""
        return (conv.weight.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_MAX).clamp_min(1e-12)

    def hidden(self, x_hat: Tensor, quality: Tensor) -> list[Tensor]:
        """The hidden activations (after the leaky ReLU) without quantising them, for calibration."""
        h, out = self._inputs(x_hat, quality), []
        for conv in self.layers()[:-1]:
            h = F.leaky_relu(conv(h), 0.1)
            out.append(h)
        return out

    def forward(self, x_hat: Tensor, quality: Tensor) -> Tensor:
        """The quantised filter in float32 with straight-through rounding (training)."""
        h = _fake_quantise(self._inputs(x_hat, quality), 1 / INPUT_SCALE, 2 * INPUT_SCALE)
        for i, conv in enumerate(self.layers()):
            step = self.weight_steps(conv).reshape(-1, 1, 1, 1)
            h = F.conv2d(h, _fake_quantise(conv.weight, step, WEIGHT_MAX), conv.bias, padding=1)
            if i < len(self.convs) - 1:
                h = _fake_quantise(F.leaky_relu(h, 0.1), float(self.act_step[i]), ACT_MAX)
        return x_hat + F.pixel_shuffle(h, FACTOR)

    @torch.no_grad()
    def exact(self, x_hat: Tensor, quality: Tensor, conv_dtype: torch.dtype = torch.float32) -> Tensor:
        """Integer convolutions in ``conv_dtype``, everything else element-wise in float64."""
        a = torch.round(self._inputs(x_hat.double(), quality.double()) * INPUT_SCALE)
        step_in, h = 1 / INPUT_SCALE, a
        for i, conv in enumerate(self.layers()):
            assert conv.bias is not None
            steps = self.weight_steps(conv).double()
            w = torch.round(conv.weight.double() / steps.reshape(-1, 1, 1, 1)).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            acc = F.conv2d(a.to(conv_dtype), w.to(conv_dtype), None, padding=1).double()
            h = acc * (steps * step_in).reshape(1, -1, 1, 1) + conv.bias.double().reshape(1, -1, 1, 1)
            if i < len(self.convs) - 1:
                step_in = float(self.act_step[i])
                a = torch.clamp(torch.round(F.leaky_relu(h, 0.1) / step_in), -ACT_MAX, ACT_MAX)
        return x_hat.double() + F.pixel_shuffle(h, FACTOR)


def partial_sum_bound(f: IntegerFilter) -> int:
    """The largest |partial sum| any of ``f``'s integer convolutions can reach (< 2^24 for exactness)."""
    bounds = []
    for i, conv in enumerate(f.layers()):
        taps = conv.weight.shape[2] * conv.weight.shape[3]
        if i == 0:  # packed picture channels at most INPUT_SCALE / 2, the quality plane INPUT_SCALE
            inputs = (conv.in_channels - 1) * taps * INPUT_SCALE / 2 + taps * INPUT_SCALE
        else:
            inputs = conv.in_channels * taps * ACT_MAX
        bounds.append(int(inputs * WEIGHT_MAX))
    return max(bounds)


@dataclass(frozen=True)
class Result:
    """Gains (dB per quality), exactness checks and one-picture timings (ms, one thread)."""

    gain_float_db: dict[str, float]
    gain_quantised_db: dict[str, float]
    gain_trained_db: dict[str, float]
    steps: int
    partial_sum_bound: int
    float32_equals_float64: bool
    batch_equals_single: bool
    threads_agree: bool | None  # None when run on one thread
    float64_filter_ms: float
    integer_filter_ms: float


def _gains(fn: Callable[[Tensor, Tensor], Tensor], val: tp.Decoded) -> dict[str, float]:
    return {str(q): round(g, 4) for q, g in tp.psnr_gains(fn, val).items()}


def _median_ms(fn: Callable[[], object], repeats: int = 9) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * sorted(times)[repeats // 2], 2)


def calibrate(f: IntegerFilter, data: tp.Decoded, crops: int, percentile: float) -> None:
    """Set each hidden activation's step from ``crops`` training crops."""
    with torch.no_grad():
        for i, h in enumerate(f.hidden(data.decoded[:crops], data.quality[:crops])):
            values = h.abs().flatten()
            pick = torch.randperm(len(values), generator=torch.Generator().manual_seed(i))[:2_000_000]
            values = values[pick]
            f.act_step[i] = float(torch.quantile(values, percentile)) / ACT_MAX


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=Path("dmenet_geo/weights/default.pt"),
                   help="weights.pt with a post-filter, and its .json sidecar")
    p.add_argument("--train", type=Path, nargs="+", required=True)
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--crops", type=int, default=2000, help="training crops coded once")
    p.add_argument("--calib-crops", type=int, default=64)
    p.add_argument("--percentile", type=float, default=0.9999)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = tp.load_base(args.weights, None, warm_start=True)  # the filter the weights have
    pf = loaded.model.post_filter
    assert pf is not None
    data = tp.training_set(loaded.base, args, loaded.base_sha256)
    val = tp.validation_set(loaded.base, args.val)
    f = IntegerFilter(pf)
    calibrate(f, data, args.calib_crops, args.percentile)
    gain_float = _gains(pf, val)
    gain_quantised = _gains(lambda d, q: f.exact(d, q), val)
    steps = tp.fit(f, data, args)
    f.eval()
    gain_trained = _gains(lambda d, q: f.exact(d, q), val)
    d, q = val.decoded[:16].double(), val.quality[:16]
    both = f.exact(d, q)
    single = torch.cat([f.exact(d[i : i + 1], q[i : i + 1]) for i in range(len(d))])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread = f.exact(d, q)
    pf64 = copy.deepcopy(pf).double()
    with torch.no_grad():
        float64_ms = _median_ms(lambda: pf64(d[:1], q[:1].double()))
    integer_ms = _median_ms(lambda: f.exact(d[:1], q[:1]))
    torch.set_num_threads(threads)
    result = Result(gain_float, gain_quantised, gain_trained, steps, partial_sum_bound(f),
                    torch.equal(both, f.exact(d, q, torch.float64)), torch.equal(both, single),
                    None if threads == 1 else torch.equal(both, one_thread), float64_ms, integer_ms)
    torch.save(f.state_dict(), args.out / "integer_filter.pt")
    (args.out / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(json.dumps(asdict(result), indent=2), flush=True)
    return 0 if result.partial_sum_bound < EXACT_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
