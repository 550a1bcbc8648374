"""``store_info``: what a store holds, read from its metadata alone (nothing is decoded)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmenet_geo.geo.backend import check_store
from dmenet_geo.geo.convention import georef_from_attrs
from dmenet_geo.geo.remote import is_url, tree_bytes
from dmenet_geo.geo.store import IMAGE, META_KEY, attrs_of, child_array, child_group, open_root, overview_path
from dmenet_geo.geo.summary import directory_bytes

__all__ = ["StoreInfo", "store_info"]


@dataclass(frozen=True)
class StoreInfo:
    """Georeferencing, size and coding parameters of a store."""

    store: str
    width: int
    height: int
    bands: tuple[int, ...]
    band_names: tuple[str, ...]
    dtype: str
    crs: str  # authority code, or WKT when there is none
    transform: tuple[float, float, float, float, float, float]
    bounds: tuple[float, float, float, float]
    nodata: float | None
    chunk: tuple[int, int]
    quality: float | None
    target_psnr: float | None
    quality_mean: float | None
    chunks_written: int | None
    chunks_total: int | None
    bytes_in: int | None
    bytes_out: int | None
    ratio: float | None
    bpp: float | None
    psnr: float | None
    overviews: tuple[tuple[int, int, int], ...]  # (level, factor, width) per level
    footprint_wkt: str | None
    footprint_geojson: dict[str, Any] | None
    store_bytes: int
    source: str | None
    model: str | None
    refine: int = 0  # latent refinement steps the encoder spent per chunk

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("bands", "band_names", "transform", "bounds", "chunk"):
            d[k] = list(d[k])
        d["overviews"] = [{"level": lv, "factor": f, "width": w} for lv, f, w in self.overviews]
        return d

    def __str__(self) -> str:
        if self.target_psnr is None and self.quality is not None:
            q = f"quality {self.quality:g}"
        else:
            q = f"target PSNR {self.target_psnr} dB (mean quality {self.quality_mean})"
        if self.refine:
            q += f", latents refined for {self.refine} steps"
        a, b, c, d, e, f = self.transform
        lines = [
            f"store      {self.store}",
            f"size       {self.width} x {self.height} pixels, {len(self.bands)} bands "
            f"{list(self.band_names)} ({self.dtype}), nodata {self.nodata}",
            f"crs        {self.crs}",
            f"transform  [{a!r}, {b!r}, {c!r}, {d!r}, {e!r}, {f!r}]",
            f"bounds     {tuple(round(v, 6) for v in self.bounds)}",
            f"chunks     {self.chunk[0]}x{self.chunk[1]}: {self.chunks_written} written of "
            f"{self.chunks_total}",
            f"coding     DMENet ({self.model}), {q}",
        ]
        if self.bytes_out:
            psnr = "n/a" if self.psnr is None else f"{self.psnr:.2f} dB (sampled)"
            lines.append(f"size       {self.bytes_in:,} -> {self.bytes_out:,} bytes, ratio {self.ratio}, "
                         f"{self.bpp} bpp, PSNR {psnr}")
        lines.append(f"store size {self.store_bytes:,} bytes on disk")
        if self.overviews:
            levels = ", ".join(f"overviews/{lv} ({fac}x)" for lv, fac, _ in self.overviews)
            lines.append(f"overviews  {levels}")
        if self.footprint_wkt:
            wkt = self.footprint_wkt
            lines.append(f"footprint  {wkt if len(wkt) < 100 else wkt[:97] + '...'}")
        return "\n".join(lines)


def store_info(store: str | os.PathLike[str]) -> StoreInfo:
    """Describe a store without decoding any chunk."""
    path = check_store(store)
    root = open_root(path)
    root_attrs = attrs_of(root)
    meta: dict[str, Any] = dict(root_attrs.get(META_KEY, {}))
    image = child_array(root, IMAGE)
    image_attrs = attrs_of(image)
    ref = georef_from_attrs(image_attrs, attrs_of(child_array(root, "spatial_ref")))
    code = image_attrs.get("proj:code")
    overviews = []
    for level, factor in enumerate(meta.get("overview_factors", []), start=1):
        group = child_group(root, overview_path(level))
        if group is not None:
            overviews.append((level, int(factor), int(child_array(group, IMAGE).shape[-1])))
    nodata = image_attrs.get("nodata")
    return StoreInfo(
        store=path if is_url(path) else os.path.abspath(path),
        width=ref.width,
        height=ref.height,
        bands=tuple(int(b) for b in np.asarray(child_array(root, "band")[:])),
        band_names=tuple(str(n) for n in np.asarray(child_array(root, "band_name")[:])),
        dtype=str(image.dtype),
        crs=str(code) if code else ref.crs.to_wkt(),
        transform=tuple(float(v) for v in tuple(ref.transform)[:6]),  # type: ignore[arg-type]
        bounds=ref.bounds,
        nodata=None if nodata is None else float(nodata),
        chunk=(int(image.chunks[1]), int(image.chunks[2])),
        quality=meta.get("quality"),
        target_psnr=meta.get("target_psnr"),
        quality_mean=meta.get("quality_mean"),
        chunks_written=meta.get("chunks_written"),
        chunks_total=meta.get("chunks_total"),
        bytes_in=meta.get("bytes_in"),
        bytes_out=meta.get("bytes_out"),
        ratio=meta.get("ratio"),
        bpp=meta.get("bpp"),
        psnr=meta.get("psnr"),
        overviews=tuple(overviews),
        footprint_wkt=root_attrs.get("footprint_wkt"),
        footprint_geojson=root_attrs.get("footprint"),
        store_bytes=tree_bytes(path) if is_url(path) else directory_bytes(Path(path)),
        source=meta.get("source"),
        model=meta.get("model"),
        refine=int((meta.get("codec") or {}).get("refine") or 0),
    )
