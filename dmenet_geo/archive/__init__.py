"""Batch compression of many GeoTIFFs into an archive of DMENet Zarr stores (one per scene), with
resumable jobs on dask.distributed, object storage, a STAC catalog and a job report.

Layering: above :mod:`dmenet_geo.geo` (which it drives through ``compress_geotiff(..., resume=True)``),
below :mod:`dmenet_geo.cli` (``dmenet-geo batch``).

    >>> from dmenet_geo.archive import BatchOptions, run_batch
    >>> report = run_batch(["scenes/", "s3://bucket/more/*.tif"], "archive/", BatchOptions(quality=4))
    >>> report.ok, report.totals()["throughput_mb_s"]
"""

from dmenet_geo.archive.inputs import Scene, resolve_inputs
from dmenet_geo.archive.job import BatchOptions, run_batch, run_scene
from dmenet_geo.archive.lock import JobLockedError, job_lock
from dmenet_geo.archive.report import BatchReport, SceneResult
from dmenet_geo.archive.stac import build_catalog, save_catalog, validate_catalog
from dmenet_geo.archive.state import MARKER, read_marker

__all__ = [
    "MARKER",
    "BatchOptions",
    "BatchReport",
    "JobLockedError",
    "Scene",
    "SceneResult",
    "build_catalog",
    "job_lock",
    "read_marker",
    "resolve_inputs",
    "run_batch",
    "run_scene",
    "save_catalog",
    "validate_catalog",
]
