"""Install a training run's weights into the package as a named model.

    python pipelines/install_weights.py runs/default/weights.pt default

Copies ``weights.pt`` to ``dmenet_geo/weights/NAME.pt`` and writes ``NAME.json`` (the run's config and
provenance from ``weights.json`` plus the file's SHA-256, which :func:`dmenet_geo.load_model` checks).
Weights already installed as NAME with another SHA-256 are kept as ``NAME-<first 8 hex digits>``
(weights, sidecar and model card): stores written with them name that SHA-256, and the codec finds
the earlier weights by it, so they keep decoding; names that shared NAME's file (``"weights_file"``
in their sidecars) move to the kept copy, and so do models shipped as deltas on NAME
(``pipelines/delta_weights.py``). ``--drop-previous`` replaces them instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "dmenet_geo" / "weights"


def keep_previous(name: str, new_sha: str, weights_dir: Path = WEIGHTS_DIR) -> str | None:
    """Keep the installed NAME (weights, sidecar, card) as ``NAME-<sha8>`` when its SHA-256 differs
    from ``new_sha``; returns the name it was kept under. Sidecars that share NAME's weights file
    (``"weights_file"``) are pointed at the kept copy; a NAME that itself shares another model's
    file is kept as a sidecar naming that file, without a copy."""
    sidecar = weights_dir / f"{name}.json"
    if not sidecar.exists():
        return None
    meta = json.loads(sidecar.read_text())
    own = f"{name}.pt"
    shared = meta.get("weights_file")
    if not (weights_dir / (shared or own)).exists():
        return None
    old_sha = str(meta.get("sha256", ""))
    if not old_sha or old_sha == new_sha:
        return None
    kept = f"{name}-{old_sha[:8]}"
    if shared is None:
        shutil.copyfile(weights_dir / own, weights_dir / f"{kept}.pt")
    for other in sorted(weights_dir.glob("*.json")):
        other_meta = json.loads(other.read_text())
        moved = shared is None and other_meta.get("weights_file") == own
        if moved:
            other_meta["weights_file"] = f"{kept}.pt"
        delta = other_meta.get("delta")
        if isinstance(delta, dict) and delta.get("base") == name:  # a delta on the weights kept
            delta["base"] = kept
            moved = True
        if moved:
            other.write_text(json.dumps(other_meta, indent=2) + "\n")
    meta["superseded_by"] = name
    (weights_dir / f"{kept}.json").write_text(json.dumps(meta, indent=2) + "\n")
    if sidecar.with_suffix(".md").exists():
        shutil.copyfile(sidecar.with_suffix(".md"), weights_dir / f"{kept}.md")
    return kept


def install(src: Path, name: str, extra: dict[str, object] | None = None, keep: bool = True) -> str:
    """Copy the weights, record their SHA-256 in the sidecar, and return it."""
    meta = json.loads(src.with_suffix(".json").read_text())
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    if not keep:
        built_on = [m.stem for m in sorted(WEIGHTS_DIR.glob("*.json"))
                    if (json.loads(m.read_text()).get("delta") or {}).get("base") == name]
        if built_on:
            raise SystemExit(f"{', '.join(built_on)} are shipped as deltas on {name}: it cannot be dropped")
    if keep:
        kept = keep_previous(name, sha, WEIGHTS_DIR)
        if kept:
            print(f"previous {name} kept as {kept}", file=sys.stderr)
    shutil.copyfile(src, WEIGHTS_DIR / f"{name}.pt")
    meta["sha256"] = sha
    for stale in ("superseded_by", "weights_file", "delta"):  # inherited from the weights a run started from
        meta.pop(stale, None)
    meta.update(extra or {})
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return str(meta["sha256"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="weights.pt of a training run (with weights.json beside it)")
    p.add_argument("name", help="model name, e.g. default")
    p.add_argument("--hardware", default=None, help="recorded in the sidecar, e.g. '2-core x86_64 CPU'")
    p.add_argument("--drop-previous", action="store_true",
                   help="replace NAME without keeping the earlier weights (their stores stop decoding)")
    args = p.parse_args(argv)
    extra = {"hardware": args.hardware} if args.hardware else None
    print(install(args.weights, args.name, extra, keep=not args.drop_previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
