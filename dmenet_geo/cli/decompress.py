"""``dmenet-geo decompress STORE OUT.tif``: a store back to a GeoTIFF (same georeferencing, nodata)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser("decompress", help="decode a store into a GeoTIFF",
                       description="Decode a store (or one overview level) into a tiled GeoTIFF.")
    p.add_argument("store", help="store directory")
    p.add_argument("out", help="output GeoTIFF")
    p.add_argument("--overview", type=int, default=None, metavar="K", help="write overview level K instead")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dmenet_geo.geo import decompress_to_geotiff

    result = decompress_to_geotiff(args.store, args.out, overview=args.overview, overwrite=args.overwrite,
                                   progress=not args.quiet and sys.stderr.isatty())
    print(result)
    return 0
