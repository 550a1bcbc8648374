"""The rate-distortion result model: points, curves, BD rows and a whole run, and their JSON form.

``to_dict`` gives exactly the JSON layout of ``pipelines/evaluate.py --json`` (non-finite floats
are written as ``null`` by :func:`pipelines.rd.report.write_json`); ``from_dict`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from pipelines.rd.tiles import DB_CAP, TileMetrics

__all__ = ["DMENET", "BDRow", "RDCurve", "RDMeta", "RDPoint", "RDResult", "point_line"]

DMENET = "DMENet"  # name of the curve the BD table compares against every other one


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


@dataclass
class RDPoint:
    """One operating point of one codec, averaged over the tiles."""

    setting: float | str
    bpp: float
    psnr: float  # mean of per-tile PSNR
    psnr_of_mean_mse: float  # PSNR of the mean MSE over all tiles
    ms_ssim: float
    ms_ssim_db: float  # mean of per-tile MS-SSIM dB
    tiles: int
    encode_ms: float = math.nan  # mean per tile
    decode_ms: float = math.nan

    @classmethod
    def from_tiles(
        cls,
        setting: float | str,
        nbytes: Sequence[int],
        per_tile: Sequence[TileMetrics],
        pixels: int,
        encode_s: float = math.nan,
        decode_s: float = math.nan,
    ) -> RDPoint:
        n = len(per_tile)
        if n == 0 or len(nbytes) != n:
            raise ValueError("need one byte count and one metrics record per tile")
        mean_mse = float(np.mean([m.mse for m in per_tile]))
        return cls(
            setting=setting,
            bpp=8.0 * float(np.sum(nbytes)) / (pixels * n),
            psnr=float(np.mean([m.psnr for m in per_tile])),
            psnr_of_mean_mse=DB_CAP if mean_mse == 0 else min(10 * math.log10(255.0**2 / mean_mse), DB_CAP),
            ms_ssim=float(np.mean([m.ms_ssim for m in per_tile])),
            ms_ssim_db=float(np.mean([m.ms_ssim_db for m in per_tile])),
            tiles=n,
            encode_ms=1000 * encode_s / n,
            decode_ms=1000 * decode_s / n,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RDPoint:
        """A point of a result JSON (``null`` numbers become NaN)."""
        setting = d["setting"]
        return cls(
            setting=setting if isinstance(setting, str) else float(setting),
            bpp=_float(d.get("bpp")),
            psnr=_float(d.get("psnr")),
            psnr_of_mean_mse=_float(d.get("psnr_of_mean_mse")),
            ms_ssim=_float(d.get("ms_ssim")),
            ms_ssim_db=_float(d.get("ms_ssim_db")),
            tiles=int(d.get("tiles") or 0),
            encode_ms=_float(d.get("encode_ms")),
            decode_ms=_float(d.get("decode_ms")),
        )


_OPTIONAL = ("key", "options", "rate_source", "model", "checkpoints")  # JSON order, before "points"


@dataclass
class RDCurve:
    """The points of one codec (or one set of weights) and where its rates come from."""

    name: str
    kind: str  # "dmenet", "classical", "compressai" or "baseline-json"
    param: str  # what ``RDPoint.setting`` is
    points: list[RDPoint]
    key: str | None = None  # classical: key of ``CLASSICAL_CODECS``
    options: dict[str, Any] | None = None  # classical: extra encoder keywords
    rate_source: str | None = None
    model: str | None = None  # DMENet: model name or weights file
    checkpoints: list[str] | None = None  # CompressAI: one checkpoint per point
    extra: dict[str, Any] = field(default_factory=dict)  # other keys of a curve read from JSON
    source: str | None = None  # baseline-json: the file it was read from

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "param": self.param}
        for k in _OPTIONAL:
            if (v := getattr(self, k)) is not None:
                out[k] = v
        out.update(self.extra)
        out["points"] = [asdict(p) for p in self.points]
        if self.source is not None:
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RDCurve:
        known = {"name", "kind", "param", "points", "source", *_OPTIONAL}
        return cls(
            name=str(d["name"]),
            kind=str(d.get("kind", "")),
            param=str(d.get("param", "")),
            points=[RDPoint.from_dict(p) for p in d.get("points", [])],
            **{k: d[k] for k in _OPTIONAL if d.get(k) is not None},
            extra={k: v for k, v in d.items() if k not in known},
            source=d.get("source"),
        )


@dataclass(frozen=True)
class BDRow:
    """Bjontegaard deltas of the test curve against one anchor (NaN: the curves do not overlap)."""

    bd_rate_psnr_pct: float  # negative: the test curve needs fewer bits at equal PSNR
    bd_rate_ms_ssim_db_pct: float
    bd_psnr_db: float  # positive: the test curve has the higher PSNR at equal rate


@dataclass
class RDMeta:
    """What was evaluated, and how."""

    data: list[str]
    images: int
    image_files: list[str]
    tiles: int
    tile: int
    device: str
    imagecodecs: str
    bd_method: str
    psnr: str = (
        "peak 255 over the 3 RGB bands; psnr = mean of per-tile PSNR, psnr_of_mean_mse = PSNR of "
        f"the mean MSE; exact tiles count as {DB_CAP:g} dB"
    )
    bd: str = "BD-rate of DMENet against each curve in percent (negative: DMENet needs fewer bits)"
    seconds: float = 0.0
    # how the run was spread, which the timings depend on (None: not recorded, in older files)
    threads: int | None = None  # torch threads asked for (0: torch's default)
    workers: int | None = None  # DMENet batches coded at once
    batch_size: int | None = None
    refine: int | None = None  # DMENet refinement steps per tile
    model: str | None = None  # DMENet: the shipped name or weights path given
    model_sha256: str | None = None  # ...and the SHA-256 of its weights file


@dataclass
class RDResult:
    """A whole evaluation: ``meta``, the ``curves`` by name and the ``bd`` rows by anchor name."""

    meta: RDMeta | None
    curves: dict[str, RDCurve]
    bd: dict[str, BDRow] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": None if self.meta is None else asdict(self.meta),
            "curves": {name: c.to_dict() for name, c in self.curves.items()},
            "bd": {name: asdict(row) for name, row in self.bd.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RDResult:
        meta = d.get("meta")
        names = {f.name for f in fields(RDMeta)}
        bd_names = {f.name for f in fields(BDRow)}
        return cls(
            meta=RDMeta(**{k: v for k, v in meta.items() if k in names}) if meta else None,
            curves={name: RDCurve.from_dict(c) for name, c in d.get("curves", {}).items()},
            bd={
                name: BDRow(**{k: _float(row.get(k)) for k in bd_names})
                for name, row in (d.get("bd") or {}).items()
            },
        )


def point_line(label: str, p: RDPoint, seconds: float) -> str:
    """A progress line for one point."""
    return (
        f"{label}: {p.tiles} tiles, {p.bpp:.4f} bpp, PSNR {p.psnr:.2f} dB, "
        f"MS-SSIM {p.ms_ssim_db:.2f} dB ({seconds:.1f} s)"
    )
