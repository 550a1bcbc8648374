"""Named weights shipped with the package, checked by SHA-256 before they are loaded.

Each model ``NAME`` is two files in ``dmenet_geo/weights``: ``NAME.pt`` (an fp32 state dict with the
entropy coder's tables) and ``NAME.json`` (its architecture config, SHA-256 and provenance); a
sidecar whose ``"weights_file"`` names another model's ``.pt`` shares that file. A model card
``NAME.md`` sits beside them. Weights are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.weights import WEIGHTS_DIR, read_sidecar, shipped_names, weights_path

__all__ = ["ModelInfo", "WeightsError", "available_models", "model_info", "load_model", "get_model"]


class WeightsError(ValueError):
    """Missing, unknown or corrupted weights."""


@dataclass(frozen=True)
class ModelInfo:
    """A named model: where its weights are, what they must hash to, how to build it."""

    name: str
    path: Path
    sha256: str
    config: DMENetConfig
    provenance: dict[str, Any] = field(default_factory=dict)


def available_models() -> list[str]:
    return shipped_names()


def _info_from_sidecar(json_path: Path, name: str, path: Path) -> ModelInfo:
    meta = read_sidecar(json_path)
    return ModelInfo(
        name=name,
        path=path,
        sha256=str(meta.get("sha256", "")),
        config=DMENetConfig.from_dict(meta["config"]),
        provenance={k: v for k, v in meta.items() if k not in ("config", "sha256")},
    )


def model_info(name: str | Path = "default") -> ModelInfo:
    """Info for a shipped model name, or for a ``weights.pt`` path with its ``.json`` sidecar."""
    if isinstance(name, Path) or str(name).endswith(".pt"):
        path = Path(name)
        sidecar = path.with_suffix(".json")
        if not sidecar.exists():
            raise WeightsError(f"no config sidecar {sidecar} next to {path}")
        return _info_from_sidecar(sidecar, path.stem, path)
    sidecar = WEIGHTS_DIR / f"{name}.json"
    if not sidecar.exists():
        raise WeightsError(f"unknown model {name!r}; available: {', '.join(available_models()) or 'none'}")
    try:
        path = weights_path(sidecar)
    except ValueError as exc:
        raise WeightsError(str(exc)) from None
    return _info_from_sidecar(sidecar, str(name), path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(name: str | Path = "default", device: str | torch.device = "cpu") -> DMENet:
    """Build the model, check its weights' SHA-256 (when recorded), load them, set eval mode."""
    info = model_info(name)
    if not info.path.exists():
        raise WeightsError(f"weights file missing: {info.path}")
    actual = file_sha256(info.path)
    if info.sha256 and actual != info.sha256:
        raise WeightsError(f"weights {info.path.name} have SHA-256 {actual}, expected {info.sha256}")
    state = torch.load(info.path, map_location="cpu", weights_only=True)
    model = DMENet(info.config)
    model.load_state_dict(state)
    model.weights_sha256 = actual
    if model.gaussian_conditional._offset.numel() == 0:
        model.update(force=True)
    return model.to(device).eval()


_CACHE: dict[tuple[str, str], DMENet] = {}
_LOCK = threading.Lock()


def get_model(name: str = "default", device: str | torch.device = "cpu") -> DMENet:
    """A shared, cached eval-mode instance (for codecs that decode many chunks).

    The cache is keyed on the name, the device and the SHA-256 the sidecar currently records, so
    weights replaced on disk are picked up instead of being used under a new identity.
    """
    key = (str(name), str(torch.device(device)))
    expected = model_info(name).sha256
    with _LOCK:
        model = _CACHE.get(key)
        if model is None or getattr(model, "weights_sha256", None) != expected:
            model = load_model(name, device)
            for p in model.parameters():
                p.requires_grad_(False)
            _CACHE[key] = model
        return model
