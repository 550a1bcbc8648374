"""Per-scene completion state: the marker ``<scene>.zarr/.dmenet-complete.json``.

A scene is done when, and only when, its marker exists and records the job's settings digest. The
marker is written last, after the store has been finalized (metadata consolidated, ``complete`` set),
as one atomic object (temporary file + ``os.replace`` locally, one PUT on S3): a store without it is
work in progress, whatever else it holds, and a re-run resumes it at chunk level (see
:func:`dmenet_geo.geo.write.compress_geotiff`'s ``resume``). The marker lives inside the store so that
deleting a scene is deleting one directory/prefix, and it carries what the report and the STAC item
need (summary, footprint, datetime, projection), so neither re-reads the stores. Zarr ignores it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dmenet_geo.geo.faults import checkpoint
from dmenet_geo.geo.remote import join, list_sizes, read_json, write_bytes_atomic

__all__ = ["MARKER", "MARKER_VERSION", "marker_path", "read_marker", "settings_digest", "stored_chunks",
           "write_marker"]

MARKER = ".dmenet-complete.json"
MARKER_VERSION = 1


def marker_path(store: str) -> str:
    return join(store, MARKER)


def read_marker(store: str) -> dict[str, Any] | None:
    """The scene's marker, or ``None`` while the scene is not done."""
    doc = read_json(marker_path(store))
    return doc if isinstance(doc, dict) and doc.get("marker_version") == MARKER_VERSION else None


def write_marker(store: str, doc: dict[str, Any]) -> None:
    """Declare the scene done (the store must be complete already)."""
    body = {"marker_version": MARKER_VERSION, **doc}
    write_bytes_atomic(marker_path(store), json.dumps(body, indent=1, sort_keys=True).encode())
    checkpoint("marker")


def settings_digest(settings: dict[str, Any], source: str, identity: dict[str, Any]) -> str:
    """What a marker must match for its scene to count as done in this job: the settings that decide
    the store, the source and the source's version (size, modification time / ETag)."""
    doc = {"settings": settings, "source": source, "identity": identity}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def stored_chunks(store: str) -> int:
    """How many image chunk objects the store holds now (what a resumed run starts from)."""
    return sum(1 for k, n in list_sizes(join(store, "image")).items() if k.startswith("c/") and n > 0
               and not k.endswith(".partial") and ".dmenet-tmp-" not in k)
