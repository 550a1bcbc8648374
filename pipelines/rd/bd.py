"""Bjontegaard metrics of rate-distortion curves (VCEG-M33, with the now usual PCHIP variant).

``bd_rate(anchor, test)`` is the average relative rate difference of ``test`` against ``anchor`` at
equal quality, in percent: negative values mean ``test`` needs fewer bits. The log-rate of each curve
is interpolated as a function of quality (PSNR, MS-SSIM dB, ...) and integrated over the quality
interval both curves cover; the mean difference of the two integrals is turned back into a ratio::

    BD-rate = 100 * (exp(mean(log R_test - log R_anchor)) - 1)

``method="pchip"`` (default) uses piecewise cubic Hermite interpolation, which follows the points
exactly and never overshoots (as in the JVET/AOM common test conditions). ``method="cubic"`` is the
original least-squares cubic polynomial fit (needs at least four points per curve).

``bd_quality`` is the dual: the mean quality difference at equal rate (for example BD-PSNR in dB).
``rate_differences`` gives the same comparison point by point instead of averaged, which shows where
along the curve one codec gains or loses. As a script, on a JSON of ``pipelines/evaluate.py``::

    python pipelines/rd/bd.py docs/rate_distortion_val_wide.json --anchor WebP
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from dmenet_geo.cli.common import CLOSED_PIPE_STATUS, stdout_closed_by_reader

__all__ = ["bd_rate", "bd_quality", "rate_differences"]

METHODS = ("pchip", "cubic")

Values = Sequence[float] | np.ndarray


def _clean(x: Values, y: Values) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by ``x`` with repeated ``x`` values merged (their ``y`` averaged)."""
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"curve has {xa.size} x values but {ya.size} y values")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    if xa.size == 0:
        return xa, ya
    ux, inverse = np.unique(xa, return_inverse=True)
    uy = np.bincount(inverse, weights=ya) / np.bincount(inverse)
    return ux, uy


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Integral over ``[lo, hi]`` of ``y(x)`` interpolated through the points."""
    if method == "pchip":
        return float(PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi))
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(x, y, deg=3).convert().integ()
        return float(poly(hi) - poly(lo))
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def _min_points(method: str) -> int:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return 4 if method == "cubic" else 2


def _mean_difference(
    x_anchor: Values,
    y_anchor: Values,
    x_test: Values,
    y_test: Values,
    method: str,
) -> float:
    """Mean of ``y_test(x) - y_anchor(x)`` over the ``x`` interval both curves cover (NaN if none)."""
    need = _min_points(method)
    xa, ya = _clean(x_anchor, y_anchor)
    xt, yt = _clean(x_test, y_test)
    if xa.size < need or xt.size < need:
        return math.nan
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not hi > lo:
        return math.nan
    return (_integral(xt, yt, lo, hi, method) - _integral(xa, ya, lo, hi, method)) / (hi - lo)


def _check_rates(rate_anchor: Values, rate_test: Values) -> None:
    for name, rates in (("anchor", rate_anchor), ("test", rate_test)):
        if np.any(np.asarray(rates, dtype=np.float64) <= 0):
            raise ValueError(f"{name} rates must be positive")


def bd_rate(
    rate_anchor: Values,
    quality_anchor: Values,
    rate_test: Values,
    quality_test: Values,
    method: str = "pchip",
) -> float:
    """Bjontegaard delta rate of ``test`` against ``anchor`` in percent (negative: ``test`` is cheaper).

    Rates must be positive (bpp, bytes...: any unit, the same for both curves). Returns NaN when a
    curve has too few distinct points or the quality ranges do not overlap.
    """
    _check_rates(rate_anchor, rate_test)
    diff = _mean_difference(
        quality_anchor,
        np.log(np.asarray(rate_anchor, dtype=np.float64)),
        quality_test,
        np.log(np.asarray(rate_test, dtype=np.float64)),
        method,
    )
    return math.nan if math.isnan(diff) else 100.0 * math.expm1(diff)


def bd_quality(
    rate_anchor: Values,
    quality_anchor: Values,
    rate_test: Values,
    quality_test: Values,
    method: str = "pchip",
) -> float:
    """Bjontegaard delta quality (e.g. BD-PSNR in dB) of ``test`` against ``anchor`` (positive: better)."""
    _check_rates(rate_anchor, rate_test)
    return _mean_difference(
        np.log(np.asarray(rate_anchor, dtype=np.float64)),
        quality_anchor,
        np.log(np.asarray(rate_test, dtype=np.float64)),
        quality_test,
        method,
    )


def rate_differences(
    rate_anchor: Values, quality_anchor: Values, rate_test: Values, quality_test: Values
) -> list[tuple[float, float]]:
    """For each test point within the anchor's quality range: its quality and the percent difference
    of its rate against the anchor's at that quality (the anchor's log-rate interpolated by PCHIP;
    negative: ``test`` needs fewer bits there)."""
    _check_rates(rate_anchor, rate_test)
    qa, la = _clean(quality_anchor, np.log(np.asarray(rate_anchor, dtype=np.float64)))
    if qa.size < 2:
        return []
    anchor = PchipInterpolator(qa, la, extrapolate=False)
    out = []
    for rate, quality in zip(np.asarray(rate_test, float), np.asarray(quality_test, float), strict=True):
        if qa[0] <= quality <= qa[-1]:
            out.append((float(quality), 100.0 * math.expm1(math.log(rate) - float(anchor(quality)))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="BD-rate and point-by-point rate differences of an "
                                            "evaluate.py JSON's curves")
    p.add_argument("json", type=Path, help="a JSON written by pipelines/evaluate.py --json")
    p.add_argument("--anchor", required=True, help="curve name, e.g. WebP")
    p.add_argument("--test", default="DMENet", help="curve name (default: DMENet)")
    p.add_argument("--metric", choices=("psnr", "ms_ssim_db"), default="psnr")
    p.add_argument("--anchor-json", type=Path, default=None,
                   help="take the anchor curve from this evaluate.py JSON (same tiles and tile size)")
    p.add_argument("--settings", type=lambda t: {float(v) for v in t.split(",")}, default=None,
                   metavar="S,S,...", help="keep only these settings of the test curve (e.g. qualities "
                   "1,3,5,8, to compare a 15-point curve with a 4-point run's)")
    args = p.parse_args(argv)
    results = json.loads(args.json.read_text())
    other = results if args.anchor_json is None else json.loads(args.anchor_json.read_text())
    for key in ("image_files", "tile"):
        if results.get("meta", {}).get(key) != other.get("meta", {}).get(key):
            p.error(f"{args.json} and {args.anchor_json} were not measured on the same tiles ({key} differs)")
    anchor_path = args.anchor_json or args.json
    for name, res, path in ((args.anchor, other, anchor_path), (args.test, results, args.json)):
        if name not in res["curves"]:
            p.error(f"no curve {name!r} in {path}; it has: {', '.join(res['curves'])}")
    anchor, test = other["curves"][args.anchor]["points"], results["curves"][args.test]["points"]
    if args.settings is not None:
        test = [pt for pt in test if pt.get("setting") in args.settings]
        if len(test) != len(args.settings):
            p.error(f"{args.test} has {len(test)} of the {len(args.settings)} settings asked for")
    ra, qa = [pt["bpp"] for pt in anchor], [pt[args.metric] for pt in anchor]
    rt, qt = [pt["bpp"] for pt in test], [pt[args.metric] for pt in test]
    try:
        print(f"{args.test} against {args.anchor} ({args.metric}): BD-rate {bd_rate(ra, qa, rt, qt):+.1f} %")
        for quality, diff in rate_differences(ra, qa, rt, qt):
            print(f"  at {quality:.2f}: {diff:+.1f} %")
        sys.stdout.flush()
    except BrokenPipeError:
        if stdout_closed_by_reader():  # `bd.py ... | head -1`: the reader has what it wanted
            return CLOSED_PIPE_STATUS
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
