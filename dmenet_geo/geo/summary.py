"""``CompressSummary``: what a compression run did (sizes, ratio, bpp, quality, sampled PSNR)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dmenet_geo.geo.footprint import Footprint
from dmenet_geo.geo.source import RasterSource

__all__ = ["CompressSummary", "directory_bytes"]


def directory_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


@dataclass(frozen=True)
class CompressSummary:
    """Result of :func:`dmenet_geo.compress_geotiff`.

    ``bytes_in``: uncompressed size of the selected bands of the whole raster; ``bytes_out``: the
    DMENet chunk bytes; ``ratio = bytes_in / bytes_out``; ``bpp``: bits per pixel of the raster
    (all bands together, ``8 * bytes_out / (height * width)``). ``psnr``: mean PSNR in dB over the
    sampled chunks (all chunks with ``target_psnr``), see :mod:`dmenet_geo.geo.quality`.
    """

    store: str
    source: str
    width: int
    height: int
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    dtype: str
    crs: str
    nodata: float | None
    chunk: int
    quality: float
    target_psnr: float | None
    quality_mean: float | None
    quality_min: float | None
    quality_max: float | None
    chunks_total: int
    chunks_written: int
    chunks_skipped_nodata: int
    chunks_outside_aoi: int
    bytes_in: int
    bytes_out: int
    ratio: float
    bpp: float
    psnr: float | None
    psnr_samples: int
    overview_factors: tuple[int, ...]
    overview_bytes: int
    footprint_area_fraction: float | None
    seconds: float
    store_bytes: int

    @classmethod
    def build(
        cls,
        *,
        store: str,
        source: RasterSource,
        chunk: int,
        quality: float,
        target_psnr: float | None,
        chunks_total: int,
        chunks_selected: int,
        written: dict[tuple[int, int], int],
        qualities: dict[tuple[int, int], float],
        psnrs: dict[tuple[int, int], float],
        skipped_nodata: int,
        overview_factors: tuple[int, ...],
        overview_bytes: int,
        footprint: Footprint | None,
        seconds: float,
    ) -> CompressSummary:
        out = sum(written.values())
        qs = list(qualities.values())
        ps = [p for p in psnrs.values() if not math.isnan(p)]
        finite = [p for p in ps if math.isfinite(p)]
        psnr = (sum(finite) / len(finite)) if finite else (math.inf if ps else None)
        crs = source.crs.to_string() if source.crs else ""
        return cls(
            store=store,
            source=source.path,
            width=source.width,
            height=source.height,
            bands=source.bands,
            band_names=source.band_names,
            dtype=source.dtype,
            crs=crs,
            nodata=source.nodata,
            chunk=chunk,
            quality=quality,
            target_psnr=target_psnr,
            quality_mean=round(sum(qs) / len(qs), 4) if qs else None,
            quality_min=min(qs) if qs else None,
            quality_max=max(qs) if qs else None,
            chunks_total=chunks_total,
            chunks_written=len(written),
            chunks_skipped_nodata=skipped_nodata,
            chunks_outside_aoi=chunks_total - chunks_selected,
            bytes_in=source.nbytes,
            bytes_out=out,
            ratio=round(source.nbytes / out, 3) if out else math.inf,
            bpp=round(8.0 * out / (source.width * source.height), 5),
            psnr=psnr,
            psnr_samples=len(ps),
            overview_factors=overview_factors,
            overview_bytes=overview_bytes,
            footprint_area_fraction=None if footprint is None else footprint.area_fraction,
            seconds=seconds,
            store_bytes=0,
        )

    def finished(self, seconds: float, store_bytes: int) -> CompressSummary:
        return replace(self, seconds=round(seconds, 3), store_bytes=store_bytes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (infinities become None)."""
        d = asdict(self)
        for k in ("ratio", "psnr"):
            d[k] = _finite_or_none(d[k])
        for k in ("bands", "band_names", "overview_factors"):
            d[k] = list(d[k])
        return d

    def store_metadata(self) -> dict[str, Any]:
        """The subset recorded in the store's ``dmenet_geo`` attribute (read by ``info``)."""
        d = self.to_dict()
        for k in ("store", "seconds", "store_bytes"):
            d.pop(k)
        d["source"] = os.path.basename(self.source)
        return d

    def __str__(self) -> str:
        q = (
            f"quality {self.quality:g}"
            if self.target_psnr is None
            else f"target PSNR {self.target_psnr:g} dB (quality {self.quality_min}..{self.quality_max}, "
            f"mean {self.quality_mean})"
        )
        psnr = "n/a" if self.psnr is None else f"{self.psnr:.2f} dB over {self.psnr_samples} chunks"
        lines = [
            f"{self.source} -> {self.store}",
            f"  {self.width}x{self.height}, bands {list(self.bands)} ({self.dtype}), {self.crs}, {q}",
            f"  chunks: {self.chunks_written} written, {self.chunks_skipped_nodata} all-nodata skipped, "
            f"{self.chunks_outside_aoi} outside the AOI (of {self.chunks_total})",
            f"  {self.bytes_in:,} -> {self.bytes_out:,} bytes: ratio {self.ratio:.1f}, {self.bpp:.4f} bpp, "
            f"PSNR {psnr}",
            f"  overviews {list(self.overview_factors)} ({self.overview_bytes:,} bytes); store "
            f"{self.store_bytes:,} bytes; {self.seconds:.1f} s",
        ]
        return "\n".join(lines)
