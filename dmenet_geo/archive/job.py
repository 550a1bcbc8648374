"""``run_batch``: compress many GeoTIFFs into an archive of Zarr stores on a dask.distributed cluster.

Store layout: one store per scene, ``<out>/<scene>.zarr``, rather than one big store of all scenes,
because

* each scene completes on its own and atomically: its marker (:mod:`.state`) is written last, so
  "is this scene done?" is one small read and never depends on other scenes;
* scenes are written in parallel by different workers without any coordination (no shared array,
  metadata or consolidation to lock);
* a scene can be deleted or re-done (``--overwrite``, a new source version) by removing one
  directory/prefix, without rewriting anything else;
* each store is the single asset of its STAC Item, opened by ``dmenet_geo.open_dataset`` as is;
* scenes differ in size, CRS, dtype, bands and nodata, which one array could not hold anyway.

Execution: one task per scene on the cluster (``LocalCluster`` by default, or the scheduler at
``scheduler=ADDRESS``: the same code path, since both are driven through a ``Client``). A task runs
:func:`~dmenet_geo.geo.write.compress_geotiff` with ``resume=True`` and the synchronous scheduler
inside its worker (the scene's blocks one after another, each batch-encoded), then records the
marker. Scene-level parallelism keeps workers independent (each reads its own source, no data moves
between workers); a scene is never split over workers.

Resuming and idempotence: a scene whose marker matches the job's settings digest (settings, source,
source version) is skipped; any other scene is (re)started with ``resume=True``, which reuses every
chunk an interrupted run stored. If a worker dies, the scheduler re-runs its task elsewhere and the
task resumes the same way; if the whole job dies, running it again does the same for every scene.
Either way only the chunks that were being encoded at the time are encoded again, and the stores
decode exactly as after an uninterrupted run (chunk encoding is deterministic).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dmenet_geo.archive.inputs import Scene, resolve_inputs
from dmenet_geo.archive.lock import job_lock
from dmenet_geo.archive.report import BatchReport, SceneResult, now_iso, redact
from dmenet_geo.archive.state import read_marker, settings_digest, stored_chunks, write_marker
from dmenet_geo.archive.worker import configure_worker, host_slots, local_worker_environ, worker_name
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.faults import checkpoint
from dmenet_geo.geo.remote import file_identity, is_url, join, normalize, remove_tree

__all__ = ["BatchOptions", "run_batch", "run_scene"]

REPORT_NAME = "batch-report.json"


@dataclass(frozen=True)
class BatchOptions:
    """Compression settings of a batch job (the same meaning as :func:`dmenet_geo.compress_geotiff`'s)."""

    quality: float = 4.0
    target_psnr: float | None = None
    bands: tuple[int, ...] | None = None
    chunk: int = 256
    overview: bool = True
    chunks_per_task: int = 8
    model: str = "default"
    psnr_samples: int = 8
    device: str | None = None  # where workers run the model (None: CUDA if available)
    torch_threads: int | None = None  # torch threads per worker (None: the host's cores / Dask threads)
    refine: int = 0  # latent refinement steps per chunk (fixed quality only)

    def output_settings(self) -> dict[str, Any]:
        """The settings that decide a scene's store (device, threads and batching do not)."""
        d = asdict(self)
        for k in ("device", "torch_threads", "chunks_per_task"):
            d.pop(k)
        if not self.refine:  # absent when off: reports written before the option existed still match
            d.pop("refine")
        d["bands"] = None if self.bands is None else list(self.bands)
        return d


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    from dmenet_geo.codec import DMENetCodecError

    if not isinstance(exc, (GeoError, DMENetCodecError, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)


def run_scene(
    scene: Scene, options: BatchOptions, digest: str, slots: dict[str, int] | None = None
) -> SceneResult:
    """The task of one scene (runs on a worker): resume/compress, describe, then mark it done.

    Failures are returned as a ``failed`` result (with a one-line error), not raised, so one bad
    input never disturbs the others."""
    from dmenet_geo.archive.stac import item_info
    from dmenet_geo.geo import compress_geotiff

    t0 = time.perf_counter()
    worker = worker_name()
    try:
        configure_worker(options.device, options.torch_threads, slots)
        marker = read_marker(scene.store)
        if marker is not None and marker.get("digest") == digest:  # an earlier attempt got this far
            return SceneResult.from_summary(scene.name, scene.source, scene.store, "done",
                                            marker.get("summary") or {}, worker=worker,
                                            chunks_reused=int(marker.get("chunks_written") or 0),
                                            seconds=round(time.perf_counter() - t0, 3))
        reused = stored_chunks(scene.store)
        summary = compress_geotiff(
            scene.source, scene.store, quality=options.quality, target_psnr=options.target_psnr,
            bands=options.bands, chunk=options.chunk, overview=options.overview, progress=False,
            model=options.model, chunks_per_task=options.chunks_per_task, scheduler="sync",
            psnr_samples=options.psnr_samples, resume=True, refine=options.refine,
        )
        identity = file_identity(scene.source)
        item = item_info(scene.source, scene.store, identity)
        checkpoint("finalized")
        seconds = round(time.perf_counter() - t0, 3)
        summary_d = summary.to_dict()
        summary_d["seconds"] = seconds
        write_marker(scene.store, {
            "scene": scene.name,
            "source": redact(scene.source),
            "digest": digest,
            "settings": options.output_settings(),
            "source_identity": identity,
            "summary": summary_d,
            "item": item,
            "completed": now_iso(),
            "chunks_written": summary.chunks_written,
            "chunks_reused": reused,
        })
        return SceneResult.from_summary(scene.name, scene.source, scene.store, "done", summary_d,
                                        seconds=seconds, chunks_reused=reused, worker=worker)
    except Exception as exc:  # noqa: BLE001 - reported per scene
        return SceneResult(scene.name, redact(scene.source), redact(scene.store), "failed",
                           error=_one_line(exc), seconds=round(time.perf_counter() - t0, 3), worker=worker)


def _client(scheduler: str | None, workers: int, threads_per_worker: int, processes: bool) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    import dask

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    environ = local_worker_environ(cores // max(1, workers * threads_per_worker))
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):  # read by each nanny
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                               dashboard_address=None, worker_dashboard_address=None,
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_batch(
    inputs: Sequence[str],
    out: str | os.PathLike[str],
    options: BatchOptions | None = None,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    overwrite: bool = False,
    recursive: bool = False,
    progress: bool = True,
    catalog: bool = True,
    report_path: str | None = None,
    break_lock: bool = False,
) -> BatchReport:
    """Compress every input into ``<out>/<scene>.zarr``; write ``<out>/catalog.json`` (STAC) and the
    JSON report (``<out>/batch-report.json`` unless ``report_path``); return the report.

    ``scheduler``: address of an existing dask.distributed scheduler, whose workers must have
    dmenet_geo installed and see the inputs and ``out`` (a shared file system, or object storage);
    else a ``LocalCluster`` of ``workers`` processes x ``threads_per_worker`` threads
    (``processes=False``: threads of this process). ``overwrite``: redo every scene from scratch.
    ``out`` and the inputs may be ``s3://`` URLs (credentials and endpoint from the environment: see
    :mod:`dmenet_geo.geo.remote`).
    A failed scene is reported and does not stop the others; see the module docstring for resuming.
    Only one job may write ``out`` at a time (:mod:`.lock`; ``break_lock`` takes over an S3 lease
    left by a killed job); a second one raises :class:`~dmenet_geo.archive.lock.JobLockedError`.
    """
    from tqdm import tqdm

    from dmenet_geo.weights import shipped_names

    options = options or BatchOptions()
    shipped = shipped_names()
    if options.model not in shipped:  # before any output or cluster exists
        raise GeoError(f"unknown model {options.model!r}; shipped: {', '.join(shipped)}")
    t0 = time.perf_counter()
    started = now_iso()
    dst = normalize(out)
    if not is_url(dst):
        os.makedirs(dst, exist_ok=True)
    with job_lock(dst, break_lock=break_lock):
        scenes = resolve_inputs(list(inputs), dst, recursive=recursive)
        if not scenes:
            raise GeoError("no inputs given")
        settings = options.output_settings()
        results: dict[str, SceneResult] = {}
        markers: dict[str, dict[str, Any]] = {}
        todo: list[tuple[Scene, str]] = []
        for scene in scenes:
            if scene.error is not None:
                results[scene.name] = SceneResult(scene.name, redact(scene.source), "", "failed",
                                                  error=scene.error)
                continue
            digest = settings_digest(settings, scene.source, file_identity(scene.source))
            if overwrite:
                remove_tree(scene.store)
                todo.append((scene, digest))
                continue
            marker = read_marker(scene.store)
            if marker is None:
                todo.append((scene, digest))
            elif marker.get("digest") == digest:
                markers[scene.name] = marker
                results[scene.name] = SceneResult.from_summary(
                    scene.name, scene.source, scene.store, "skipped", marker.get("summary") or {}
                )
            else:
                results[scene.name] = SceneResult(
                    scene.name, redact(scene.source), redact(scene.store), "failed",
                    error="already compressed with other settings or from another version of the source "
                          "(pass --overwrite to redo it)")
        n_workers: int | None = None
        if todo:
            client, cluster = _client(scheduler, workers, threads_per_worker, processes)
            try:
                from distributed import as_completed

                n_workers = len(client.scheduler_info().get("workers", {})) or None
                slots = host_slots(client)
                futures = {
                    client.submit(run_scene, scene, options, digest, slots, pure=False,
                                  key=f"dmenet-scene-{scene.name}-{digest[:12]}"): scene
                    for scene, digest in todo
                }
                with tqdm(total=len(scenes), initial=len(scenes) - len(todo), unit="scene", desc="batch",
                          disable=not progress) as bar:
                    for future in as_completed(futures):
                        scene = futures[future]
                        try:
                            res: SceneResult = future.result()
                        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the task killed workers
                            res = SceneResult(scene.name, redact(scene.source), redact(scene.store), "failed",
                                              error=_one_line(exc))
                        results[scene.name] = res
                        bar.update(1)
                        bar.set_postfix_str(f"{scene.name} {res.status}", refresh=False)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        report = BatchReport(out=dst, started=started, seconds=0.0, scenes=[results[s.name] for s in scenes],
                             settings=settings, workers=n_workers,
                             scheduler=redact(scheduler) if scheduler else None)
        for s in report.done:
            marker = read_marker(s.store)
            if marker is not None:
                markers[s.name] = marker
            else:  # cannot happen unless the store was removed meanwhile
                report.notes.append(f"{s.name}: done but its marker cannot be read")
        if catalog:
            from dmenet_geo.archive.stac import build_catalog, save_catalog

            try:
                cat = build_catalog(dst, sorted(markers.items()))
                report.catalog = save_catalog(cat)
            except Exception as exc:  # noqa: BLE001 - the stores are fine; say what went wrong
                report.notes.append(f"STAC catalog not written: {_one_line(exc)}")
        report.seconds = time.perf_counter() - t0
        report.report_path = report_path or join(dst, REPORT_NAME)
        report.write(report.report_path)
        return report
