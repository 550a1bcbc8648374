"""Bytes of the same latent symbols under other scale tables: what a finer table would save.

    python pipelines/scale_tables.py --model default-9745a0c3 --tiles 35 --tables 256:64 256:256 192:64

The entropy coder codes each latent value with the first scale of the model's table at or above the
scale the hyperprior and context predict. Each ``LEVELS:TOP`` table (geometric from 0.11 to TOP)
codes the same symbols, so the decoded pixels stay the same and only the bytes of ``y`` and ``z``
change; printed per quality, relative to the model's own table. ``pipelines/apply_trained.py
--scale-levels`` writes weights with such a table.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.zoo import load_model  # noqa: E402
from pipelines.apply_trained import ScaleTable  # noqa: E402
from pipelines.rd.tiles import list_images, load_tiles  # noqa: E402


@dataclass(frozen=True)
class TableBytes:
    """Bytes of the strings of ``y`` and ``z`` of all tiles at one quality, under one table."""

    table: str
    quality: float
    nbytes: int


def _table(text: str) -> ScaleTable:
    levels, _, top = text.partition(":")
    try:
        parsed = int(levels), float(top or 256)  # LEVELS alone: up to CompressAI's top, 256
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LEVELS:TOP, e.g. 256:64, got {text!r}") from None
    return ScaleTable(*parsed)  # validated there, as apply_trained.py --scale-levels validates it


def coded_bytes(model: DMENet, x: torch.Tensor, quality: float, batch: int = 8) -> int:
    total = 0
    for i in range(0, x.shape[0], batch):
        latents = model.compress(x[i : i + batch], quality)
        total += sum(map(len, latents.y_strings)) + sum(map(len, latents.z_strings))
    return total


def measure(
    model: DMENet, x: torch.Tensor, qualities: list[float], tables: list[ScaleTable]
) -> list[TableBytes]:
    variants = {f"own ({len(model.gaussian_conditional.scale_table)} scales)": model}
    for table in tables:
        other = copy.deepcopy(model)
        table.rebuild(other)
        variants[f"{table.levels} to {table.top:g}"] = other
    return [TableBytes(name, q, coded_bytes(m, x, q)) for q in qualities for name, m in variants.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="shipped name or weights .pt")
    p.add_argument("--data", type=Path, default=Path("../shared/data/val"))
    p.add_argument("--tiles", type=int, default=35, help="images, spread evenly (one 256x256 tile each)")
    p.add_argument("--qualities", default="1,3,5,8")
    p.add_argument("--tables", type=_table, nargs="+", default=[ScaleTable(256, 64.0)], metavar="LEVELS:TOP")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    tiles = load_tiles(list_images(args.data, limit=args.tiles))
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255
    rows = measure(model, x, [float(q) for q in args.qualities.split(",")], args.tables)
    for q in dict.fromkeys(r.quality for r in rows):
        at_q = [r for r in rows if r.quality == q]
        own = at_q[0].nbytes
        print(f"quality {q:g}: " + "; ".join(f"{r.table} {r.nbytes} B ({100 * (r.nbytes / own - 1):+.2f} %)"
                                             for r in at_q))
    return 0


if __name__ == "__main__":
    sys.exit(main())
