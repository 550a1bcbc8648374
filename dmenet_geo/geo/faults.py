"""Test-only fault injection and tracing for the resumable write path (no effect unless set).

Environment (read by every process, so it reaches Dask workers started by the job):

``DMENET_BATCH_KILL_AFTER_CHUNKS=N``
    SIGKILL after this process has written its N-th chunk (shorthand for ``DMENET_BATCH_KILL_AT=chunk:N``).
``DMENET_BATCH_KILL_AT=EVENT:N``
    SIGKILL at the N-th ``EVENT`` of this process: ``chunk`` (a chunk object written), ``finalized``
    (a scene's store finished, before its completion marker), ``marker`` (a marker written).
``DMENET_BATCH_KILL_SCOPE=group|process``
    ``group`` (default): the whole process group, i.e. the job's client and its local workers when the
    job was started in its own session (how the tests run it); ``process``: only this process (a
    worker dies, the job goes on).
``DMENET_BATCH_KILL_ONCE=PATH``
    kill only if PATH can still be created (so a restarted worker does not kill itself again).
``DMENET_TRACE=PATH``
    append one line per event (``encoded <n>``, ``chunk``...) to PATH, for the benchmarks' counts.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["checkpoint"]

_counts: Counter[str] = Counter()


def _kill_spec() -> tuple[str, int] | None:
    spec = os.environ.get("DMENET_BATCH_KILL_AT")
    if not spec and os.environ.get("DMENET_BATCH_KILL_AFTER_CHUNKS"):
        spec = f"chunk:{os.environ['DMENET_BATCH_KILL_AFTER_CHUNKS']}"
    if not spec:
        return None
    event, _, n = spec.partition(":")
    return event, int(n or 1)


def checkpoint(event: str, n: int = 1) -> None:
    """Record ``n`` occurrences of ``event``; trace and/or die as the environment asks."""
    trace = os.environ.get("DMENET_TRACE")
    if trace:
        with open(trace, "a") as f:  # one small O_APPEND write: lines from several processes stay whole
            f.write(f"{event} {n} {os.getpid()}\n")
    spec = _kill_spec()
    if spec is None:
        return
    _counts[event] += n
    target, after = spec
    if event != target or _counts[event] < after:
        return
    once = os.environ.get("DMENET_BATCH_KILL_ONCE")
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if os.environ.get("DMENET_BATCH_KILL_SCOPE", "group") == "process":
        os.kill(os.getpid(), signal.SIGKILL)
    os.killpg(os.getpgrp(), signal.SIGKILL)
