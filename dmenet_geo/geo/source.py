"""The GeoTIFF side: inspect a raster once, then read windows of it (each read opens the file anew,
so reads are safe from any thread or process and nothing holds the whole scene)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from dmenet_geo.geo.convention import GeoReference, check_transform
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.remote import gdal_options

__all__ = ["RasterSource", "SUPPORTED_DTYPES", "inspect_raster", "read_tags", "read_window"]

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")
_COLOR_NAMES = {"red", "green", "blue", "gray", "alpha", "undefined"}


@dataclass(frozen=True)
class RasterSource:
    """What :func:`inspect_raster` learned about a GeoTIFF (and which bands were selected)."""

    path: str
    width: int
    height: int
    dtype: str
    crs: CRS
    transform: Affine
    nodata: float | None
    bands: tuple[int, ...]  # 1-based source band indexes, in output order
    band_names: tuple[str, ...]
    descriptions: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.bands)

    @property
    def georef(self) -> GeoReference:
        return GeoReference(self.crs, self.transform, self.height, self.width)

    @property
    def nbytes(self) -> int:
        """Uncompressed size of the selected bands."""
        return self.count * self.height * self.width * np.dtype(self.dtype).itemsize


@contextlib.contextmanager
def _open(path: str) -> Iterator[rasterio.io.DatasetReader]:
    """``rasterio.open`` for reading, with the GDAL options an ``s3://`` path on a custom endpoint needs
    (kept for the whole ``with`` block: GDAL reads them on every request, not only at open)."""
    options = gdal_options(path)
    with contextlib.ExitStack() as stack:
        if options:
            stack.enter_context(rasterio.Env(**options))
        yield stack.enter_context(rasterio.open(path))


def _band_name(index: int, description: str | None, colorinterp: str, used: set[str]) -> str:
    name = (description or "").strip()
    if not name and colorinterp in _COLOR_NAMES - {"undefined", "gray"}:
        name = colorinterp
    if not name or name in used:
        name = f"band_{index}"
    used.add(name)
    return name


def inspect_raster(path: str | os.PathLike[str], bands: Sequence[int] | None = None) -> RasterSource:
    """Open ``path`` once for its metadata; check it is a georeferenced, supported raster.

    ``bands`` are 1-based indexes (default: all). Raises :class:`GeoError` with a one-line message.
    """
    spath = os.fspath(path)
    if not Path(spath).exists() and "://" not in spath:
        raise GeoError(f"{spath}: no such file")
    try:
        with _open(spath) as src:
            count, width, height = src.count, src.width, src.height
            dtypes = set(src.dtypes)
            crs, transform, nodata = src.crs, src.transform, src.nodata
            descriptions = tuple(d or "" for d in src.descriptions)
            colors = tuple(c.name for c in src.colorinterp)
    except RasterioIOError as exc:
        raise GeoError(f"{spath}: not a readable raster ({str(exc).splitlines()[0]})") from None
    if crs is None:
        raise GeoError(f"{spath}: the raster has no CRS; only georeferenced rasters can be compressed")
    if transform == Affine.identity():
        raise GeoError(f"{spath}: the raster has no geotransform")
    check_transform(transform)
    if len(dtypes) != 1:
        raise GeoError(f"{spath}: bands have different dtypes {sorted(dtypes)}")
    dtype = dtypes.pop()
    if dtype not in SUPPORTED_DTYPES:
        raise GeoError(f"{spath}: dtype {dtype} is not supported (supported: {', '.join(SUPPORTED_DTYPES)})")
    selected = tuple(range(1, count + 1)) if bands is None else tuple(int(b) for b in bands)
    if not selected:
        raise GeoError("no bands selected")
    bad = [b for b in selected if not 1 <= b <= count]
    if bad:
        raise GeoError(f"{spath}: band {bad[0]} does not exist (the raster has bands 1..{count})")
    if len(set(selected)) != len(selected):
        raise GeoError(f"band list {list(selected)} repeats a band")
    if len(selected) > 16:
        raise GeoError(f"{len(selected)} bands selected; DMENet chunks hold at most 16 bands")
    if nodata is not None and np.isnan(nodata) and dtype != "float32":
        nodata = None
    used: set[str] = set()
    names = tuple(_band_name(b, descriptions[b - 1], colors[b - 1], used) for b in selected)
    return RasterSource(
        path=spath,
        width=width,
        height=height,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=None if nodata is None else float(nodata),
        bands=selected,
        band_names=names,
        descriptions=tuple(descriptions[b - 1] for b in selected),
    )


def read_window(source: RasterSource, row: int, col: int, height: int, width: int) -> np.ndarray:
    """Read ``(bands, height, width)`` pixels at (row, col) of the selected bands."""
    try:
        with _open(source.path) as src:
            return src.read(list(source.bands), window=Window(col, row, width, height))
    except RasterioIOError as exc:
        raise GeoError(f"{source.path}: read failed at row {row}, col {col}: {exc}") from None


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The dataset-level metadata tags of a raster (e.g. ``TIFFTAG_DATETIME``)."""
    spath = os.fspath(path)
    try:
        with _open(spath) as src:
            return dict(src.tags())
    except RasterioIOError as exc:
        raise GeoError(f"{spath}: not a readable raster ({str(exc).splitlines()[0]})") from None
