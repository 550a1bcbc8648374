"""Install a training run's weights into the package as a named model.

    python pipelines/install_weights.py runs/default/weights.pt default

Copies ``weights.pt`` to ``dmenet_geo/weights/NAME.pt`` and writes ``NAME.json`` (the run's config and
provenance from ``weights.json`` plus the file's SHA-256, which :func:`dmenet_geo.load_model` checks).
Stores written with the previous weights will no longer decode with this package version: their
chunks name the weights they need.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "dmenet_geo" / "weights"


def install(src: Path, name: str, extra: dict[str, object] | None = None) -> str:
    """Copy the weights, record their SHA-256 in the sidecar, and return it."""
    meta = json.loads(src.with_suffix(".json").read_text())
    dst = WEIGHTS_DIR / f"{name}.pt"
    shutil.copyfile(src, dst)
    meta["sha256"] = hashlib.sha256(dst.read_bytes()).hexdigest()
    meta.update(extra or {})
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return str(meta["sha256"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="weights.pt of a training run (with weights.json beside it)")
    p.add_argument("name", help="model name, e.g. default")
    p.add_argument("--hardware", default=None, help="recorded in the sidecar, e.g. '2-core x86_64 CPU'")
    args = p.parse_args(argv)
    extra = {"hardware": args.hardware} if args.hardware else None
    print(install(args.weights, args.name, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
