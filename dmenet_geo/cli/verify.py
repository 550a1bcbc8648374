"""``dmenet-geo verify STORE``: decode every stored chunk; exit 1 if any fails."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dmenet_geo.cli.common import print_json

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    p = sub.add_parser("verify", help="decode every chunk of a store",
                       description="Decode every stored chunk, report how many decode (exit 1 if any fails).")
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dmenet_geo.geo import verify_store

    report = verify_store(args.store, progress=not args.quiet and sys.stderr.isatty())
    if args.json:
        print_json({
            "store": report.store, "ok": report.ok, "chunks_total": report.chunks_total,
            "chunks_stored": report.chunks_stored, "chunks_ok": report.chunks_ok,
            "overviews_ok": report.overviews_ok,
            "failures": [{"chunk": list(ij), "error": msg} for ij, msg in report.failures],
        })
    else:
        print(report)
    if not report.ok:
        sys.stderr.write(f"dmenet-geo: error: {len(report.failures)} of {report.chunks_stored} chunks failed "
                         "to decode\n" if report.failures else "dmenet-geo: error: overviews unreadable\n")
        return 1
    return 0
