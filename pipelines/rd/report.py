"""Reporting of a rate-distortion run: BD table, fixed-width text table, plot, JSON file.

BD-rates (PCHIP by default, see :mod:`pipelines.rd.bd`) are of the DMENet curve against every
other curve: negative numbers mean DMENet needs fewer bits for the same PSNR / MS-SSIM dB.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from pipelines.rd.bd import bd_quality, bd_rate
from pipelines.rd.results import DMENET, BDRow, RDCurve, RDResult

__all__ = ["as_result", "bd_table", "curve_from_json", "format_table", "plot_curves", "write_json"]

ResultLike: TypeAlias = RDResult | Mapping[str, Any]  # a result, or its JSON form


def as_result(result: ResultLike) -> RDResult:
    """``result`` itself, or the :class:`RDResult` of its JSON form."""
    return result if isinstance(result, RDResult) else RDResult.from_dict(result)


def _points(curve: RDCurve, metric: str) -> tuple[list[float], list[float]]:
    """Rates and qualities of the points with a non-zero rate and finite numbers."""
    rates: list[float] = []
    quality: list[float] = []
    for p in curve.points:
        q = float(getattr(p, metric))
        if p.bpp and math.isfinite(p.bpp) and math.isfinite(q):
            rates.append(float(p.bpp))
            quality.append(q)
    return rates, quality


def bd_table(curves: Mapping[str, RDCurve], test: str = DMENET, method: str = "pchip") -> dict[str, BDRow]:
    """BD-rate (%) of ``test`` against every other curve, for PSNR and MS-SSIM dB, and BD-PSNR (dB)."""
    if test not in curves:
        return {}
    out: dict[str, BDRow] = {}
    for name, anchor in curves.items():
        if name == test:
            continue
        pct: dict[str, float] = {}
        for metric in ("psnr", "ms_ssim_db"):
            ra, qa = _points(anchor, metric)
            rt, qt = _points(curves[test], metric)
            pct[metric] = bd_rate(ra, qa, rt, qt, method=method) if ra and rt else math.nan
        ra, qa = _points(anchor, "psnr")
        rt, qt = _points(curves[test], "psnr")
        out[name] = BDRow(
            bd_rate_psnr_pct=pct["psnr"],
            bd_rate_ms_ssim_db_pct=pct["ms_ssim_db"],
            bd_psnr_db=bd_quality(ra, qa, rt, qt, method=method) if ra and rt else math.nan,
        )
    return out


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _pct(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2f} %"


def format_table(result: ResultLike) -> str:
    """The points of every curve and the BD-rates as fixed-width text."""
    res = as_result(result)
    lines = [
        f"{'codec':<22} {'setting':>10} {'bpp':>8} {'PSNR':>7} {'PSNR(mMSE)':>10} {'MS-SSIM':>8} "
        f"{'MS-SSIM dB':>10} {'enc ms':>8} {'dec ms':>8}"
    ]
    for name, curve in res.curves.items():
        for p in curve.points:
            s = p.setting
            setting = f"{s:g}" if isinstance(s, (int, float)) else str(s)[:10]
            lines.append(
                f"{name[:22]:<22} {setting:>10} {p.bpp:8.4f} {p.psnr:7.2f} "
                f"{p.psnr_of_mean_mse:10.2f} {p.ms_ssim:8.4f} {p.ms_ssim_db:10.2f} "
                f"{_num(p.encode_ms):>8} {_num(p.decode_ms):>8}"
            )
    if res.bd:
        lines += [
            "",
            f"BD of {DMENET} against (negative BD-rate / positive BD-PSNR: {DMENET} better)",
            f"{'anchor':<22} {'BD-rate PSNR':>13} {'BD-rate MS-SSIM':>16} {'BD-PSNR dB':>10}",
        ]
        for name, row in res.bd.items():
            lines.append(
                f"{name[:22]:<22} {_pct(row.bd_rate_psnr_pct):>13} "
                f"{_pct(row.bd_rate_ms_ssim_db_pct):>16} {_num(row.bd_psnr_db, '{:+.2f}'):>10}"
            )
    return "\n".join(lines)


def plot_curves(result: ResultLike, path: Path | str | None = None, title: str | None = None) -> Any:
    """PSNR vs bpp and MS-SSIM dB vs bpp, one line per codec; saved to ``path`` when given.

    Returns the matplotlib ``Figure`` (built without pyplot, so any backend, including none, works).
    """
    from matplotlib.figure import Figure

    res = as_result(result)
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, curve in res.curves.items():
        pts = sorted(curve.points, key=lambda p: p.bpp)
        bpp = [p.bpp for p in pts]
        style: dict[str, Any] = (
            {"linewidth": 2.2, "marker": "o", "zorder": 3} if curve.kind == "dmenet" else {"marker": "."}
        )
        axes[0].plot(bpp, [p.psnr for p in pts], label=name, **style)
        axes[1].plot(bpp, [p.ms_ssim_db for p in pts], label=name, **style)
    for ax, ylabel in zip(axes, ("PSNR (dB, RGB, peak 255)", "MS-SSIM (dB)"), strict=True):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right", fontsize="small")
    tiles, side = ("?", "?") if res.meta is None else (res.meta.tiles, res.meta.tile)
    fig.suptitle(title or f"{tiles} tiles of {side}x{side} px, each coded on its own")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def write_json(result: ResultLike, path: Path | str) -> None:
    """Write the result as JSON (non-finite numbers as ``null``), atomically."""
    data = result.to_dict() if isinstance(result, RDResult) else dict(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)


def curve_from_json(path: Path | str, curve: str, label: str) -> RDCurve:
    """Curve ``curve`` of a result JSON, renamed ``label``, as a learned baseline."""
    path = Path(path)
    result = json.loads(path.read_text())
    curves = result.get("curves", {})
    if curve not in curves:
        raise KeyError(f"{path} has no curve {curve!r}; it has {', '.join(curves) or 'none'}")
    out = RDCurve.from_dict(curves[curve])
    out.name, out.kind, out.source = label, "baseline-json", str(path)
    return out
