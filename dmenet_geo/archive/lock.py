"""One batch job per destination at a time: ``<out>/.dmenet-batch.lock``.

Two jobs writing the same archive would resume each other's half-written stores and race on the
completion markers. ``job_lock`` refuses to start a second job while one holds the destination:

* a local destination is locked with ``fcntl.flock`` on the lock file. The operating system drops
  the lock when the holder exits, however it exits, so a killed job never blocks the re-run that
  resumes it. (Network file systems may not honour ``flock`` between hosts; run such jobs from one
  host, or use object storage.)
* an ``s3://`` destination holds a lease object (owner, host, pid, expiry) that a background thread
  renews every ``ttl / 4`` seconds. A job killed without releasing it blocks new jobs until the lease
  expires (``ttl``, default 120 s), or until a job is started with ``break_lock=True`` (CLI
  ``--break-lock``). Object storage has no atomic create-if-absent here, so two jobs started within
  the same second may both win the race; the check catches every later start.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.remote import filesystem, is_url, join, read_json, write_bytes_atomic

__all__ = ["LOCK_NAME", "JobLockedError", "job_lock"]

LOCK_NAME = ".dmenet-batch.lock"


class JobLockedError(GeoError):
    """Another batch job is writing the same destination."""


def _owner(token: str, ttl: float | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"token": token, "host": socket.gethostname(), "pid": os.getpid()}
    doc["since"] = time.time()
    if ttl is not None:
        doc["expires"] = time.time() + ttl
    return doc


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "another job"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(doc.get("since", 0))))
    return f"job pid {doc.get('pid')} on {doc.get('host')} (since {since} UTC)"


@contextmanager
def _local_lock(dst: str) -> Iterator[None]:
    import fcntl

    path = os.path.join(dst, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(path, "rb") as f:
                try:
                    holder = json.loads(f.read() or b"null")
                except ValueError:
                    holder = None
            msg = f"{dst} is being written by {_describe(holder)}; wait for it to finish"
            raise JobLockedError(msg) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner(uuid.uuid4().hex, None)).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def _lease(dst: str, ttl: float, break_lock: bool) -> Iterator[None]:
    path = join(dst, LOCK_NAME)
    token = uuid.uuid4().hex
    held = read_json(path)
    if (
        isinstance(held, dict)
        and not break_lock
        and float(held.get("expires", 0)) > time.time()
        and held.get("token") != token
    ):
        left = float(held["expires"]) - time.time()
        raise JobLockedError(
            f"{dst} is being written by {_describe(held)}; its lease expires in {left:.0f} s "
            "(pass --break-lock if that job is dead)"
        )
    write_bytes_atomic(path, json.dumps(_owner(token, ttl)).encode())
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 4):
            current = read_json(path)
            if isinstance(current, dict) and current.get("token") != token:
                return  # broken by another job: stop renewing, do not overwrite its lease
            write_bytes_atomic(path, json.dumps(_owner(token, ttl)).encode())

    thread = threading.Thread(target=renew, name="dmenet-batch-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        current = read_json(path)
        if isinstance(current, dict) and current.get("token") == token:
            fs, p = filesystem(path)
            fs.rm(p)


@contextmanager
def job_lock(dst: str, *, ttl: float = 120.0, break_lock: bool = False) -> Iterator[None]:
    """Hold ``dst`` for one batch job; raise :class:`JobLockedError` when another job holds it."""
    if is_url(dst):
        with _lease(dst, ttl, break_lock):
            yield
    else:
        with _local_lock(dst):
            yield
