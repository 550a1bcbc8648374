"""Where a store is written: the resume key, in-place preparation and the final atomic rename.

``compress_geotiff`` (:mod:`dmenet_geo.geo.write`) writes either to a temporary sibling renamed onto
the destination when complete, or, when resuming, in place under a *resume key* that names
everything deciding the stored bytes; see the module docstring there for the rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from typing import Any

from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.remote import file_identity, list_sizes, normalize, remove_tree
from dmenet_geo.geo.source import RasterSource
from dmenet_geo.geo.store import META_KEY, read_root_attrs

__all__ = ["FORMAT_VERSION", "prepare_in_place", "remove_temp_files", "replace_store", "resume_key"]

FORMAT_VERSION = 1  # of the store layout written by compress_geotiff


def resume_key(
    source: RasterSource,
    selected: list[tuple[int, int]],
    factors: tuple[int, ...],
    chunk: int,
    quality: float,
    target_psnr: float | None,
    psnr_samples: int,
    serializer: str,
    codec_config: dict[str, Any],
) -> str:
    """A digest of everything that decides the stored bytes and the summary (see "Resuming")."""
    doc = {
        "format_version": FORMAT_VERSION,
        "source": normalize(source.path),
        "identity": file_identity(source.path),
        "bands": list(source.bands),
        "chunk": chunk,
        "selected": hashlib.sha256(json.dumps(sorted(selected)).encode()).hexdigest(),
        "overview_factors": list(factors),
        "quality": quality,
        "target_psnr": target_psnr,
        "psnr_samples": psnr_samples,
        "serializer": serializer,
        "codec": codec_config,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def prepare_in_place(dst: str, key: str, resume: bool, overwrite: bool) -> bool:
    """Make ``dst`` ready for an in-place write; True when an earlier run's store is continued."""
    attrs = read_root_attrs(dst)
    meta = attrs.get(META_KEY) if attrs else None
    meta = meta if isinstance(meta, dict) else None
    if overwrite:
        remove_tree(dst)
        return False
    if resume and meta is not None and meta.get("resume_key") == key:
        return True
    if resume and meta is not None and not meta.get("complete") and "resume_key" not in meta:
        remove_tree(dst)  # interrupted while its empty hierarchy was created: nothing to keep
        return False
    if not list_sizes(dst):  # nothing there, or an empty directory
        return False
    if resume and meta is not None and "resume_key" in meta:
        raise GeoError(f"{dst} was written with other settings or from another version of the source; "
                       "pass overwrite=True / --overwrite to start it again")
    raise GeoError(f"{dst} already exists (pass overwrite=True / --overwrite to replace it)")


def remove_temp_files(root: str) -> None:
    """Temporary files of writes killed half-way by an earlier run (zarr never reads them)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            if ".dmenet-tmp-" in name or name.endswith(".partial"):
                try:
                    os.unlink(os.path.join(dirpath, name))
                except OSError:
                    pass


def replace_store(partial: str, dst: str, overwrite: bool) -> None:
    """Move the finished store into place (replacing an old one only when asked)."""
    if os.path.exists(dst):
        if not overwrite:
            raise GeoError(f"{dst} appeared while compressing; the new store is not moved there")
        old = f"{dst}.old-{uuid.uuid4().hex[:12]}"
        os.rename(dst, old)
        os.rename(partial, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, dst)
