"""The xarray backend ``engine="dmenet"``: opens a dmenet_geo store lazily (nothing is decoded until
pixels are indexed; a window decodes only the chunks it touches).

Differences from plain ``xr.open_zarr``: the codecs are registered explicitly, ``mask_and_scale``
defaults to False (the image keeps its source dtype; nodata stays in ``_FillValue``/``nodata``
instead of becoming NaN in float), ``decode_coords="all"`` makes ``spatial_ref`` a coordinate (so
rioxarray finds the CRS), and ``overview=k`` opens ``overviews/<k>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.remote import exists, is_url, join, read_json, storage_options
from dmenet_geo.geo.store import META_KEY, overview_path

__all__ = ["DMENetBackendEntrypoint", "check_store"]


def _root_attrs(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("attributes") if isinstance(meta, dict) else None


def check_store(store: str | os.PathLike[str]) -> str:
    """The store's path (or URL, e.g. ``s3://bucket/scene.zarr``), after checking it is a complete
    dmenet_geo store (one-line GeoError if not)."""
    if is_url(os.fspath(store)):
        url = os.fspath(store).rstrip("/")
        meta = read_json(join(url, "zarr.json"))
        if meta is None and not exists(url):
            raise GeoError(f"{url}: no such store")
        return _check_attrs(url, meta.get("attributes") if isinstance(meta, dict) else None)
    path = Path(os.fspath(store))
    if not path.exists():
        raise GeoError(f"{path}: no such store")
    return _check_attrs(os.fspath(path), _root_attrs(path))


def _check_attrs(path: str, attrs: dict[str, Any] | None) -> str:
    if attrs is None:
        raise GeoError(f"{path}: not a Zarr v3 store (no readable zarr.json)")
    meta = attrs.get(META_KEY)
    if not isinstance(meta, dict):
        raise GeoError(f"{path}: a Zarr store, but not one written by dmenet_geo")
    if not meta.get("complete", False):
        raise GeoError(f"{path}: the store is incomplete (its compression did not finish)")
    return path


class DMENetBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="dmenet")`` for stores written by ``compress_geotiff``."""

    description = "DMENet-compressed raster stores (Zarr v3) written by dmenet_geo"
    url = "https://github.com/dmenet-geo/dmenet-geo"
    open_dataset_parameters = (
        "filename_or_obj", "drop_variables", "overview", "mask_and_scale", "decode_coords"
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        overview: int | None = None,
        mask_and_scale: bool = False,
        decode_coords: bool | str = "all",
    ) -> xr.Dataset:
        from xarray.backends.zarr import ZarrBackendEntrypoint

        from dmenet_geo.codec import register_codecs

        path = check_store(filename_or_obj)
        register_codecs()
        group = None
        if overview:
            group = overview_path(int(overview))
            if not exists(join(path, group, "zarr.json")):
                raise GeoError(f"{path}: the store has no overview level {overview}")
        return ZarrBackendEntrypoint().open_dataset(
            path,
            storage_options=storage_options(path),  # None for local paths
            group=group,
            mask_and_scale=mask_and_scale,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            consolidated=True,
            zarr_format=3,
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        try:
            path = Path(os.fspath(filename_or_obj))
        except TypeError:
            return False
        attrs = _root_attrs(path) if path.is_dir() else None
        return bool(attrs and META_KEY in attrs)
