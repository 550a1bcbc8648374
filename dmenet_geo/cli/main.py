"""``dmenet-geo``: entry point, global options and error handling.

Errors print one line ``dmenet-geo: error: ...`` on stderr and exit with 1 (2 for usage errors,
130 when interrupted); ``--debug`` shows the traceback instead. When the reader of its output goes
away (``dmenet-geo info STORE --json | head -3``) it stops quietly with 141, as a shell reports for
other commands stopped that way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from dmenet_geo.cli import batch, compress, decompress, demo, info, verify
from dmenet_geo.cli.common import CLOSED_PIPE_STATUS, stdout_closed_by_reader

PROG = "dmenet-geo"
COMMANDS = (compress, info, decompress, verify, batch, demo)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (plus where to find help), exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from dmenet_geo import __version__

    parser = OneLineParser(prog=PROG, description="Learned (DMENet) compression of GeoTIFFs into Zarr.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def _message(exc: BaseException) -> str:
    from dmenet_geo.codec import DMENetCodecError
    from dmenet_geo.geo.errors import GeoError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (GeoError, DMENetCodecError, OSError)):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the error handling, not at exit
        return status
    except KeyboardInterrupt:
        if args.debug:
            raise
        sys.stderr.write(f"{PROG}: error: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one-line error contract
        if isinstance(exc, BrokenPipeError) and stdout_closed_by_reader():
            return CLOSED_PIPE_STATUS  # the reader took what it wanted: quiet, as other tools are
        if args.debug:
            raise
        sys.stderr.write(f"{PROG}: error: {_message(exc)}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
