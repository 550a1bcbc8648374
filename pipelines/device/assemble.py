"""Put back together the weights a device run returned (``pipelines/device/train.sh``).

    python pipelines/device/assemble.py FILES_AT runs/gpu1

joins ``weights.pt.part*`` in order, checks the result against ``weights.sha256``, and writes
``weights.pt`` and ``weights.json`` into the destination, which then serves as ``--model`` for
``evaluate.py`` / ``ceiling.py`` or as ``--init-weights`` for ``train.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path


def assemble(src: Path, dest: Path) -> str:
    """Join the parts from ``src`` into ``dest/weights.pt``; returns its SHA-256 (checked)."""
    parts = sorted(src.glob("weights.pt.part*"))
    if not parts:
        raise SystemExit(f"no weights.pt.part* in {src}")
    expected = (src / "weights.sha256").read_text().split()[0]
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / "weights.pt.tmp"
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != expected:
        tmp.unlink()
        raise SystemExit(f"SHA-256 mismatch: the parts give {digest.hexdigest()}, expected {expected}")
    tmp.replace(dest / "weights.pt")
    shutil.copyfile(src / "weights.json", dest / "weights.json")
    return expected


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="the folder the device's files came back to")
    p.add_argument("dest", type=Path, help="where weights.pt and weights.json go")
    args = p.parse_args(argv)
    sha = assemble(args.src, args.dest)
    print(f"{args.dest / 'weights.pt'}: SHA-256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
