"""Batch job set-up: one job per destination (a second job on the same ``--out`` is refused with a
clear error, and a killed job never blocks the re-run that resumes it), and torch threads on Dask
workers."""

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


# ------------------------------------------------------------------ torch threads on Dask workers
@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("tcp://10.0.0.5:4321", "10.0.0.5"),
        ("tls://[::1]:8786", "::1"),
        ("inproc://10.0.0.5/12/3", "10.0.0.5/12/3"),  # in-process workers: no match, torch left alone
    ],
    ids=["tcp", "ipv6", "inproc"],
)
def test_worker_host_parsing(address, host):
    from dmenet_geo.archive.worker import _host

    assert _host(address) == host


def test_torch_threads_share_the_host_cores_between_dask_threads(monkeypatch):
    from dmenet_geo.archive import worker

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(worker, "worker_name", lambda: "tcp://10.0.0.5:4321")
    assert worker.torch_threads_for(3, {"10.0.0.5": 2}) == 3  # explicit wins
    assert worker.torch_threads_for(None, {"10.0.0.5": 1}) == cores
    assert worker.torch_threads_for(None, {"10.0.0.5": 2 * cores}) == 1  # never below one
    assert worker.torch_threads_for(None, {"10.9.9.9": 1}) is None  # unknown host: leave torch alone
    monkeypatch.setattr(worker, "worker_name", lambda: None)
    assert worker.torch_threads_for(None, {"10.0.0.5": 1}) is None  # not on a worker


def test_local_cluster_workers_get_thread_env_and_default_allocator():
    """Our LocalCluster's worker processes run torch with the host's cores and without Dask's
    ``MALLOC_TRIM_THRESHOLD_`` (which halved torch's speed in a worker)."""
    from dmenet_geo.archive.job import _client

    client, cluster = _client(None, 1, 1, True)
    try:
        keys = ("OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")
        env = client.run(lambda: {k: os.environ.get(k) for k in keys})
    finally:
        client.close()
        cluster.close()
    (worker_env,) = env.values()
    # an OMP_NUM_THREADS set by the user (the test session sets one) wins over the computed one
    threads = os.environ.get("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    assert worker_env == {"OMP_NUM_THREADS": threads, "MALLOC_TRIM_THRESHOLD_": None}
