"""``dmenet-geo info STORE``: georeferencing, size, ratio and quality of a store (decodes nothing)."""

from __future__ import annotations

import argparse
from typing import Any

from dmenet_geo.cli.common import print_json

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a store", description="Describe a store (nothing is decoded).")
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dmenet_geo.geo import store_info

    info = store_info(args.store)
    if args.json:
        print_json(info.to_dict())
    else:
        print(info)
    return 0
