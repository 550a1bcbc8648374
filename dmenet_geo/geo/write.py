"""``compress_geotiff``: GeoTIFF -> DMENet-compressed Zarr v3 store, block by block through Dask.

How chunks are batched and written
    The raster is cut into ``chunk x chunk`` chunks (edge chunks smaller, padded by edge repetition to
    the stored chunk shape, which Zarr's regular grid requires). Chunks are grouped into rectangular
    blocks of ``chunks_per_task`` chunks; one Dask task reads its block with a single rasterio
    windowed read, drops chunks that are entirely nodata, encodes the rest with one
    ``DMENetCodec.encode_batch`` call (one model batch on the device), and writes each chunk's bytes
    straight into the store under its chunk key (``RawChunkIO``). Writing ready-made bytes, rather than
    assigning pixels to a zarr array whose serializer is the codec, keeps the batch under our control
    (one model call per task, target-PSNR search per chunk) and avoids zarr's read-modify-write and
    fill-value padding of partial edge chunks; the bytes are exactly what the ``dmenet`` serializer
    stores, so xarray/zarr read them back through the registered codec.

Bounded memory
    Tasks run in waves of ``2 x workers``; a wave's results (byte counts, PSNR samples, the block's
    overview cells and a coarse valid mask) are folded into the overview arrays and the footprint mask
    before the next wave starts. Peak memory is about ``waves x block pixels`` plus the overviews'
    cells in flight, independent of the scene size; the scene itself is never held.

Atomicity
    Everything is written to ``<store>.partial-<uuid>`` and renamed onto ``<store>`` only when the
    store is complete and its metadata consolidated; on any error (or Ctrl-C) the partial store is
    removed, so a failed run leaves nothing behind.

Resuming (``resume=True``, what ``dmenet-geo batch`` uses)
    The store is written in place (there is no rename on object storage) and marked resumable as soon
    as its empty hierarchy exists: its root metadata records a *resume key*, a digest of everything
    that decides the chunk bytes (source path, size and modification time or ETag, bands, quality or
    target PSNR, chunk size, selected chunks, overview factors, codec configuration with the weights'
    SHA-256). A later run with the same key lists the chunk objects already stored and encodes only the
    missing ones: every chunk object is written whole (a temporary file renamed into place locally, a
    single PUT on S3), so a chunk that exists is complete, and encoding is deterministic, so a store
    finished by a resumed run decodes exactly like one written in a single run. A killed run therefore
    loses at most the chunks that were being encoded. The overviews, the footprint and the summary are
    recomputed from the source on every run (reading is cheap next to encoding; the stored chunks are
    decoded only to re-measure the sampled PSNR). Until ``complete`` is set at the very end the store
    is refused by ``open_dataset``; a batch job adds its own completion marker after that.

Footprint and overviews
    Each task reduces its valid-and-written pixels to a coarse mask (cells of 4+ pixels); the driver
    traces it into a polygon (native-CRS WKT and EPSG:4326 GeoJSON). The same pass averages the block
    into the overview levels (``overviews/<k>``, nodata-aware means, Blosc-zstd: readable by any Zarr
    v3 tool), so the source is read exactly once.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmenet_geo.geo.aoi import GeometryLike, load_geometry, reproject_geometry
from dmenet_geo.geo.errors import GeoError
from dmenet_geo.geo.footprint import trace_footprint
from dmenet_geo.geo.grid import ChunkGrid
from dmenet_geo.geo.overview import choose_factors, footprint_factor
from dmenet_geo.geo.placement import (
    FORMAT_VERSION,
    prepare_in_place,
    remove_temp_files,
    replace_store,
    resume_key,
)
from dmenet_geo.geo.quality import QUALITY_MAX, QUALITY_MIN
from dmenet_geo.geo.remote import is_url, join, normalize, remove_tree, tree_bytes
from dmenet_geo.geo.source import inspect_raster
from dmenet_geo.geo.store import (
    IMAGE,
    META_KEY,
    RawChunkIO,
    create_store,
    finalize_store,
    overview_path,
    update_root_attrs,
    write_overview_region,
)
from dmenet_geo.geo.summary import CompressSummary, directory_bytes
from dmenet_geo.geo.tasks import BlockResult, EncodeSettings, process_block

__all__ = ["compress_geotiff"]

def _check_options(quality: float, target_psnr: float | None, chunk: int, chunks_per_task: int) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not (
        QUALITY_MIN <= float(quality) <= QUALITY_MAX
    ):
        raise GeoError(f"quality must be a number in [{QUALITY_MIN:g}, {QUALITY_MAX:g}], got {quality!r}")
    if target_psnr is not None and not (isinstance(target_psnr, (int, float)) and 0 < target_psnr < 200):
        raise GeoError(f"target_psnr must be a positive number of dB, got {target_psnr!r}")
    if not isinstance(chunk, int) or chunk < 16 or chunk > 4096 or chunk % 16:
        raise GeoError(f"chunk must be a multiple of 16 in [16, 4096], got {chunk!r}")
    if chunks_per_task < 1:
        raise GeoError("chunks_per_task must be >= 1")


def _sample(chunks: list[tuple[int, int]], n: int) -> frozenset[tuple[int, int]]:
    if n <= 0 or not chunks:
        return frozenset()
    idx = np.unique(np.linspace(0, len(chunks) - 1, num=min(n, len(chunks))).round().astype(int))
    return frozenset(chunks[i] for i in idx)


def _progress_callback(bar: Any) -> Any:
    from dask.callbacks import Callback

    class _Bar(Callback):  # type: ignore[misc]
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if isinstance(result, BlockResult):
                bar.update(len(result.written) + result.skipped_nodata)

    return _Bar()


def compress_geotiff(
    src: str | os.PathLike[str],
    store: str | os.PathLike[str],
    quality: float = 4.0,
    target_psnr: float | None = None,
    bands: Sequence[int] | None = None,
    aoi: GeometryLike | None = None,
    chunk: int = 256,
    overview: bool | int | Sequence[int] = True,
    progress: bool = True,
    *,
    aoi_crs: Any = "EPSG:4326",
    model: str = "default",
    chunks_per_task: int = 8,
    scheduler: str | None = "threads",
    num_workers: int | None = 2,
    psnr_samples: int = 8,
    overwrite: bool = False,
    codec: str = "dmenet",
    jpeg2k_level: float = 40.0,
    resume: bool = False,
    refine: int = 0,
) -> CompressSummary:
    """Compress a GeoTIFF into a Zarr v3 store of DMENet chunks that xarray opens as a Dataset.

    ``quality`` (1..8) applies to every chunk unless ``target_psnr`` (dB) is given: then each chunk
    gets the lowest quality reaching it (bisection). ``bands``: 1-based band indexes. ``aoi``: a
    polygon (shapely, WKT, GeoJSON text/mapping/file) in ``aoi_crs``; only chunks intersecting it are
    written. Chunks that are entirely nodata are not written (they read back as nodata).
    ``overview``: True (8x, then 32x ... for big scenes), False, or factor(s). ``scheduler`` and
    ``num_workers`` go to ``dask.compute`` (``None``: Dask's default, e.g. a distributed Client).
    ``codec="jpeg2k"`` writes the same store with JPEG 2000 chunks instead (the classical baseline,
    serializer ``dmenet_geo.jpeg2k``; integer dtypes): ``jpeg2k_level`` is OpenJPEG's PSNR target in
    dB (0: lossless); ``quality``, ``target_psnr`` and ``model`` do not apply.
    ``refine`` > 0 (fixed ``quality`` only) optimises each chunk's latent for that many steps before
    coding: fewer bytes at the same quality for many times the encoding time; readers are unchanged.
    ``store`` may also be an fsspec URL (``s3://bucket/scene.zarr``, see :mod:`dmenet_geo.geo.remote`
    for credentials and endpoints), written in place. ``resume=True`` writes in place too and continues
    a store that an interrupted run with the same settings left (chunk-level: only missing chunks are
    encoded); the store is kept when the run fails, so it can be resumed again.
    See the module docstring for batching, memory, atomicity and resuming.
    """
    import dask
    from tqdm import tqdm

    from dmenet_geo.codec import DMENetCodec, DMENetCodecError, Jpeg2kCodec, register_codecs

    t0 = time.perf_counter()
    _check_options(quality, target_psnr, chunk, chunks_per_task)
    quality = float(quality)
    source = inspect_raster(src, bands)
    dst = normalize(store)
    in_place = resume or is_url(dst)  # no partial copy + rename (object storage has no rename)
    if not in_place and os.path.exists(dst) and not overwrite:
        raise GeoError(f"{dst} already exists (pass overwrite=True / --overwrite to replace it)")
    if not is_url(dst) and not os.path.isdir(os.path.dirname(dst)):
        raise GeoError(f"{os.path.dirname(dst)}: no such directory")

    grid = ChunkGrid(source.height, source.width, chunk)
    selected = grid.all_chunks()
    if aoi is not None:
        geom = reproject_geometry(load_geometry(aoi), aoi_crs, source.crs)
        selected = grid.intersecting(source.transform, geom)
        if not selected:
            raise GeoError("the area of interest does not intersect the raster")
    factors = choose_factors(source.height, source.width, chunk, overview)
    mask_factor = footprint_factor(source.height, source.width, chunk)
    chunk_codec: Any = None
    if codec == "jpeg2k":
        if target_psnr is not None:
            raise GeoError("target_psnr applies to dmenet; JPEG 2000 takes jpeg2k_level (a PSNR target)")
        if source.dtype not in ("uint8", "uint16", "int16"):
            raise GeoError(f"JPEG 2000 codes uint8, uint16 and int16 rasters, not {source.dtype}")
        chunk_codec = Jpeg2kCodec(level=jpeg2k_level)
        serializer = chunk_codec.codec_id
        codec_config = chunk_codec.get_config()
    elif codec == "dmenet":
        if refine and target_psnr is not None:
            raise GeoError("refine applies to a fixed quality, not to target_psnr")
        serializer = "dmenet"
        try:
            dmenet_codec = DMENetCodec(quality=quality, nodata=source.nodata, model=model, refine=refine)
        except DMENetCodecError as exc:  # e.g. refine out of range
            raise GeoError(str(exc)) from None
        codec_config = dmenet_codec.get_config()
    else:
        raise GeoError(f"codec must be 'dmenet' or 'jpeg2k', got {codec!r}")
    codec_config.pop("id", None)
    register_codecs()

    partial = dst if in_place else f"{dst}.partial-{uuid.uuid4().hex[:12]}"
    key = resume_key(source, selected, factors, chunk, quality, target_psnr, psnr_samples,
                             serializer, codec_config)
    resuming = prepare_in_place(dst, key, resume, overwrite) if in_place else False
    reused: dict[tuple[int, int], int] = {}
    try:
        meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "complete": False}
        if resuming:
            found = RawChunkIO(dst).existing([(0, i, j) for i, j in selected])
            reused = {(c[1], c[2]): n for c, n in found.items()}
            for level in range(1, len(factors) + 1):  # recomputed in full below
                remove_tree(join(dst, overview_path(level), IMAGE, "c"))
        else:
            create_store(partial, source, chunk, codec_config, factors, meta, serializer=serializer)
            if in_place:  # recorded last: from here on an interrupted run can be resumed
                update_root_attrs(partial, {META_KEY: {**meta, "resume_key": key}})
        settings = EncodeSettings(
            source=source,
            grid=grid,
            chunk_shape=(min(chunk, source.height), min(chunk, source.width)),
            quality=quality,
            target_psnr=None if target_psnr is None else float(target_psnr),
            model=model,
            overview_factors=factors,
            mask_factor=mask_factor,
            sample=_sample(selected, psnr_samples),
            store=RawChunkIO(partial),
            codec=chunk_codec,
            refine=refine,
        )
        blocks = grid.blocks(selected, chunks_per_task)
        mask_shape = (math.ceil(source.height / mask_factor), math.ceil(source.width / mask_factor))
        mask = np.zeros(mask_shape, dtype=bool)
        written: dict[tuple[int, int], int] = {}
        qualities: dict[tuple[int, int], float] = {}
        psnrs: dict[tuple[int, int], float] = {}
        skipped = 0
        wave = max(2, 2 * (num_workers or os.cpu_count() or 1))
        with tqdm(total=len(selected), unit="chunk", desc="compress", disable=not progress) as bar:
            for start in range(0, len(blocks), wave):
                todo = blocks[start : start + wave]
                tasks = [
                    dask.delayed(process_block, pure=False)(
                        b, settings, {ij: reused[ij] for ij in b.chunks if ij in reused} or None)
                    for b in todo
                ]
                kwargs: dict[str, Any] = {}
                if scheduler is not None:
                    kwargs["scheduler"] = scheduler
                    if scheduler not in ("sync", "synchronous", "single-threaded") and num_workers:
                        kwargs["num_workers"] = num_workers
                with _progress_callback(bar):
                    results: tuple[BlockResult, ...] = dask.compute(*tasks, **kwargs)
                for res in results:
                    written.update(res.written)
                    qualities.update(res.qualities)
                    psnrs.update(res.psnr)
                    skipped += res.skipped_nodata
                    for level, (f, cells) in enumerate(zip(factors, res.overviews, strict=True), start=1):
                        write_overview_region(partial, level, res.row // f, res.col // f, cells)
                    if res.mask is not None:
                        r, c = res.row // mask_factor, res.col // mask_factor
                        mask[r : r + res.mask.shape[0], c : c + res.mask.shape[1]] |= res.mask
        footprint = trace_footprint(mask, source.transform, mask_factor, source.crs, source.height,
                                    source.width)
        summary = CompressSummary.build(
            store=dst, source=source, chunk=chunk, quality=quality, target_psnr=target_psnr,
            chunks_total=grid.count, chunks_selected=len(selected), written=written, qualities=qualities,
            psnrs=psnrs, skipped_nodata=skipped, overview_factors=factors,
            overview_bytes=tree_bytes(join(partial, "overviews")),
            footprint=footprint, seconds=0.0,
        )
        meta = summary.store_metadata()
        meta.update({"format_version": FORMAT_VERSION, "complete": True,
                     "model": model if chunk_codec is None else None, "serializer": serializer,
                     "codec": codec_config, "footprint_factor": mask_factor,
                     "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
        if in_place:
            meta["resume_key"] = key
            if not is_url(partial):
                remove_temp_files(partial)
        root_attrs: dict[str, Any] = {META_KEY: meta}
        if footprint is not None:
            root_attrs["footprint"] = footprint.geojson
            root_attrs["footprint_wkt"] = footprint.wkt
        finalize_store(partial, root_attrs)
        if not in_place:
            replace_store(partial, dst, overwrite)
    except BaseException:
        if not resume:  # a resumable store is kept for the next run
            remove_tree(partial)
        raise
    store_bytes = tree_bytes(dst) if is_url(dst) else directory_bytes(Path(dst))
    return summary.finished(seconds=time.perf_counter() - t0, store_bytes=store_bytes)
