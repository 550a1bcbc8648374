"""Small helpers shared by the command modules."""

from __future__ import annotations

import json
import math
import os
import select
import sys
from typing import Any

__all__ = ["CLOSED_PIPE_STATUS", "parse_bands", "print_json", "stdout_closed_by_reader"]

CLOSED_PIPE_STATUS = 141  # what a shell reports for a command stopped by SIGPIPE (128 + 13)


def parse_bands(text: str) -> list[int]:
    """``"1,2,3"`` or ``"1-3"`` or ``"4,1-2"`` -> ``[1, 2, 3]`` (1-based)."""
    import argparse

    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid band list {text!r} (use e.g. 1,2,3 or 1-3)") from None
    if not out:
        raise argparse.ArgumentTypeError("empty band list")
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def print_json(obj: dict[str, Any]) -> None:
    json.dump(_clean(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def stdout_closed_by_reader() -> bool:
    """Whether stdout is a pipe whose reader has gone (``... | head``). If so, stdout is pointed at
    the null device, so that the interpreter's last flush does not raise again on the way out.

    A broken pipe anywhere else (a network store, a worker) is a real error and keeps its message:
    only a pipe with no reader left reports ``POLLERR`` on its write end.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    return True
