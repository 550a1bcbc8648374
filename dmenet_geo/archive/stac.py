"""A STAC catalog of the archive: one Item per done scene, its Zarr store as the data asset.

Layout (next to the stores)::

    <out>/catalog.json
    <out>/items/<scene>.json        Item: footprint (EPSG:4326), datetime, properties, projection
    <out>/<scene>.zarr/             the asset (href relative: ../<scene>.zarr)

Item contents

* ``geometry``: the store's valid-data footprint (GeoJSON, EPSG:4326, as the store records it) and
  its ``bbox``; ``null`` for a scene without any valid pixel.
* ``datetime``: the source's ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``, taken as UTC; note that
  many tools write the processing time there, not the acquisition time). Without one, ``datetime``
  is ``null`` and the documented fallback is the interval ``start_datetime`` = 1970-01-01T00:00:00Z
  (unknown start) .. ``end_datetime`` = the source file's last-modification time (the data existed by
  then); ``dmenet:datetime_source`` says which rule applied.
* properties ``dmenet:ratio``, ``dmenet:quality`` (or ``dmenet:target_psnr`` and the mean quality),
  ``dmenet:psnr`` (dB, mean over the sampled chunks), ``dmenet:bpp``, ``dmenet:bytes_in``,
  ``dmenet:bytes_out``, ``dmenet:model``; ``created`` (when the scene was finished).
* the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``, ``proj:transform``,
  ``proj:bbox`` in the native CRS).
* asset ``data``: the store, media type ``application/vnd+zarr``, roles ``["data"]``.

Validation (:func:`validate_catalog`): pystac bundles the STAC 1.1 core and GeoJSON schemas, so every
Catalog and Item is validated against them offline. Extension schemas (projection v2.0.0) are fetched
from stac-extensions.github.io when the network allows; offline the projection fields are checked
against the types the extension defines (:func:`check_projection_fields`) and the schema is reported
as not fetched instead of failing the whole validation.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from typing import Any

from dmenet_geo.geo.remote import filesystem, is_url, join

__all__ = [
    "ZARR_MEDIA_TYPE",
    "build_catalog",
    "check_projection_fields",
    "item_info",
    "save_catalog",
    "stac_io",
    "validate_catalog",
]

ZARR_MEDIA_TYPE = "application/vnd+zarr"
EPOCH = "1970-01-01T00:00:00Z"


def _tiff_datetime(tags: dict[str, str]) -> str | None:
    text = (tags.get("TIFFTAG_DATETIME") or "").strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            value = _dt.datetime.strptime(text, fmt).replace(tzinfo=_dt.UTC)
        except ValueError:
            continue
        return value.isoformat().replace("+00:00", "Z")
    return None


def _modified(identity: dict[str, Any]) -> str | None:
    if identity.get("mtime_ns"):
        value = _dt.datetime.fromtimestamp(identity["mtime_ns"] / 1e9, tz=_dt.UTC)
        return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    text = identity.get("mtime")
    if text:
        try:
            value = _dt.datetime.fromisoformat(str(text))
        except ValueError:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.astimezone(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return None


def item_info(source: str, store: str, identity: dict[str, Any]) -> dict[str, Any]:
    """What the Item of a finished scene needs, read on the worker from the source's tags and the
    store's metadata (kept in the completion marker)."""
    import shapely.geometry

    from dmenet_geo.geo import store_info
    from dmenet_geo.geo.source import read_tags

    info = store_info(store)
    when = _tiff_datetime(read_tags(source))
    out: dict[str, Any] = {"datetime": when, "datetime_source": "TIFFTAG_DATETIME" if when else None}
    if when is None:
        out["start_datetime"] = EPOCH
        out["end_datetime"] = _modified(identity) or _dt.datetime.now(_dt.UTC).replace(
            microsecond=0).isoformat().replace("+00:00", "Z")
        out["datetime_source"] = "unknown: interval up to the source file's last modification"
    geom = info.footprint_geojson
    out["geometry"] = geom
    out["bbox"] = list(shapely.geometry.shape(geom).bounds) if geom else None
    code = info.crs if info.crs.upper().startswith("EPSG:") else None
    out["proj"] = {
        "code": code,
        "wkt2": None if code else info.crs,
        "shape": [info.height, info.width],
        "transform": list(info.transform),
        "bbox": list(info.bounds),
    }
    return out


