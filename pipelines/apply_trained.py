"""Put the tensors of fine-tuning runs back onto the weights they were trained on.

    python pipelines/apply_trained.py dmenet_geo/weights/default.pt runs/full \\
        training/finetune/decoder.pt training/finetune/encoder.pt

Each PART is a fine-tuning run's ``OUT/trained.pt`` (``train_encoder.py``, ``train_decoder.py``):
the trained side alone, small enough to commit. The result, ``DEST/weights.pt`` with its sidecar
``DEST/weights.json``, serves as ``--model`` for ``evaluate.py``, as ``--init-weights`` for a
further run, or as the file ``install_weights.py`` ships. Parts must name tensors the base has, with
its shapes and dtypes, and no tensor twice; the sidecar records the base's SHA-256 and each part's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from pipelines.trainer.runtime import atomic_save  # noqa: E402


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_trained` wrote: the weights' SHA-256 and the tensors each part replaced."""

    weights: Path
    sha256: str
    replaced: dict[str, int]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_trained(base: Path, dest: Path, parts: list[Path]) -> Applied:
    """Write ``dest/weights.pt``: ``base`` with every tensor of ``parts`` in place of its own."""
    sidecar = base.with_suffix(".json")
    if not base.is_file() or not sidecar.is_file():
        raise SystemExit(f"base weights need {base} and its sidecar {sidecar}")
    state = torch.load(base, map_location="cpu", weights_only=True)
    seen: dict[str, Path] = {}
    replaced: dict[str, int] = {}
    for part in parts:
        tensors = torch.load(part, map_location="cpu", weights_only=True)
        if not isinstance(tensors, dict) or not tensors:
            raise SystemExit(f"{part}: not a dict of tensors")
        for key, value in tensors.items():
            if key not in state:
                raise SystemExit(f"{part}: {key} is not a tensor of {base}")
            if value.shape != state[key].shape or value.dtype != state[key].dtype:
                raise SystemExit(f"{part}: {key} is {tuple(value.shape)} {value.dtype}, "
                                 f"{base} has {tuple(state[key].shape)} {state[key].dtype}")
            if key in seen:
                raise SystemExit(f"{key} is in both {seen[key]} and {part}")
            seen[key] = part
        state.update(tensors)
        replaced[str(part)] = len(tensors)
    meta = json.loads(sidecar.read_text())
    DMENet(DMENetConfig.from_dict(meta["config"])).load_state_dict(state)  # loads, strictly
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / "weights.pt"
    atomic_save(state, weights)
    out = {k: v for k, v in meta.items() if k not in ("sha256", "superseded_by", "weights_file")}
    out["applied"] = {"base": str(base), "base_sha256": _sha256(base),
                      "parts": [{"file": str(p), "sha256": _sha256(p), "tensors": replaced[str(p)]}
                                for p in parts]}
    (dest / "weights.json").write_text(json.dumps(out, indent=2))
    return Applied(weights, _sha256(weights), replaced)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path, help="weights .pt (with its .json sidecar) the parts were trained on")
    p.add_argument("dest", type=Path, help="folder for weights.pt and weights.json")
    p.add_argument("parts", type=Path, nargs="+", help="trained.pt files of fine-tuning runs")
    args = p.parse_args(argv)
    done = apply_trained(args.base, args.dest, args.parts)
    for part, count in done.replaced.items():
        print(f"{part}: {count} tensors")
    print(f"{done.weights}: SHA-256 {done.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
