"""``decompress_to_geotiff``: a store (or one of its overviews) back to a tiled GeoTIFF with the same
georeferencing, nodata and band descriptions; read and written block by block, atomically."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from dmenet_geo.geo.backend import check_store
from dmenet_geo.geo.convention import georef_from_attrs
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.store import IMAGE, attrs_of, child_array, child_group, open_root, overview_path

__all__ = ["ExportSummary", "decompress_to_geotiff"]

_COLORS = ("red", "green", "blue", "alpha")


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`decompress_to_geotiff` wrote."""

    path: str
    width: int
    height: int
    bands: int
    dtype: str
    crs: str
    nodata: float | None
    bytes_written: int

    def __str__(self) -> str:
        return (f"{self.path}: {self.width}x{self.height}, {self.bands} bands {self.dtype}, {self.crs}, "
                f"nodata {self.nodata}, {self.bytes_written:,} bytes")


def decompress_to_geotiff(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overview: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    compress: str = "deflate",
) -> ExportSummary:
    """Decode ``store`` (or ``overviews/<overview>``) into the GeoTIFF ``out``."""
    from tqdm import tqdm

    from dmenet_geo.codec import register_codecs

    path = check_store(store)
    dst = os.path.abspath(os.fspath(out))
    if os.path.exists(dst) and not overwrite:
        raise GeoError(f"{dst} already exists (use --overwrite to replace it)")
    if not os.path.isdir(os.path.dirname(dst)):
        raise GeoError(f"{os.path.dirname(dst)}: no such directory")
    register_codecs()
    root = open_root(path)
    group = root if not overview else child_group(root, overview_path(int(overview)))
    if group is None:
        raise GeoError(f"{path}: the store has no overview level {overview}")
    image = child_array(group, IMAGE)
    image_attrs = attrs_of(image)
    ref = georef_from_attrs(image_attrs, attrs_of(child_array(group, "spatial_ref")))
    nodata = image_attrs.get("nodata")
    bands, height, width = image.shape
    descriptions = list(image_attrs.get("band_descriptions", []))
    names = [str(n) for n in np.asarray(child_array(group, "band_name")[:])]
    step_r = image.chunks[1]
    step_c = image.chunks[2] * max(1, 4096 // image.chunks[2])  # bounded block width
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": str(image.dtype),
        "crs": ref.crs, "transform": ref.transform, "nodata": nodata, "tiled": True,
        "blockxsize": 256, "blockysize": 256, "compress": compress, "BIGTIFF": "IF_SAFER",
    }
    if width < 256 or height < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    partial = f"{dst}.partial-{uuid.uuid4().hex[:12]}.tif"
    try:
        with rasterio.open(partial, "w", **profile) as tif:
            for i in range(bands):
                desc = descriptions[i] if i < len(descriptions) and descriptions[i] else ""
                if desc:
                    tif.set_band_description(i + 1, desc)
                elif not names[i].startswith("band_") and names[i] not in _COLORS:
                    tif.set_band_description(i + 1, names[i])
            if any(n in _COLORS for n in names):
                tif.colorinterp = [ColorInterp[n] if n in _COLORS else ColorInterp.undefined for n in names]
            steps = [(r, c) for r in range(0, height, step_r) for c in range(0, width, step_c)]
            for r, c in tqdm(steps, unit="block", desc="decompress", disable=not progress):
                block = np.asarray(image[:, r : r + step_r, c : c + step_c])
                tif.write(block, window=Window(c, r, block.shape[2], block.shape[1]))
        if os.path.exists(dst):
            os.remove(dst)
        os.replace(partial, dst)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    code = image_attrs.get("proj:code") or ref.crs.to_string()
    return ExportSummary(dst, width, height, bands, str(image.dtype), str(code),
                         None if nodata is None else float(nodata), os.path.getsize(dst))
