"""Shared helpers for the batch tests (``tests/test_batch*.py``): input folders with good and bad
rasters, decoded store contents, subprocess jobs that get killed, and a real S3 endpoint (moto's
server on 127.0.0.1). It holds no tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from test_geo_common import INT16_NODATA, REPO_ROOT, UINT8_RGB

#: small and quick: 128-pixel chunks (9 per test raster), 2 chunks per encode batch
CHUNK = 128
CHUNKS_PER_TASK = 2
GOOD = {"landsat7": UINT8_RGB, "landsat5": INT16_NODATA}
DATETIME = "2021:06:15 10:30:00"  # TIFFTAG_DATETIME given to landsat5's copy
#: dummy credentials of the tests' own S3 endpoint (never real ones)
S3_ENV = {"AWS_ACCESS_KEY_ID": "dmenet-test-key-id", "AWS_SECRET_ACCESS_KEY": "dmenet-test-secret-0123456789",
          "AWS_DEFAULT_REGION": "us-east-1"}


def options() -> Any:
    from dmenet_geo.archive import BatchOptions

    return BatchOptions(chunk=CHUNK, chunks_per_task=CHUNKS_PER_TASK)


def write_good(folder: Path) -> list[Path]:
    """Copies of the good rasters (landsat5 with a TIFFTAG_DATETIME) named after GOOD's keys."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, src in GOOD.items():
        dst = folder / f"{name}.tif"
        shutil.copy(src, dst)
        if name == "landsat5":
            with rasterio.open(dst, "r+") as f:
                f.update_tags(TIFFTAG_DATETIME=DATETIME)
        out.append(dst)
    return out


def write_bad(folder: Path) -> dict[str, Path]:
    """A file that is no raster, a truncated GeoTIFF and a raster without CRS."""
    folder.mkdir(parents=True, exist_ok=True)
    junk = folder / "corrupt.tif"
    junk.write_bytes(b"this is not a GeoTIFF\n" * 10)
    truncated = folder / "truncated.tif"
    truncated.write_bytes(UINT8_RGB.read_bytes()[:3000])
    nocrs = folder / "nocrs.tif"
    with rasterio.open(UINT8_RGB) as src:
        data = src.read()
    with rasterio.open(nocrs, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3,
                       dtype="uint8") as dst:
        dst.write(data)
    return {"corrupt": junk, "truncated": truncated, "nocrs": nocrs}


def decoded(store: str | Path) -> dict[str, Any]:
    """Everything a store decodes to: full-resolution pixels, overview pixels, coordinates,
    footprint and the recorded summary (without its creation time)."""
    import dmenet_geo

    ds = dmenet_geo.open_dataset(store)
    out: dict[str, Any] = {"image": ds["image"].values, "x": ds["x"].values, "y": ds["y"].values}
    meta = dict(ds.attrs["dmenet_geo"])
    meta.pop("created", None)
    out["meta"] = meta
    out["footprint"] = ds.attrs.get("footprint")
    for level in range(1, len(meta.get("overview_factors", [])) + 1):
        out[f"overview{level}"] = dmenet_geo.open_dataset(store, overview=level)["image"].values
    return out


def assert_same_contents(a: dict[str, Any], b: dict[str, Any], what: str = "") -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{what}: {k} differs"
        else:
            assert a[k] == b[k], f"{what}: {k} differs"


def chunk_files(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.zarr/image/c/**/*") if p.is_file() and "." not in p.name)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMENET_BATCH_") and k != "DMENET_TRACE"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``dmenet-geo ARGS`` in its own session (its process group = the job: client + local workers)."""
    cmd = [sys.executable, "-m", "dmenet_geo.cli.main", *args]
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_group_gone(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until no process of the job's group is left (SIGKILL stragglers after ``timeout``)."""
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3(log: Path | None = None) -> Iterator[str]:
    """A real S3 endpoint: moto in server mode (``python -m moto.server``) on 127.0.0.1 and a free
    port; yields its URL. The caller sets S3_ENV and ``AWS_ENDPOINT_URL`` in its own environment.

    The server runs in a process of its own, not as ``ThreadedMotoServer`` in the test process: GDAL's
    /vsis3/ reads from two threads of the process that also serves the requests deadlock (the server's
    threads then wait for the GIL), which a real, remote endpoint never does."""
    port = free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **S3_ENV})
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()  # type: ignore[union-attr]
