"""Named weights shipped with the package, checked by SHA-256 before they are loaded.

Each model ``NAME`` is two files in ``dmenet_geo/weights``: ``NAME.pt`` (an fp32 state dict with the
entropy coder's tables) and ``NAME.json`` (its architecture config, SHA-256 and provenance); a
sidecar whose ``"weights_file"`` names another model's ``.pt`` shares that file. A model card
``NAME.md`` sits beside them. Weights are read with ``torch.load(weights_only=True)``.

A sidecar with a ``"delta"`` entry ships only the tensors that differ from another shipped model,
its base, or that the base lacks: ``{"base": NAME, "base_sha256": ..., "state_sha256": ...}``
(``pipelines/delta_weights.py`` writes them). The model is the base's state with these tensors put
in, checked against ``state_sha256`` (:func:`state_sha256`) before it is used. Its ``"sha256"``
stays the SHA-256 of the full file it was made from, the identity chunk headers and stores record.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.weights import WEIGHTS_DIR, read_sidecar, shipped_names, weights_path

__all__ = [
    "Delta",
    "ModelInfo",
    "WeightsError",
    "available_models",
    "model_info",
    "load_state",
    "read_state",
    "weights_sha256",
    "state_sha256",
    "load_model",
    "get_model",
]


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
    delta: Delta | None = None


@dataclass(frozen=True)
class Delta:
    """A model shipped as the tensors that differ from ``base`` (a shipped model name)."""

    base: str
    base_sha256: str
    state_sha256: str

    @classmethod
    def from_dict(cls, raw: object) -> Delta:
        keys = ("base", "base_sha256", "state_sha256")
        values = [raw.get(k) for k in keys] if isinstance(raw, dict) and set(raw) == set(keys) else []
        if not values or not all(isinstance(v, str) for v in values):
            raise WeightsError(f"a delta entry needs exactly the strings {', '.join(keys)}; got {raw!r}")
        base, base_sha, state_sha = (str(v) for v in values)
        if Path(base).name != base:
            raise WeightsError(f"a delta's base must be a shipped model name, got {base!r}")
        return cls(base, base_sha, state_sha)


def available_models() -> list[str]:
    return shipped_names()


def _info_from_sidecar(json_path: Path, name: str, path: Path) -> ModelInfo:
    meta = read_sidecar(json_path)
    return ModelInfo(
        name=name,
        path=path,
        sha256=str(meta.get("sha256", "")),
        config=DMENetConfig.from_dict(meta["config"]),
        provenance={k: v for k, v in meta.items() if k not in ("config", "sha256", "delta")},
        delta=Delta.from_dict(meta["delta"]) if "delta" in meta else None,
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


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's contents: each entry's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load_file(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a weights file and the SHA-256 of the same bytes (the file is read once)."""
    data = path.read_bytes()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state, hashlib.sha256(data).hexdigest()


def _delta_info(path: Path) -> ModelInfo | None:
    """The model info of a weights path whose sidecar records a delta, else None."""
    sidecar = path.with_suffix(".json")
    return model_info(path) if sidecar.is_file() and "delta" in read_sidecar(sidecar) else None


def load_state(info: ModelInfo, _depth: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """The checked state dict of a model and the SHA-256 that identifies it (see the module doc)."""
    if not info.path.exists():
        raise WeightsError(f"weights file missing: {info.path}")
    if info.delta is None:
        state, actual = _load_file(info.path)
        if info.sha256 and actual != info.sha256:
            raise WeightsError(f"weights {info.path.name} have SHA-256 {actual}, expected {info.sha256}")
        return state, actual
    if _depth >= 8:
        raise WeightsError(f"{info.name}: more than 8 deltas on deltas")
    base = model_info(info.delta.base)
    state, base_sha = load_state(base, _depth + 1)
    if base_sha != info.delta.base_sha256:
        raise WeightsError(
            f"{info.name} is a delta on {base.name} with SHA-256 {info.delta.base_sha256}, found {base_sha}"
        )
    state.update(torch.load(info.path, map_location="cpu", weights_only=True))  # changed or added
    if state_sha256(state) != info.delta.state_sha256:
        raise WeightsError(f"{info.name}: the base with {info.path.name} does not give the recorded state")
    return state, info.sha256


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a weights file and its SHA-256, for tools given a path. A shipped model kept as
    a delta (its sidecar has ``"delta"``) comes back whole and checked, with the identity it records."""
    info = _delta_info(path)
    return _load_file(path) if info is None else load_state(info)


def weights_sha256(path: Path) -> str:
    """The SHA-256 that identifies a weights file: the recorded one for a delta, else the file's."""
    info = _delta_info(path)
    return file_sha256(path) if info is None else info.sha256


def load_model(name: str | Path = "default", device: str | torch.device = "cpu") -> DMENet:
    """Build the model, check its weights' SHA-256 (when recorded), load them, set eval mode."""
    info = model_info(name)
    state, identity = load_state(info)
    model = DMENet(info.config)
    model.load_state_dict(state)
    model.weights_sha256 = identity
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
