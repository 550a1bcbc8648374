"""One batch job per destination: a second job on the same ``--out`` is refused with a clear error,
and a job that was killed never blocks the re-run that resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from batch_helpers import options, write_good

from dmenet_geo.archive import JobLockedError, job_lock, run_batch
from dmenet_geo.archive.lock import LOCK_NAME
from dmenet_geo.cli.main import main as cli_main


def test_second_lock_on_same_destination_is_refused(tmp_path):
    with job_lock(str(tmp_path)):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(JobLockedError, match=f"pid {os.getpid()}"):
            with job_lock(str(tmp_path)):
                pass
    with job_lock(str(tmp_path)):  # released on exit: taken again
        pass


def test_run_batch_refuses_a_locked_destination_before_writing(tmp_path):
    write_good(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    with job_lock(str(out)):
        with pytest.raises(JobLockedError, match="being written"):
            run_batch([str(tmp_path / "in")], out, options(), processes=False, workers=1, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written


def test_cli_reports_a_locked_destination(tmp_path, capsys):
    write_good(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    with job_lock(str(out)):
        code = cli_main(["batch", str(tmp_path / "in"), "--out", str(out), "--in-process", "-q"])
    assert code != 0
    assert "being written by" in capsys.readouterr().err


def test_killed_holder_releases_the_lock(tmp_path):
    code = (
        "import sys, time\n"
        "from dmenet_geo.archive import job_lock\n"
        "with job_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        with pytest.raises(JobLockedError):
            with job_lock(str(tmp_path)):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the flock with the process
        try:
            with job_lock(str(tmp_path)):
                break
        except JobLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
