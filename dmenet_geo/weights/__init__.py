"""Shipped weights (``NAME.pt``), their sidecars (``NAME.json``) and model cards (``NAME.md``).

A sidecar may name its weights file instead (``"weights_file"``, a ``.pt`` file in this folder):
a model kept under a second name, ``wide`` for instance, then ships no second copy of the bytes.

:func:`read_sidecar` is torch-free, so codecs can validate a configuration without loading a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["WEIGHTS_DIR", "read_sidecar", "shipped_names", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent

_CACHE: dict[Path, tuple[int, dict[str, Any]]] = {}


def read_sidecar(path: Path) -> dict[str, Any]:
    """The parsed JSON sidecar, re-read only when the file changes (codecs ask once per batch)."""
    mtime = os.stat(path).st_mtime_ns
    cached = _CACHE.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, json.loads(path.read_text()))
        _CACHE[path] = cached
    return cached[1]


def weights_path(sidecar: Path) -> Path:
    """The weights file of the model ``sidecar`` describes: the file its ``"weights_file"`` names in
    the same folder, else ``NAME.pt`` beside it."""
    named = read_sidecar(sidecar).get("weights_file")
    if named is None:
        return sidecar.with_suffix(".pt")
    if not isinstance(named, str) or Path(named).name != named or not named.endswith(".pt"):
        raise ValueError(f"{sidecar}: weights_file must name a .pt file in the same folder, got {named!r}")
    return sidecar.parent / named


def shipped_names() -> list[str]:
    """The names of the shipped models: each ``NAME.json`` whose weights file is present."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json") if weights_path(p).exists())
