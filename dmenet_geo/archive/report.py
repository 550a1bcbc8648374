"""The job report: one :class:`SceneResult` per input, totals, throughput; JSON and a human summary.

Statuses: ``done`` (compressed by this run, possibly resuming an interrupted one), ``skipped``
(already complete from an earlier run with the same settings: counted, not redone) and ``failed``
(with the error; the other scenes go on). Nothing in a report is a credential: errors pass through
:func:`redact`, which drops URL query strings (signed URLs) and the values of the AWS secret
variables should a library ever echo them.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dmenet_geo.geo.remote import is_url, write_bytes_atomic

__all__ = ["BatchReport", "SceneResult", "redact"]

_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN")
_QUERY = re.compile(r"((?:https?|s3|gs|az|abfs)://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """``text`` without URL query strings and without the values of AWS credential variables."""
    text = _QUERY.sub(r"\1?<redacted>", text)
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "<redacted>")
    return text


@dataclass
class SceneResult:
    """What happened to one input."""

    name: str
    source: str
    store: str
    status: str  # done | skipped | failed
    error: str | None = None
    seconds: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    store_bytes: int = 0
    ratio: float | None = None
    bpp: float | None = None
    psnr: float | None = None
    quality: float | None = None
    chunks_written: int = 0
    chunks_reused: int = 0  # already stored by an interrupted earlier run
    worker: str | None = None

    @property
    def chunks_encoded(self) -> int:
        return 0 if self.status != "done" else max(0, self.chunks_written - self.chunks_reused)

    @classmethod
    def from_summary(cls, name: str, source: str, store: str, status: str, summary: dict[str, Any],
                     **extra: Any) -> SceneResult:
        fixed = summary.get("target_psnr") is None
        quality = summary.get("quality") if fixed else summary.get("quality_mean")
        return cls(name=name, source=redact(source), store=redact(store), status=status,
                   bytes_in=int(summary.get("bytes_in") or 0), bytes_out=int(summary.get("bytes_out") or 0),
                   store_bytes=int(summary.get("store_bytes") or 0), ratio=summary.get("ratio"),
                   bpp=summary.get("bpp"), psnr=summary.get("psnr"), quality=quality,
                   chunks_written=int(summary.get("chunks_written") or 0), **extra)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chunks_encoded"] = self.chunks_encoded
        for k in ("ratio", "psnr"):
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = None
        return d


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


@dataclass
class BatchReport:
    """Outcome of :func:`dmenet_geo.archive.run_batch`; ``ok`` when no scene failed."""

    out: str
    started: str
    seconds: float
    scenes: list[SceneResult]
    settings: dict[str, Any]
    catalog: str | None = None
    report_path: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    notes: list[str] = field(default_factory=list)

    def _of(self, status: str) -> list[SceneResult]:
        return [s for s in self.scenes if s.status == status]

    @property
    def done(self) -> list[SceneResult]:
        return self._of("done")

    @property
    def skipped(self) -> list[SceneResult]:
        return self._of("skipped")

    @property
    def failed(self) -> list[SceneResult]:
        return self._of("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    def totals(self) -> dict[str, Any]:
        done, archived = self.done, self.done + self.skipped
        bytes_in = sum(s.bytes_in for s in done)
        encoded = sum(s.chunks_encoded for s in done)
        secs = max(self.seconds, 1e-9)
        a_in, a_out = sum(s.bytes_in for s in archived), sum(s.bytes_out for s in archived)
        return {
            "scenes": len(self.scenes),
            "done": len(done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "bytes_in": bytes_in,
            "bytes_out": sum(s.bytes_out for s in done),
            "store_bytes": sum(s.store_bytes for s in done),
            "chunks_encoded": encoded,
            "chunks_reused": sum(s.chunks_reused for s in done),
            "throughput_mb_s": round(bytes_in / 1e6 / secs, 4),
            "chunks_per_s": round(encoded / secs, 3),
            "archive_bytes_in": a_in,
            "archive_bytes_out": a_out,
            "archive_ratio": round(a_in / a_out, 3) if a_out else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": redact(self.out),
            "ok": self.ok,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "scheduler": self.scheduler,
            "settings": self.settings,
            "totals": self.totals(),
            "catalog": self.catalog,
            "notes": self.notes,
            "scenes": [s.to_dict() for s in self.scenes],
        }

    def write(self, path: str) -> None:
        data = json.dumps(self.to_dict(), indent=2, allow_nan=False).encode()
        if not is_url(path):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_bytes_atomic(path, data)

    def __str__(self) -> str:
        t = self.totals()
        lines = [
            f"batch {redact(self.out)}: {t['scenes']} scenes: {t['done']} done, {t['skipped']} skipped "
            f"(already complete), {t['failed']} failed in {self.seconds:.1f} s",
        ]
        if t["done"]:
            ratio = t["bytes_in"] / t["bytes_out"] if t["bytes_out"] else math.inf
            lines.append(
                f"  this run: {_mb(t['bytes_in'])} -> {_mb(t['bytes_out'])} (ratio {ratio:.1f}), "
                f"{t['throughput_mb_s']:.3f} MB/s, {t['chunks_encoded']} chunks encoded "
                f"({t['chunks_per_s']:.2f}/s), {t['chunks_reused']} reused from an interrupted run")
        if t["archive_ratio"]:
            lines.append(f"  archive: {_mb(t['archive_bytes_in'])} -> {_mb(t['archive_bytes_out'])} "
                         f"(ratio {t['archive_ratio']:.1f})")
        width = max([len(s.name) for s in self.scenes] + [5])
        for s in self.scenes:
            if s.status == "failed":
                lines.append(f"  {s.name:<{width}}  FAILED   {s.error}")
                continue
            psnr = "n/a" if s.psnr is None or not math.isfinite(s.psnr) else f"{s.psnr:.2f} dB"
            ratio_s = "n/a" if s.ratio is None else f"{s.ratio:.1f}"
            lines.append(f"  {s.name:<{width}}  {s.status:<7}  ratio {ratio_s:>6}  PSNR {psnr:>9}  "
                         f"{s.seconds:6.1f} s")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.catalog:
            lines.append(f"  STAC catalog: {redact(self.catalog)}")
        if self.report_path:
            lines.append(f"  report: {redact(self.report_path)}")
        return "\n".join(lines)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
