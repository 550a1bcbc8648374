"""Put the tensors of fine-tuning runs back onto the weights they were trained on.

    python pipelines/apply_trained.py dmenet_geo/weights/default.pt runs/full \\
        training/finetune/decoder.pt training/finetune/encoder.pt

Each PART is a fine-tuning run's ``OUT/trained.pt`` (``train_encoder.py``, ``train_decoder.py``):
the trained side alone, small enough to commit. ``--scale-levels L`` also rebuilds the latent's
entropy tables on L scales, geometric from 0.11 to ``--scale-max`` (CompressAI's table has 64 from
0.11 to 256): a finer table codes each latent with a scale nearer its own, for fewer bytes from the
same symbols (the decoded pixels do not change); no network weight moves. The result,
``DEST/weights.pt`` with its sidecar ``DEST/weights.json``, serves as ``--model`` for
``evaluate.py``, as ``--init-weights`` for a further run, or as the file ``install_weights.py``
ships. Parts must name tensors the base has, with
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

from compressai.models.base import get_scale_table  # noqa: E402

from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.zoo import read_state  # noqa: E402
from pipelines.trainer.runtime import atomic_save, fp32_state, inherited_sidecar, misfits  # noqa: E402

SCALE_MIN = 0.11  # the Gaussian conditional's lower bound on scales, and CompressAI's first entry
ENTROPY_TABLES = "gaussian_conditional."


@dataclass(frozen=True)
class ScaleTable:
    """The latent's scale table: ``levels`` scales, geometric from :data:`SCALE_MIN` to ``top``."""

    levels: int
    top: float

    def __post_init__(self) -> None:
        if not 2 <= self.levels <= 4096 or not SCALE_MIN < self.top <= 4096:
            raise SystemExit(f"scale table of {self.levels} levels up to {self.top}: levels must be "
                             f"2..4096 and the top in ({SCALE_MIN}, 4096]")

    def scales(self) -> torch.Tensor:
        return get_scale_table(SCALE_MIN, self.top, self.levels)

    def rebuild(self, model: DMENet) -> dict[str, torch.Tensor]:
        """The entropy-coder tensors of ``model`` with this table (``model`` is updated in place)."""
        model.update(scale_table=self.scales(), force=True)
        return {k: v for k, v in fp32_state(model).items() if k.startswith(ENTROPY_TABLES)}


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_trained` wrote: the weights' SHA-256 and the tensors each part replaced."""

    weights: Path
    sha256: str
    replaced: dict[str, int]


def apply_trained(base: Path, dest: Path, parts: list[Path], scales: ScaleTable | None = None) -> Applied:
    """Write ``dest/weights.pt``: ``base`` with every tensor of ``parts`` in place of its own, and
    with ``scales`` the latent's entropy tables rebuilt on that scale table."""
    sidecar = base.with_suffix(".json")
    if not base.is_file() or not sidecar.is_file():
        raise SystemExit(f"base weights need {base} and its sidecar {sidecar}")
    state, base_sha = read_state(base)
    seen: dict[str, Path] = {}
    applied: list[dict[str, object]] = []
    replaced: dict[str, int] = {}
    for part in parts:
        tensors, sha = read_state(part)
        if not isinstance(tensors, dict) or not tensors:
            raise SystemExit(f"{part}: not a dict of tensors")
        wrong = misfits(tensors, state)
        if wrong:
            raise SystemExit(f"{part} does not fit {base}: {'; '.join(wrong[:3])}")
        twice = [k for k in tensors if k in seen]
        if twice:
            raise SystemExit(f"{twice[0]} is in both {seen[twice[0]]} and {part}")
        seen.update(dict.fromkeys(tensors, part))
        state.update(tensors)
        applied.append({"file": str(part), "sha256": sha, "tensors": len(tensors)})
        replaced[str(part)] = len(tensors)
    if not parts and scales is None:
        raise SystemExit("nothing to apply: give trained.pt parts, --scale-levels, or both")
    meta = json.loads(sidecar.read_text())
    model = DMENet(DMENetConfig.from_dict(meta["config"]))
    model.load_state_dict(state)  # loads, strictly
    if scales is not None:
        state.update(scales.rebuild(model))
    dest.mkdir(parents=True, exist_ok=True)
    weights = dest / "weights.pt"
    atomic_save(state, weights)
    out = inherited_sidecar(meta)
    out["applied"] = {"base": str(base), "base_sha256": base_sha, "parts": applied}
    if scales is not None:
        out["applied"]["scale_table"] = {"levels": scales.levels, "min": SCALE_MIN, "max": scales.top}
    (dest / "weights.json").write_text(json.dumps(out, indent=2))
    return Applied(weights, hashlib.sha256(weights.read_bytes()).hexdigest(), replaced)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path, help="weights .pt (with its .json sidecar) the parts were trained on")
    p.add_argument("dest", type=Path, help="folder for weights.pt and weights.json")
    p.add_argument("parts", type=Path, nargs="*", help="trained.pt files of fine-tuning runs")
    p.add_argument("--scale-levels", type=int, default=None, metavar="L",
                   help="rebuild the latent's entropy tables on L scales (CompressAI's: 64)")
    p.add_argument("--scale-max", type=float, default=64.0, metavar="S",
                   help="largest scale of that table (default 64; larger scales are coded with it)")
    args = p.parse_args(argv)
    scales = None if args.scale_levels is None else ScaleTable(args.scale_levels, args.scale_max)
    done = apply_trained(args.base, args.dest, args.parts, scales)
    for part, count in done.replaced.items():
        print(f"{part}: {count} tensors")
    print(f"{done.weights}: SHA-256 {done.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
