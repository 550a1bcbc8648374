"""Killed batch jobs, run again, finish only the remaining work and produce stores that decode exactly
like an uninterrupted run's (``np.array_equal`` on pixels and overviews; equal footprint and summary).

The job runs as ``dmenet-geo batch`` in a subprocess of its own session. It is killed by the test-only
hook of :mod:`dmenet_geo.geo.faults` at several points (after the first chunk, mid-job, after a store
was finalized but before its marker, right after a marker), by the test itself (SIGKILL of the client
process, polling the store), or loses one worker process mid-job (the job must finish by itself).
Re-done work is counted from the ``DMENET_TRACE`` log: chunks encoded over both runs minus chunks
stored must not exceed the chunks in flight (workers x chunks per task).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from batch_helpers import (
    CHUNK,
    CHUNKS_PER_TASK,
    GOOD,
    assert_same_contents,
    chunk_files,
    cli_env,
    decoded,
    options,
    start_cli,
    wait_group_gone,
    write_good,
)

from dmenet_geo.archive import MARKER, run_batch

WORKERS = 2
IN_FLIGHT = WORKERS * CHUNKS_PER_TASK


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    write_good(root / "in")
    report = run_batch([str(root / "in")], root / "out", options(), processes=False, workers=WORKERS,
                       progress=False)
    assert report.ok
    return {
        "inputs": root / "in",
        "contents": {n: decoded(root / "out" / f"{n}.zarr") for n in GOOD},
        "chunks": report.totals()["chunks_encoded"],
    }


def _args(clean, out: Path, *extra: str) -> list[str]:
    return ["batch", str(clean["inputs"]), "--out", str(out), "--chunk", str(CHUNK), "--chunks-per-task",
            str(CHUNKS_PER_TASK), "--workers", str(WORKERS), "-q", *extra]


def _encoded(trace: Path) -> int:
    if not trace.exists():
        return 0
    return sum(int(line.split()[1]) for line in trace.read_text().splitlines() if line.startswith("encoded "))


def _marked(out: Path) -> set[str]:
    return {n for n in GOOD if (out / f"{n}.zarr" / MARKER).exists()}


def _resume_and_compare(clean, out: Path, trace: Path, monkeypatch) -> None:
    marked = _marked(out)
    stored_before = len(chunk_files(out))
    monkeypatch.setenv("DMENET_TRACE", str(trace))
    report = run_batch([str(clean["inputs"])], out, options(), processes=False, workers=WORKERS,
                       progress=False)
    assert report.ok, str(report)
    for s in report.scenes:  # a scene is skipped only if its marker was there; never half-done
        assert s.status == ("skipped" if s.name in marked else "done"), s
    for name, expected in clean["contents"].items():
        assert_same_contents(decoded(out / f"{name}.zarr"), expected, f"{name} after resume")
    totals = report.totals()
    assert totals["chunks_reused"] <= stored_before
    redone = _encoded(trace) - clean["chunks"]
    assert 0 <= redone <= IN_FLIGHT, f"{redone} chunks encoded twice (in flight: at most {IN_FLIGHT})"


@pytest.mark.parametrize("kill_at", ["chunk:1", "chunk:7", "finalized:1", "marker:1"])
def test_job_killed_at_a_point_resumes_to_the_same_stores(kill_at, clean, tmp_path, monkeypatch):
    out, trace = tmp_path / "out", tmp_path / "trace.log"
    env = cli_env(DMENET_BATCH_KILL_AT=kill_at, DMENET_TRACE=str(trace))
    proc = start_cli(_args(clean, out, "--in-process"), env, tmp_path / "job.log")
    wait_group_gone(proc, timeout=180)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "job.log").read_text()[-2000:]
    event, n = kill_at.split(":")
    marked = _marked(out)
    assert len(marked) == (1 if event == "marker" else 0)
    if event == "chunk":
        assert len(chunk_files(out)) >= int(n)
    assert not (out / "batch-report.json").exists()
    _resume_and_compare(clean, out, trace, monkeypatch)


def test_client_sigkill_then_rerun(clean, tmp_path, monkeypatch):
    """SIGKILL of the client process only (LocalCluster of worker processes): its workers go with it,
    and the next run picks the stores up."""
    out, trace = tmp_path / "out", tmp_path / "trace.log"
    proc = start_cli(_args(clean, out), cli_env(DMENET_TRACE=str(trace)), tmp_path / "job.log")
    deadline = time.monotonic() + 150
    while len(chunk_files(out)) < 3:
        assert proc.poll() is None, (tmp_path / "job.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the job wrote no chunk in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    wait_group_gone(proc, timeout=60)
    assert _marked(out) != set(GOOD), "the job finished before it was killed"
    _resume_and_compare(clean, out, trace, monkeypatch)


def test_worker_killed_mid_job_still_finishes(clean, tmp_path):
    """One worker process dies after its 3rd chunk (once): the scheduler re-runs its scene elsewhere,
    which resumes from the chunks already stored; the job ends well without any help."""
    out, trace, flag = tmp_path / "out", tmp_path / "trace.log", tmp_path / "killed.flag"
    env = cli_env(DMENET_BATCH_KILL_AT="chunk:3", DMENET_BATCH_KILL_SCOPE="process",
                  DMENET_BATCH_KILL_ONCE=str(flag), DMENET_TRACE=str(trace))
    proc = start_cli(_args(clean, out), env, tmp_path / "job.log")
    wait_group_gone(proc, timeout=240)
    log = (tmp_path / "job.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert flag.exists(), "no worker was killed"
    report = json.loads((out / "batch-report.json").read_text())
    assert report["ok"] and [s["status"] for s in report["scenes"]] == ["done", "done"]
    assert sum(s["chunks_reused"] for s in report["scenes"]) >= 1  # the re-run task resumed
    for name, expected in clean["contents"].items():
        assert_same_contents(decoded(out / f"{name}.zarr"), expected, f"{name} after a worker died")
    redone = _encoded(trace) - clean["chunks"]
    assert 0 <= redone <= CHUNKS_PER_TASK