def build_catalog(
    out: str,
    scenes: Sequence[tuple[str, dict[str, Any]]],
    *,
    projection: bool = True,
    catalog_id: str = "dmenet-archive",
) -> Any:
    """A pystac Catalog of ``(scene name, completion marker)`` pairs, hrefs set under ``out``."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    catalog = pystac.Catalog(
        id=catalog_id,
        description="Scenes compressed with DMENet (learned image compression) into Zarr v3 stores, "
                    "one store per scene, written by dmenet-geo batch.",
        title="DMENet archive",
    )
    for name, marker in sorted(scenes):
        item_doc = marker.get("item") or {}
        summary = marker.get("summary") or {}
        when = item_doc.get("datetime")
        props: dict[str, Any] = {
            "dmenet:ratio": summary.get("ratio"),
            "dmenet:quality": summary.get("quality") if summary.get("target_psnr") is None
            else summary.get("quality_mean"),
            "dmenet:psnr": summary.get("psnr"),
            "dmenet:bpp": summary.get("bpp"),
            "dmenet:bytes_in": summary.get("bytes_in"),
            "dmenet:bytes_out": summary.get("bytes_out"),
            "dmenet:model": marker.get("settings", {}).get("model"),
            "dmenet:datetime_source": item_doc.get("datetime_source"),
        }
        if summary.get("target_psnr") is not None:
            props["dmenet:target_psnr"] = summary["target_psnr"]
        if marker.get("completed"):
            props["created"] = marker["completed"]
        if when is None:
            props["start_datetime"] = item_doc.get("start_datetime", EPOCH)
            props["end_datetime"] = item_doc.get("end_datetime", EPOCH)
        item = pystac.Item(
            id=name,
            geometry=item_doc.get("geometry"),
            bbox=item_doc.get("bbox"),
            datetime=None if when is None else _dt.datetime.fromisoformat(when.replace("Z", "+00:00")),
            properties={k: v for k, v in props.items() if v is not None},
        )
        item.add_asset("data", pystac.Asset(
            href=join(out, f"{name}.zarr"),
            media_type=ZARR_MEDIA_TYPE,
            roles=["data"],
            title="DMENet-compressed Zarr v3 store (open with dmenet_geo.open_dataset)",
        ))
        proj = item_doc.get("proj")
        if projection and proj:
            ext = ProjectionExtension.ext(item, add_if_missing=True)
            ext.apply(code=proj.get("code"), wkt2=proj.get("wkt2"), shape=proj.get("shape"),
                      transform=proj.get("transform"), bbox=proj.get("bbox"))
        catalog.add_item(item)
    _set_hrefs(catalog, out)
    return catalog


def _set_hrefs(catalog: Any, out: str) -> None:
    from pystac.layout import CustomLayoutStrategy

    strategy = CustomLayoutStrategy(item_func=lambda item, parent_dir: join(out, "items", f"{item.id}.json"))
    catalog.normalize_hrefs(out if is_url(out) else os.path.abspath(out), strategy=strategy)
    catalog.make_all_asset_hrefs_relative()


def stac_io() -> Any:
    """pystac I/O that reads and writes object-storage URLs (``s3://``) through fsspec, everything
    else through pystac's default."""
    from pystac.stac_io import DefaultStacIO

    def _fsspec(href: str) -> bool:
        return is_url(href) and not href.startswith(("http://", "https://"))

    class FsspecStacIO(DefaultStacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            if _fsspec(str(source)):
                fs, p = filesystem(str(source))
                with fs.open(p, "rb") as f:
                    return str(f.read().decode("utf-8"))
            return str(super().read_text(source, *args, **kwargs))

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            if _fsspec(str(dest)):
                fs, p = filesystem(str(dest))
                fs.pipe_file(p, txt.encode("utf-8"))
                return
            super().write_text(dest, txt, *args, **kwargs)

    return FsspecStacIO()


def save_catalog(catalog: Any) -> str:
    """Write the catalog and its items (self-contained: relative links); returns catalog.json's href."""
    import pystac

    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=stac_io())
    return str(catalog.get_self_href())


def validate_catalog(catalog: Any) -> list[str]:
    """``catalog.validate_all()`` against every schema that can be had: the bundled core and GeoJSON
    schemas always, extension schemas when they can be fetched. Returns the extension schema URIs
    that could not be fetched (offline), i.e. were not validated; raises ``STACValidationError`` on
    an invalid object."""
    import pystac
    import pystac.validation
    from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

    skipped: list[str] = []

    class OfflineTolerantValidator(JsonSchemaSTACValidator):
        def validate_extension(self, stac_dict: dict[str, Any], stac_object_type: Any, stac_version: str,
                               extension_id: str, href: str | None = None) -> str | None:
            try:
                self._get_schema(extension_id)
            except GetSchemaError:
                if extension_id not in skipped:
                    skipped.append(extension_id)
                if "/projection/" in extension_id:
                    problems = check_projection_fields(stac_dict.get("properties", {}))
                    if problems:
                        raise pystac.STACValidationError(
                            f"{stac_dict.get('id')}: projection fields: {'; '.join(problems)}"
                        ) from None
                return None
            return super().validate_extension(stac_dict, stac_object_type, stac_version, extension_id, href)

    previous = pystac.validation.RegisteredValidator._validator
    pystac.validation.set_validator(OfflineTolerantValidator())
    try:
        catalog.validate_all()
    finally:
        pystac.validation.RegisteredValidator._validator = previous
    return skipped


def _numbers(value: Any, lengths: tuple[int, ...], integers: bool = False) -> bool:
    kinds = (int,) if integers else (int, float)
    return (
        isinstance(value, list)
        and len(value) in lengths
        and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)
    )


def check_projection_fields(props: dict[str, Any]) -> list[str]:
    """What is wrong with an Item's ``proj:`` properties, by the field types of the projection
    extension v2.0.0 (the offline stand-in for its JSON schema); empty when they are fine."""
    problems = []
    if not any(k.startswith("proj:") for k in props):
        problems.append("no proj: field")
    for key in ("proj:code", "proj:wkt2"):
        if key in props and not (props[key] is None or isinstance(props[key], str)):
            problems.append(f"{key} must be a string or null")
    code = props.get("proj:code")
    if isinstance(code, str) and (":" not in code or not all(code.split(":", 1))):
        problems.append(f"proj:code {code!r} is not AUTHORITY:CODE")
    projjson = props.get("proj:projjson")
    if projjson is not None and not isinstance(projjson, dict):
        problems.append("proj:projjson must be an object or null")
    if "proj:shape" in props and not (
        _numbers(props["proj:shape"], (2,), integers=True) and min(props["proj:shape"]) > 0
    ):
        problems.append("proj:shape must be two positive integers [rows, columns]")
    if "proj:transform" in props and not _numbers(props["proj:transform"], (6, 9)):
        problems.append("proj:transform must be 6 or 9 numbers")
    if "proj:bbox" in props and not _numbers(props["proj:bbox"], (4, 6)):
        problems.append("proj:bbox must be 4 or 6 numbers")
    return problems
