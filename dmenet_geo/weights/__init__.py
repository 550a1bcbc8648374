"""Shipped weights (``NAME.pt``), their sidecars (``NAME.json``) and model cards (``NAME.md``).

:func:`read_sidecar` is torch-free, so codecs can validate a configuration without loading a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["WEIGHTS_DIR", "read_sidecar", "shipped_names"]

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


def shipped_names() -> list[str]:
    """The names of the shipped models: each ``NAME.json`` with its ``NAME.pt`` beside it."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json") if p.with_suffix(".pt").exists())
