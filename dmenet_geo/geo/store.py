"""The Zarr v3 layout of a compressed raster, and raw chunk I/O through zarr's store API.

::

    <store>/                 group: proj:/spatial: attributes, dmenet_geo metadata, footprint
      image                  (band, y, x) DMENet serializer, chunks (bands, chunk, chunk)
      x, y                   pixel-centre coordinates;  band (source band index), band_name
      spatial_ref            0-d CF grid mapping (crs_wkt, spatial_ref, GeoTransform)
      overviews/<k>/         the same variables at 1/factor resolution, image with Blosc-zstd

Chunks of ``image`` are written as ready-made bytes (``DMENetCodec.encode`` output for the full
chunk shape, which is what the ``dmenet`` serializer stores), so encoding can be batched outside
zarr's codec pipeline; zarr then reads them through the registered serializer.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from dmenet_geo.geo.convention import (
    GeoReference,
    convention_attrs,
    coordinate_attrs,
    pixel_centers,
    spatial_ref_attrs,
)
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.faults import checkpoint
from dmenet_geo.geo.remote import is_url, join, list_sizes, read_json, write_bytes_atomic, zarr_store
from dmenet_geo.geo.source import RasterSource

__all__ = [
    "IMAGE",
    "META_KEY",
    "RawChunkIO",
    "attrs_of",
    "child_array",
    "child_group",
    "create_store",
    "finalize_store",
    "open_root",
    "overview_path",
    "read_root_attrs",
    "serializer_config",
    "update_root_attrs",
    "write_overview_region",
]

IMAGE = "image"
META_KEY = "dmenet_geo"
OVERVIEW_CODEC = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def overview_path(level: int) -> str:
    return f"overviews/{level}"


def open_root(path: str | os.PathLike[str], mode: str = "r") -> zarr.Group:
    """The root group of a store (a local path or an fsspec URL such as ``s3://bucket/scene.zarr``)."""
    return zarr.open_group(zarr_store(os.fspath(path), read_only=mode == "r"), mode=mode)  # type: ignore[arg-type]


def read_root_attrs(path: str) -> dict[str, Any] | None:
    """The root group's attributes read straight from its ``zarr.json`` (``None`` if unreadable)."""
    meta = read_json(join(path, "zarr.json"))
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else None


def child_array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]`` as an array (a clear error if the store's layout is not ours)."""
    node = group.get(name)
    if not isinstance(node, zarr.Array):
        raise GeoError(f"{group.store_path}: no array {name!r} (not a dmenet_geo store?)")
    return node


def child_group(group: zarr.Group, name: str) -> zarr.Group | None:
    node = group.get(name)
    return node if isinstance(node, zarr.Group) else None


def attrs_of(node: zarr.Array | zarr.Group) -> dict[str, Any]:
    """A node's attributes as a plain dict (JSON values, typed loosely)."""
    return dict(node.attrs.asdict())


def serializer_config(array: zarr.Array) -> dict[str, Any]:
    """The configuration of an array's serializer (its first codec) from its metadata."""
    codecs: list[dict[str, Any]] = array.metadata.to_dict()["codecs"]  # type: ignore[assignment]
    return dict(codecs[0].get("configuration") or {})


def serializer_codec(array: zarr.Array) -> Any:
    """A numcodecs-style codec (``decode_batch``) for the array's serializer: DMENet or JPEG 2000."""
    from dmenet_geo.codec import DMENetCodec
    from dmenet_geo.codec.classical import JPEG2K_ID, Jpeg2kCodec

    codecs: list[dict[str, Any]] = array.metadata.to_dict()["codecs"]  # type: ignore[assignment]
    config = serializer_config(array)
    if codecs[0].get("name") == JPEG2K_ID:
        return Jpeg2kCodec(**config)
    return DMENetCodec(**config)


def _fill(nodata: float | None) -> float:
    return 0 if nodata is None else nodata


def _image_attrs(source: RasterSource, ref: GeoReference) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "grid_mapping": "spatial_ref",
        "coordinates": "band_name spatial_ref",
        "long_name": list(source.band_names),
        "band_descriptions": list(source.descriptions),
        "source_dtype": source.dtype,
    }
    if source.nodata is not None and np.isfinite(source.nodata):
        nodata = int(source.nodata) if source.dtype != "float32" else float(source.nodata)
        attrs["_FillValue"] = nodata
        attrs["nodata"] = nodata
    attrs.update(convention_attrs(ref.crs, ref.transform, ref.height, ref.width))
    return attrs


