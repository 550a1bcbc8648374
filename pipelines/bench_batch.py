"""Benchmark ``dmenet-geo batch``: its overhead against compressing the same scenes one by one in a
single process, and the work a killed-and-resumed job does twice.

    .venv/bin/python pipelines/bench_batch.py                                   # the real scenes
    .venv/bin/python pipelines/bench_batch.py tests/data/*.tif --chunk 128 --chunks-per-task 2

1. one by one: a fresh Python process compresses the scenes in turn with ``compress_geotiff``
   (synchronous scheduler: one block after another, as a batch worker does);
2. batch: ``dmenet-geo batch`` with ``--workers W`` (default 1: the same compute as 1.), in a fresh
   process too. Both wall times include start-up (imports, model load; for the batch also the
   LocalCluster); the compute-only times (inside the process, after start-up) and the sums of the
   per-scene times (what each scene costs, start-up excluded) are reported as well.
   Target: batch <= 1.10 x one by one (``--workers 1``). On tiny inputs the fixed start-up of the
   cluster and of the worker process (imports, model load: a few seconds) dominates the wall time;
   on real scenes it is amortised, and the per-scene ratio is the one that scales.
3. kill and resume: the batch again, SIGKILLed (client and workers) after ``--kill-after`` chunks
   (default: half of them) by the test-only hook (``DMENET_BATCH_KILL_AFTER_CHUNKS``), then run again
   to completion. Chunks encoded twice = chunks encoded by both runs (``DMENET_TRACE`` log) minus
   the chunks stored. Target: <= the chunks in flight when it died (workers x chunks per task). The
   resumed stores must decode exactly like those of step 2.

Uses the package's public API and its CLI; run it on a quiet machine (it starts several processes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "geotiff"
DEFAULT_INPUTS = [SHARED / n for n in ("landsat7_rgb_byte.tif", "landsat8_rgb_uint16.tif",
                                       "landsat5_int16_nodata_wgs84.tif", "rgbn_uint8_4band.tif")]

ONE_BY_ONE = r"""
import json, sys, time
t0 = time.perf_counter()
import dmenet_geo
from dmenet_geo.archive import resolve_inputs
cfg = json.loads(sys.argv[1])
if cfg["torch_threads"]:
    import torch
    torch.set_num_threads(cfg["torch_threads"])
started = time.perf_counter()
out = []
for scene in resolve_inputs(cfg["inputs"], cfg["out"]):
    s = dmenet_geo.compress_geotiff(scene.source, scene.store, quality=cfg["quality"], chunk=cfg["chunk"],
                                    chunks_per_task=cfg["chunks_per_task"], scheduler="sync",
                                    progress=False)
    out.append({"name": scene.name, "seconds": s.seconds, "chunks": s.chunks_written})
print(json.dumps({"startup_s": started - t0, "compute_s": time.perf_counter() - started, "scenes": out}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMENET_BATCH_") and k != "DMENET_TRACE"}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def _batch_cmd(args: argparse.Namespace, inputs: list[str], out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "dmenet_geo.cli.main", "batch", *inputs, "--out", str(out),
           "--quality", str(args.quality), "--chunk", str(args.chunk), "--chunks-per-task",
           str(args.chunks_per_task), "--workers", str(args.workers), "-q", "--json"]
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    if args.device:
        cmd += ["--device", args.device]
    return cmd


def _run_batch(cmd: list[str], env: dict[str, str]) -> tuple[float, int, dict[str, Any] | None]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, start_new_session=True)
    wall = time.perf_counter() - t0
    report = None
    if proc.returncode in (0, 1) and proc.stdout.strip().startswith("{"):
        report = json.loads(proc.stdout)
    elif proc.returncode not in (-signal.SIGKILL,):
        sys.stderr.write(proc.stderr[-3000:])
    return wall, proc.returncode, report


def _encoded(trace: Path) -> int:
    if not trace.exists():
        return 0
    return sum(int(line.split()[1]) for line in trace.read_text().splitlines() if line.startswith("encoded "))


