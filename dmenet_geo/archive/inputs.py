"""Which rasters a batch job compresses, and what each scene (and its store) is called.

An input may be:

* a raster file, local or ``s3://bucket/key`` (any raster rasterio reads; a missing file becomes a
  failed scene, reported like any other failure);
* a folder, local or an S3 prefix (``s3://bucket/prefix/``): its ``*.tif``/``*.tiff`` files (in
  sub-folders too with ``recursive``);
* a glob pattern, local or on S3 (``data/**/*.tif``, ``s3://bucket/2024-*/*.tif``);
* a manifest: ``@FILE``, or any ``*.txt``/``*.json`` file (local or on S3). Text: one path or URL per
  line, blank lines and ``#`` comments ignored. JSON: a list of paths/URLs, or of objects
  ``{"src": ..., "name": ...}`` (an explicit scene name), or ``{"inputs": [...]}``. Relative paths
  are relative to the manifest's folder; entries may themselves be folders, globs or manifests.

Scene names are the file name without its extension, reduced to ``[A-Za-z0-9._-]``; when several
inputs share a name, each gets ``-<8 hex digits of the SHA-1 of its path>`` appended, so the name
(and the store ``<out>/<name>.zarr``) is a pure function of the input list and a re-run finds the
stores of the previous run. An input matching nothing becomes a failed entry, not an error of the
whole job.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.remote import filesystem, is_url, join, normalize

__all__ = ["Scene", "resolve_inputs", "scene_name"]

RASTER_SUFFIXES = (".tif", ".tiff")
MANIFEST_SUFFIXES = (".txt", ".json", ".lst")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Scene:
    """One unit of work: a source raster and its store; ``error`` set for inputs that matched nothing."""

    name: str
    source: str
    store: str
    error: str | None = None


def scene_name(source: str) -> str:
    base = source.rstrip("/").rsplit("/", 1)[-1]
    stem = base
    for suffix in (*RASTER_SUFFIXES, ".jp2", ".img", ".vrt"):
        if base.lower().endswith(suffix):
            stem = base[: -len(suffix)]
            break
    return _clean(stem)


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"


def _is_raster_name(path: str) -> bool:
    return path.lower().endswith(RASTER_SUFFIXES)


def _read_text(path: str) -> str:
    if is_url(path):
        fs, p = filesystem(path)
        with fs.open(p, "rb") as f:
            return f.read().decode("utf-8")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _relative_to(entry: str, base: str) -> str:
    if is_url(entry) or os.path.isabs(entry):
        return entry
    if is_url(base):
        return join(base.rsplit("/", 1)[0], entry)
    return os.path.join(os.path.dirname(base), entry)


def _manifest(path: str) -> list[tuple[str, str | None]]:
    """``(input, explicit name or None)`` entries of a manifest."""
    try:
        text = _read_text(path)
    except OSError as exc:
        raise GeoError(f"{path}: cannot read the manifest ({exc})") from None
    entries: list[tuple[str, str | None]] = []
    if path.lower().endswith(".json"):
        try:
            doc: Any = json.loads(text)
        except ValueError as exc:
            raise GeoError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(doc, dict):
            doc = doc.get("inputs")
        if not isinstance(doc, list):
            raise GeoError(f"{path}: a JSON manifest is a list of inputs (or {{\"inputs\": [...]}})")
        for item in doc:
            if isinstance(item, str):
                entries.append((item, None))
            elif isinstance(item, dict) and isinstance(item.get("src"), str):
                name = item.get("name")
                entries.append((item["src"], str(name) if name else None))
            else:
                raise GeoError(f"{path}: manifest entries are strings or {{\"src\": ..., \"name\": ...}}")
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append((line, None))
    return [(_relative_to(e, path), n) for e, n in entries]


def _expand_url(url: str, recursive: bool) -> list[str] | None:
    """Rasters an S3 (fsspec) input names; ``None`` when it is a single object."""
    fs, p = filesystem(url)
    protocol = url.split("://", 1)[0]
    if _GLOB.search(p):
        return sorted(f"{protocol}://{m}" for m in fs.glob(p) if _is_raster_name(m))
    if url.endswith("/") or fs.isdir(p):
        found = fs.find(p) if recursive else fs.ls(p, detail=False)
        return sorted(f"{protocol}://{m}" for m in found if _is_raster_name(m))
    return None


def _expand_local(path: str, recursive: bool) -> list[str] | None:
    if _GLOB.search(path):
        return sorted(os.path.abspath(m) for m in glob.glob(path, recursive=True)
                      if os.path.isfile(m) and _is_raster_name(m))
    if os.path.isdir(path):
        pattern = os.path.join(path, "**", "*") if recursive else os.path.join(path, "*")
        return sorted(os.path.abspath(m) for m in glob.glob(pattern, recursive=recursive)
                      if os.path.isfile(m) and _is_raster_name(m))
    return None


def _expand(items: Iterable[tuple[str, str | None]], recursive: bool, depth: int = 0
            ) -> list[tuple[str, str | None, str | None]]:
    """``(source, explicit name, error)`` for every input (manifests and patterns expanded)."""
    out: list[tuple[str, str | None, str | None]] = []
    for entry, name in items:
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("@") or (entry.lower().endswith(MANIFEST_SUFFIXES) and not _GLOB.search(entry)):
            path = entry[1:] if entry.startswith("@") else entry
            if depth > 4:
                raise GeoError(f"{path}: manifests nested too deeply")
            out.extend(_expand(_manifest(path), recursive, depth + 1))
            continue
        expanded = _expand_url(entry, recursive) if is_url(entry) else _expand_local(entry, recursive)
        if expanded is None:
            out.append((normalize(entry), name, None))
        elif not expanded:
            out.append((entry, None, "matched no .tif/.tiff files"))
        else:
            out.extend((m, None, None) for m in expanded)
    return out


def resolve_inputs(inputs: Sequence[str], out: str, recursive: bool = False) -> list[Scene]:
    """The scenes of a job writing into ``out`` (duplicates removed, input order kept)."""
    seen: set[str] = set()
    items: list[tuple[str, str | None, str | None]] = []
    for source, name, error in _expand([(i, None) for i in inputs], recursive):
        if source in seen:
            continue
        seen.add(source)
        items.append((source, name, error))
    names = [_clean(name) if name else scene_name(src) for src, name, _ in items]
    counts: dict[str, int] = {}
    for (_, explicit, error), n in zip(items, names, strict=True):
        if error is None and explicit is None:
            counts[n] = counts.get(n, 0) + 1
    scenes = []
    for (src, explicit, error), n in zip(items, names, strict=True):
        if error is not None:
            scenes.append(Scene(name=src, source=src, store="", error=error))
            continue
        if explicit is None and counts[n] > 1:
            n = f"{n}-{hashlib.sha1(src.encode()).hexdigest()[:8]}"
        scenes.append(Scene(name=n, source=src, store=join(out, f"{n}.zarr")))
    taken: dict[str, str] = {}
    for s in scenes:
        if s.error is None:
            if s.name in taken:
                raise GeoError(f"scene name {s.name!r} is used by {taken[s.name]} and {s.source}")
            taken[s.name] = s.source
    return scenes