def _write_group(
    group: zarr.Group, source: RasterSource, ref: GeoReference, chunk: int, image_kwargs: dict[str, Any]
) -> zarr.Array:
    """Create the image array (no data yet) and write the small coordinate variables."""
    group.attrs.update(convention_attrs(ref.crs, ref.transform, ref.height, ref.width))
    image = group.create_array(
        IMAGE,
        shape=(source.count, ref.height, ref.width),
        chunks=(source.count, min(chunk, ref.height), min(chunk, ref.width)),
        dtype=source.dtype,
        fill_value=_fill(source.nodata),
        dimension_names=["band", "y", "x"],
        attributes=_image_attrs(source, ref),
        **image_kwargs,
    )
    x, y = pixel_centers(ref.transform, ref.height, ref.width)
    xattrs, yattrs = coordinate_attrs(ref.crs)
    for name, values, attrs in (("x", x, xattrs), ("y", y, yattrs)):
        arr = group.create_array(name, shape=values.shape, dtype="float64", dimension_names=[name],
                                 attributes=attrs)
        arr[:] = values
    band = group.create_array("band", shape=(source.count,), dtype="int64", dimension_names=["band"],
                              attributes={"long_name": "source band index (1-based)"})
    band[:] = np.asarray(source.bands, dtype=np.int64)
    names = np.asarray(source.band_names, dtype=str)
    band_name = group.create_array("band_name", shape=(source.count,), dtype=str, dimension_names=["band"],
                                   attributes={"long_name": "band name"})
    band_name[:] = names
    sref = group.create_array("spatial_ref", shape=(), dtype="int64", dimension_names=[],
                              attributes=spatial_ref_attrs(ref.crs, ref.transform))
    sref[...] = 0
    return image


def create_store(
    path: str,
    source: RasterSource,
    chunk: int,
    codec_config: dict[str, Any],
    factors: tuple[int, ...],
    meta: dict[str, Any],
    serializer: str = "dmenet",
) -> None:
    """Create the whole hierarchy (metadata, coordinates, empty image and overview arrays).

    ``serializer``: the image's array-to-bytes codec (``dmenet``, or ``dmenet_geo.jpeg2k`` for the
    classical baseline) and ``codec_config`` its configuration."""
    root = zarr.open_group(zarr_store(path), mode="w-", zarr_format=3)
    root.attrs.update({META_KEY: meta})
    _write_group(root, source, source.georef, chunk,
                 {"serializer": {"name": serializer, "configuration": codec_config}, "compressors": None})
    for level, factor in enumerate(factors, start=1):
        group = root.create_group(overview_path(level))
        group.attrs.update({META_KEY: {"overview_factor": factor, "resampling": "average"}})
        _write_group(group, source, source.georef.scaled(factor), chunk, {"compressors": [OVERVIEW_CODEC]})


def write_overview_region(path: str, level: int, row: int, col: int, data: np.ndarray) -> None:
    """Write one block's overview cells (rows/cols in overview pixels)."""
    arr = zarr.open_array(zarr_store(path), path=f"{overview_path(level)}/{IMAGE}", mode="r+")
    arr[:, row : row + data.shape[1], col : col + data.shape[2]] = data


def finalize_store(path: str, attrs: dict[str, Any]) -> None:
    """Add the final root attributes and consolidate the metadata (one read opens the store)."""
    root = zarr.open_group(zarr_store(path), mode="r+")
    root.attrs.update(attrs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(zarr_store(path))


def update_root_attrs(path: str, attrs: dict[str, Any]) -> None:
    """Update root attributes (no consolidation): used to mark a freshly created store resumable."""
    zarr.open_group(zarr_store(path), mode="r+").attrs.update(attrs)


class RawChunkIO:
    """Put and get encoded chunk bytes of one array, bypassing its codec pipeline."""

    def __init__(self, store: str | os.PathLike[str], array: str = IMAGE, mode: str = "r+") -> None:
        self.store = os.fspath(store)
        self.array = array
        self.mode = mode
        self._arr: zarr.Array | None = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for process-based schedulers
        return {"store": self.store, "array": self.array, "mode": self.mode, "_arr": None}

    @property
    def zarray(self) -> zarr.Array:
        if self._arr is None:
            self._arr = zarr.open_array(zarr_store(self.store, read_only=self.mode == "r"), path=self.array,
                                        mode=self.mode)
        return self._arr

    def key(self, coords: tuple[int, ...]) -> str:
        return self.zarray.metadata.encode_chunk_key(coords)

    def put(self, coords: tuple[int, ...], data: bytes) -> None:
        """Write one chunk object atomically (local: temporary file + ``os.replace``; object storage:
        one PUT), so a chunk that exists is always whole: resumed runs rely on that."""
        if is_url(self.store):
            buf = default_buffer_prototype().buffer.from_bytes(data)
            sync((self.zarray.store_path / self.key(coords)).set(buf))
        else:
            if not os.path.exists(os.path.join(self.store, "zarr.json")):
                # the run failed and its partial store was removed while this task was still running:
                # writing now would recreate a stray directory
                raise GeoError(f"{self.store} was removed; chunk {coords} not written")
            write_bytes_atomic(os.path.join(self.store, self.array, self.key(coords)), data)
        checkpoint("chunk")

    def existing(self, coords: list[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
        """``{coords: size}`` of those of ``coords`` whose chunk is already stored (one listing)."""
        wanted = {self.key(c): c for c in coords}
        found = list_sizes(join(self.store, self.array))
        return {wanted[k]: n for k, n in found.items() if k in wanted and n > 0}

    def get(self, coords: tuple[int, ...]) -> bytes | None:
        buf = sync((self.zarray.store_path / self.key(coords)).get(default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()
