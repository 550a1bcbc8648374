"""Lazy reads of a store: ``open_dataset`` and ``clip`` (a polygon read that decodes only the chunks
the polygon intersects)."""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from dmenet_geo.geo.aoi import GeometryLike, load_geometry, reproject_geometry
from dmenet_geo.geo.convention import convention_attrs, georef_from_attrs
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.store import IMAGE

__all__ = ["clip", "dataset_crs", "dataset_transform", "open_dataset"]

StoreOrDataset = str | os.PathLike[str] | xr.Dataset


def open_dataset(
    store: str | os.PathLike[str],
    chunks: Any = "native",
    *,
    overview: int | None = None,
    mask_and_scale: bool = False,
) -> xr.Dataset:
    """Open a store lazily as an ``xarray.Dataset`` with variable ``image`` (band, y, x).

    ``chunks="native"`` (default): Dask arrays with the store's chunks, so a window decodes only the
    chunks it touches; ``None``: no Dask (lazily indexed arrays, also decoding only what is indexed);
    anything else goes to xarray (beware: chunks larger than the store's make a small read decode a
    whole Dask block). ``overview=k`` opens the k-th overview level. ``mask_and_scale=True`` turns
    nodata into NaN (float) as CF readers do; the default keeps the source dtype.
    """
    import rioxarray  # noqa: F401  - makes the ``.rio`` accessor available on the result

    from dmenet_geo.geo.backend import DMENetBackendEntrypoint

    return xr.open_dataset(
        os.fspath(store),
        engine=DMENetBackendEntrypoint,
        chunks={} if isinstance(chunks, str) and chunks == "native" else chunks,
        overview=overview,
        mask_and_scale=mask_and_scale,
    )


def dataset_crs(ds: xr.Dataset | xr.DataArray) -> CRS:
    """The CRS recorded in the store (CF ``spatial_ref`` or the ``proj:`` attributes)."""
    var = ds[IMAGE] if isinstance(ds, xr.Dataset) else ds
    sref = ds.coords["spatial_ref"].attrs if "spatial_ref" in ds.coords else {}
    if "spatial_ref" not in ds.coords and isinstance(ds, xr.Dataset) and "spatial_ref" in ds:
        sref = ds["spatial_ref"].attrs
    attrs = {**(ds.attrs if isinstance(ds, xr.Dataset) else {}), **var.attrs}
    try:
        return georef_from_attrs({**attrs, "spatial:shape": [1, 1]}, sref).crs
    except GeoError:
        raise GeoError("the dataset carries no CRS (not opened from a dmenet_geo store?)") from None


def dataset_transform(ds: xr.Dataset | xr.DataArray) -> Affine:
    """The pixel-corner transform of the dataset as it is now (derived from its x/y coordinates, so
    it stays right after ``isel``/``sel``); one-pixel axes fall back to the stored resolution."""
    var = ds[IMAGE] if isinstance(ds, xr.Dataset) else ds
    x, y = np.asarray(ds["x"].values, dtype=np.float64), np.asarray(ds["y"].values, dtype=np.float64)
    attrs = {**(ds.attrs if isinstance(ds, xr.Dataset) else {}), **var.attrs}
    stored = attrs.get("spatial:transform")
    if len(x) > 1:
        a = (x[-1] - x[0]) / (len(x) - 1)
    elif stored:
        a = float(stored[0])
    else:
        raise GeoError("cannot tell the pixel width of a one-column dataset")
    if len(y) > 1:
        e = (y[-1] - y[0]) / (len(y) - 1)
    elif stored:
        e = float(stored[4])
    else:
        raise GeoError("cannot tell the pixel height of a one-row dataset")
    if stored and math.isclose(a, stored[0], rel_tol=1e-9) and math.isclose(e, stored[4], rel_tol=1e-9):
        a, e = float(stored[0]), float(stored[4])  # the exact stored values, not float-noisy differences
    return Affine(a, 0.0, float(x[0]) - a / 2, 0.0, e, float(y[0]) - e / 2)