def _same_contents(a: Path, b: Path, names: list[str]) -> bool:
    import numpy as np

    import dmenet_geo

    for name in names:
        x = dmenet_geo.open_dataset(a / f"{name}.zarr")
        y = dmenet_geo.open_dataset(b / f"{name}.zarr")
        if not np.array_equal(x["image"].values, y["image"].values):
            return False
        for level in range(1, len(x.attrs["dmenet_geo"].get("overview_factors", [])) + 1):
            ox = dmenet_geo.open_dataset(a / f"{name}.zarr", overview=level)["image"].values
            oy = dmenet_geo.open_dataset(b / f"{name}.zarr", overview=level)["image"].values
            if not np.array_equal(ox, oy):
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*",
                        help="GeoTIFFs (default: the real scenes in shared/data/geotiff)")
    parser.add_argument("--quality", type=float, default=4.0)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--chunks-per-task", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="batch workers (default 1: same compute)")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--kill-after", type=int, default=None, help="chunks before the kill (default half)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    inputs = [str(Path(p).resolve()) for p in (args.inputs or DEFAULT_INPUTS)]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"inputs": inputs, "chunk": args.chunk, "chunks_per_task": args.chunks_per_task,
                               "workers": args.workers, "quality": args.quality}
    try:
        # 1. one by one, single process
        one = work / "one"
        shutil.rmtree(one, ignore_errors=True)
        one.mkdir()
        cfg = {"inputs": inputs, "out": str(one), "quality": args.quality, "chunk": args.chunk,
               "chunks_per_task": args.chunks_per_task, "torch_threads": args.torch_threads}
        env = _env(**({"DMENET_DEVICE": args.device} if args.device else {}))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", ONE_BY_ONE, json.dumps(cfg)], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        one_wall = time.perf_counter() - t0
        one_doc = json.loads(proc.stdout.strip().splitlines()[-1])
        chunks_total = sum(s["chunks"] for s in one_doc["scenes"])
        names = [s["name"] for s in one_doc["scenes"]]

        # 2. batch
        clean = work / "batch"
        shutil.rmtree(clean, ignore_errors=True)
        batch_wall, rc, report = _run_batch(_batch_cmd(args, inputs, clean), _env())
        if report is None or rc != 0:
            raise SystemExit(f"the batch failed (exit {rc})")
        batch_compute = report["seconds"]
        one_scenes = sum(s["seconds"] for s in one_doc["scenes"])
        batch_scenes = sum(s["seconds"] for s in report["scenes"])
        results["one_by_one"] = {"wall_s": round(one_wall, 3), "compute_s": round(one_doc["compute_s"], 3),
                                 "startup_s": round(one_doc["startup_s"], 3),
                                 "scenes_s": round(one_scenes, 3)}
        results["batch"] = {"wall_s": round(batch_wall, 3), "job_s": round(batch_compute, 3),
                            "scenes_s": round(batch_scenes, 3),
                            "throughput_mb_s": report["totals"]["throughput_mb_s"]}
        results["overhead_per_scene"] = round(batch_scenes / one_scenes - 1, 4)
        results["overhead_wall"] = round(batch_wall / one_wall - 1, 4)
        results["overhead_compute"] = round(batch_compute / one_doc["compute_s"] - 1, 4)
        results["same_stores_as_one_by_one"] = _same_contents(clean, one, names)

        # 3. kill and resume
        killed = work / "killed"
        shutil.rmtree(killed, ignore_errors=True)
        trace = work / "trace.log"
        trace.unlink(missing_ok=True)
        kill_after = args.kill_after or max(1, chunks_total // 2)
        _, rc1, _ = _run_batch(_batch_cmd(args, inputs, killed),
                               _env(DMENET_BATCH_KILL_AFTER_CHUNKS=str(kill_after), DMENET_TRACE=str(trace)))
        stored_at_kill = sum(1 for p in killed.glob("*.zarr/image/c/**/*")
                             if p.is_file() and "." not in p.name)
        _, rc2, report2 = _run_batch(_batch_cmd(args, inputs, killed), _env(DMENET_TRACE=str(trace)))
        encoded = _encoded(trace)
        results["kill_resume"] = {
            "killed_after_chunks": kill_after,
            "first_run_exit": rc1,
            "chunks_stored_at_kill": stored_at_kill,
            "resumed_exit": rc2,
            "chunks_total": chunks_total,
            "chunks_encoded_both_runs": encoded,
            "chunks_redone": encoded - chunks_total,
            "chunks_in_flight_max": args.workers * args.chunks_per_task,
            "chunks_reused": None if report2 is None else report2["totals"]["chunks_reused"],
            "same_stores_as_uninterrupted": rc2 == 0 and _same_contents(killed, clean, names),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    kr = results["kill_resume"]
    results["targets"] = {
        "batch_overhead_le_10pct": results["overhead_wall"] <= 0.10,
        "redone_le_in_flight": 0 <= kr["chunks_redone"] <= kr["chunks_in_flight_max"],
        "resumed_equals_clean": kr["same_stores_as_uninterrupted"],
    }
    ob, b = results["one_by_one"], results["batch"]
    print(f"{len(inputs)} scenes, {chunks_total} chunks of {args.chunk} px, {args.chunks_per_task} per task, "
          f"{args.workers} batch worker(s)")
    print(f"one by one (1 process): wall {ob['wall_s']:.1f} s (start-up {ob['startup_s']:.1f} s, "
          f"compute {ob['compute_s']:.1f} s)")
    print(f"batch:                  wall {b['wall_s']:.1f} s (job {b['job_s']:.1f} s), "
          f"{b['throughput_mb_s']:.3f} MB/s")
    print(f"overhead: wall {results['overhead_wall']:+.1%} (target <= +10%), job vs compute "
          f"{results['overhead_compute']:+.1%}, per scene {results['overhead_per_scene']:+.1%} "
          f"(sum of scene times {b['scenes_s']:.1f} s vs {ob['scenes_s']:.1f} s); "
          f"identical stores: {results['same_stores_as_one_by_one']}")
    print(f"kill after {kr['killed_after_chunks']} chunks (exit {kr['first_run_exit']}, "
          f"{kr['chunks_stored_at_kill']} stored), resume exit {kr['resumed_exit']}: "
          f"{kr['chunks_redone']} chunks encoded twice (in flight <= {kr['chunks_in_flight_max']}), "
          f"{kr['chunks_reused']} reused; resumed == uninterrupted: {kr['same_stores_as_uninterrupted']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