def _window(
    transform: Affine, bounds: tuple[float, float, float, float], height: int, width: int
) -> tuple[int, int, int, int]:
    xmin, ymin, xmax, ymax = bounds
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    r0, r1 = max(0, math.floor(min(rows))), min(height, math.ceil(max(rows)))
    c0, c1 = max(0, math.floor(min(cols))), min(width, math.ceil(max(cols)))
    return r0, r1, c0, c1


def clip(
    ds_or_store: StoreOrDataset,
    polygon: GeometryLike,
    crs: Any = "EPSG:4326",
    *,
    all_touched: bool = False,
) -> xr.Dataset:
    """The part of the raster inside ``polygon`` (given in ``crs``, reprojected with pyproj).

    The result is cut to the polygon's bounding window and stays lazy; pixels outside the polygon are
    set to nodata (0 when the store has none); chunks of the window that the polygon does not
    intersect are never decoded (they become constant blocks).
    """
    import dask.array as da
    from rasterio.features import geometry_mask

    ds = open_dataset(ds_or_store) if not isinstance(ds_or_store, xr.Dataset) else ds_or_store
    if IMAGE not in ds:
        raise GeoError(f"the dataset has no {IMAGE!r} variable")
    native = dataset_crs(ds)
    geom = reproject_geometry(load_geometry(polygon), crs, native)
    transform = dataset_transform(ds)
    height, width = ds.sizes["y"], ds.sizes["x"]
    r0, r1, c0, c1 = _window(transform, geom.bounds, height, width)
    if r0 >= r1 or c0 >= c1:
        raise GeoError("the polygon does not intersect the raster")
    sub = ds.isel(y=slice(r0, r1), x=slice(c0, c1))
    sub_t = transform @ Affine.translation(c0, r0)
    image = sub[IMAGE]
    nodata = image.attrs.get("_FillValue", image.attrs.get("nodata", image.encoding.get("_FillValue")))
    fill = 0 if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else nodata
    if image.dtype.kind == "f" and nodata is None:
        fill = np.nan

    def outside(r: int, c: int, h: int, w: int) -> np.ndarray:
        return geometry_mask([geom], out_shape=(h, w), transform=sub_t @ Affine.translation(c, r),
                             all_touched=all_touched)

    data = image.data
    if isinstance(data, da.Array):
        rows, cols = data.chunks[1], data.chunks[2]
        roff, coff = np.cumsum((0,) + rows), np.cumsum((0,) + cols)
        import shapely

        shapely.prepare(geom)
        blocks = []
        for bi, h in enumerate(rows):
            line = []
            for bj, w in enumerate(cols):
                r, c = int(roff[bi]), int(coff[bj])
                box = shapely.box(*_bounds(sub_t, r, c, h, w))
                block = data.blocks[:, bi, bj]
                if not geom.intersects(box):
                    line.append(da.full(block.shape, fill, dtype=data.dtype, chunks=block.shape))
                elif geom.contains(box):
                    line.append(block)
                else:
                    mask_fn = functools.partial(_masked, outside=outside(r, c, h, w), fill=fill)
                    line.append(block.map_blocks(mask_fn, dtype=data.dtype))
            blocks.append(line)
        masked = da.block(blocks)
    else:
        values = np.asarray(data)
        masked = np.where(outside(0, 0, r1 - r0, c1 - c0)[None], fill, values).astype(values.dtype)
    out = sub.assign({IMAGE: image.copy(data=masked)})
    new_attrs = convention_attrs(native, sub_t, r1 - r0, c1 - c0)
    out[IMAGE].attrs.update({k: v for k, v in new_attrs.items() if k.startswith("spatial:")})
    out.attrs.update({k: v for k, v in new_attrs.items() if k.startswith("spatial:")})
    return out


def _bounds(t: Affine, r: int, c: int, h: int, w: int) -> tuple[float, float, float, float]:
    xs, ys = zip(*(t @ (c + dc, r + dr) for dc in (0, w) for dr in (0, h)), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _masked(block: np.ndarray, outside: np.ndarray, fill: Any) -> np.ndarray:
    return np.where(outside[None], fill, block).astype(block.dtype, copy=False)
