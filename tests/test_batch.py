"""Batch jobs in this process (a threads LocalCluster): inputs, the report, bad inputs among good ones,
skipping finished scenes, the STAC catalog, the CLI, and chunk-level resume of ``compress_geotiff``.

Kills (client, worker) are in ``test_batch_resume.py``; object storage in ``test_batch_s3.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    CHUNK,
    CHUNKS_PER_TASK,
    assert_same_contents,
    decoded,
    options,
    write_bad,
    write_good,
)
from test_geo_common import FAST, UINT8_RGB, UINT16_RGB

from dmenet_geo.archive import MARKER, read_marker, resolve_inputs, run_batch, validate_catalog
from dmenet_geo.archive.report import redact
from dmenet_geo.geo import GeoError, compress_geotiff


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Two good rasters and three bad ones, compressed once."""
    root = tmp_path_factory.mktemp("batch")
    write_good(root / "in")
    bad = write_bad(root / "in")
    report = run_batch([str(root / "in")], root / "out", options(), processes=False, workers=2,
                       progress=False)
    return {"root": root, "out": root / "out", "report": report, "bad": bad}


# ------------------------------------------------------------------------------------------ inputs
def test_inputs_files_folders_globs_manifests(tmp_path):
    good = write_good(tmp_path / "a")
    (tmp_path / "a" / "sub").mkdir()
    shutil.copy(UINT16_RGB, tmp_path / "a" / "sub" / "deep.tif")
    (tmp_path / "b").mkdir()
    shutil.copy(UINT8_RGB, tmp_path / "b" / "landsat7.tif")  # same name as a/landsat7.tif
    (tmp_path / "list.txt").write_text("# a manifest\n\na/landsat5.tif\nb/*.tif\n")
    (tmp_path / "named.json").write_text(json.dumps([{"src": "a/sub/deep.tif", "name": "deep scene"}]))
    out = str(tmp_path / "out")

    scenes = resolve_inputs([str(tmp_path / "a")], out)
    assert [s.name for s in scenes] == ["landsat5", "landsat7"]
    assert [s.source for s in scenes] == [str(p) for p in sorted(good)]
    assert scenes[0].store == os.path.join(out, "landsat5.zarr")
    assert len(resolve_inputs([str(tmp_path / "a")], out, recursive=True)) == 3

    scenes = resolve_inputs([str(tmp_path / "a" / "*.tif"), f"@{tmp_path / 'list.txt'}",
                             str(tmp_path / "named.json"), str(tmp_path / "nothing-*.tif")], out)
    by_source = {s.source: s for s in scenes}
    assert len(scenes) == 5  # a/landsat5 listed twice: kept once
    l7a = by_source[str(tmp_path / "a" / "landsat7.tif")]
    l7b = by_source[str(tmp_path / "b" / "landsat7.tif")]
    assert l7a.name != l7b.name and l7a.name.startswith("landsat7-") and l7b.name.startswith("landsat7-")
    assert by_source[str(tmp_path / "a" / "landsat5.tif")].name == "landsat5"
    assert by_source[str(tmp_path / "a" / "sub" / "deep.tif")].name == "deep_scene"
    unmatched = [s for s in scenes if s.error]
    assert len(unmatched) == 1 and "matched no" in unmatched[0].error
    # the names are a function of the inputs: a re-run finds the same stores
    again = resolve_inputs([str(tmp_path / "a" / "*.tif"), f"@{tmp_path / 'list.txt'}",
                            str(tmp_path / "named.json"), str(tmp_path / "nothing-*.tif")], out)
    assert again == scenes


def test_redact_removes_signed_queries_and_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    text = redact("GET https://bucket.s3.amazonaws.com/a.tif?X-Amz-Signature=abc&X-Amz-Credential=k failed "
                  "with key s3cr3t-value-xyz")
    assert "X-Amz" not in text and "s3cr3t" not in text and "https://bucket.s3.amazonaws.com/a.tif" in text


# ------------------------------------------------------------------------------------------ report
def test_report_statuses_errors_and_totals(job):
    report = job["report"]
    by_name = {s.name: s for s in report.scenes}
    assert set(by_name) == {"landsat5", "landsat7", "corrupt", "truncated", "nocrs"}
    assert {n for n, s in by_name.items() if s.status == "done"} == {"landsat5", "landsat7"}
    assert {n for n, s in by_name.items() if s.status == "failed"} == {"corrupt", "truncated", "nocrs"}
    assert not report.ok
    assert "no CRS" in by_name["nocrs"].error
    assert "not a readable raster" in by_name["corrupt"].error
    assert by_name["truncated"].error  # fails when its pixels are read
    for name in ("landsat5", "landsat7"):
        s = by_name[name]
        assert s.error is None and s.psnr is not None and s.psnr > 0 and s.ratio > 1
        assert s.bytes_in > s.bytes_out > 0 and s.chunks_written > 0 and s.chunks_reused == 0
        meta = read_marker(s.store)
        assert meta is not None and meta["summary"]["bytes_out"] == s.bytes_out
    totals = report.totals()
    assert totals["done"] == 2 and totals["failed"] == 3 and totals["skipped"] == 0
    assert totals["bytes_in"] == by_name["landsat5"].bytes_in + by_name["landsat7"].bytes_in
    assert totals["throughput_mb_s"] > 0 and totals["chunks_per_s"] > 0
    assert totals["chunks_encoded"] == sum(by_name[n].chunks_written for n in ("landsat5", "landsat7"))
    on_disk = json.loads((job["out"] / "batch-report.json").read_text())
    assert on_disk["ok"] is False and on_disk["totals"]["failed"] == 3
    psnrs = {s["name"]: s["psnr"] for s in on_disk["scenes"]}
    assert psnrs["landsat7"] == pytest.approx(by_name["landsat7"].psnr) and psnrs["corrupt"] is None
    text = str(report)
    assert "2 done, 0 skipped (already complete), 3 failed" in text and "FAILED" in text and "PSNR" in text
    # the failed scenes left no marker: they are never reported done
    assert not (job["out"] / "truncated.zarr" / MARKER).exists()


def test_stores_equal_single_scene_compression(job, tmp_path):
    single = tmp_path / "single.zarr"
    compress_geotiff(UINT8_RGB, single, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    a, b = decoded(job["out"] / "landsat7.zarr"), decoded(single)
    a["meta"].pop("resume_key"), a["meta"].pop("source"), b["meta"].pop("source")
    assert_same_contents(a, b, "batch vs compress_geotiff")


def test_rerun_skips_finished_scenes_and_keeps_them(job, tmp_path):
    out = job["out"]
    marker = out / "landsat7.zarr" / MARKER
    before = marker.stat().st_mtime_ns
    report = run_batch([str(job["root"] / "in" / "landsat*.tif")], out, options(), processes=False, workers=1,
                       progress=False, report_path=str(tmp_path / "r.json"))
    assert report.ok and [s.status for s in report.scenes] == ["skipped", "skipped"]
    assert report.totals()["chunks_encoded"] == 0 and marker.stat().st_mtime_ns == before
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["skipped"] == 2
    # other settings: refused per scene, not silently mixed into the finished store
    for changed in ({"quality": 6.0}, {"refine": 2}):
        other = options().__class__(chunk=CHUNK, chunks_per_task=CHUNKS_PER_TASK, **changed)
        report = run_batch([str(job["root"] / "in" / "landsat7.tif")], out, other, processes=False, workers=1,
                           progress=False, catalog=False, report_path=str(tmp_path / "r2.json"))
        assert not report.ok and "other settings" in report.scenes[0].error, changed
        assert marker.stat().st_mtime_ns == before


def test_output_settings_name_refine_only_when_on() -> None:
    from dmenet_geo.archive import BatchOptions

    # a job without refinement digests its settings as before the option existed
    assert "refine" not in BatchOptions().output_settings()
    assert BatchOptions(refine=5).output_settings()["refine"] == 5
    assert "device" not in BatchOptions(device="cpu").output_settings()


# -------------------------------------------------------------------------------------------- STAC
def test_stac_catalog_validates_and_describes_scenes(job):
    import pystac
    import shapely.geometry

    from dmenet_geo.archive.stac import ZARR_MEDIA_TYPE

    catalog = pystac.Catalog.from_file(str(job["out"] / "catalog.json"))
    not_validated = validate_catalog(catalog)  # core STAC + GeoJSON schemas always (bundled)
    assert set(not_validated) <= {"https://stac-extensions.github.io/projection/v2.0.0/schema.json"}
    items = {i.id: i for i in catalog.get_items(recursive=True)}
    assert set(items) == {"landsat5", "landsat7"}  # failed scenes have no item
    for name, item in items.items():
        asset = item.assets["data"]
        assert asset.media_type == ZARR_MEDIA_TYPE == "application/vnd+zarr" and "data" in asset.roles
        store = Path(asset.get_absolute_href())
        assert store == (job["out"] / f"{name}.zarr").resolve()
        summary = read_marker(str(store))["summary"]
        assert item.properties["dmenet:ratio"] == summary["ratio"]
        assert item.properties["dmenet:psnr"] == summary["psnr"]
        assert item.properties["dmenet:quality"] == 4.0
        geom = shapely.geometry.shape(item.geometry)
        assert geom.is_valid and geom.area > 0
        lon, lat = geom.centroid.x, geom.centroid.y
        assert -180 <= lon <= 180 and -90 <= lat <= 90
        assert item.bbox == pytest.approx(list(geom.bounds))
        assert item.properties["proj:shape"] == [summary["height"], summary["width"]]
        assert item.properties["proj:code"] == summary["crs"]
    assert items["landsat5"].datetime.isoformat() == "2021-06-15T10:30:00+00:00"
    assert items["landsat5"].properties["dmenet:datetime_source"] == "TIFFTAG_DATETIME"
    l7 = items["landsat7"]  # no TIFFTAG_DATETIME: null datetime + the documented interval
    assert l7.datetime is None and l7.properties["start_datetime"] == "1970-01-01T00:00:00Z"
    assert l7.properties["end_datetime"] > "2000"


def test_stac_without_extensions_passes_plain_validate_all(job):
    """Everything needed offline: with no extension, pystac's default validator uses only its bundled
    schemas, and ``catalog.validate_all()`` must pass as is."""
    import pystac

    from dmenet_geo.archive import build_catalog

    markers = [(n, read_marker(str(job["out"] / f"{n}.zarr"))) for n in ("landsat5", "landsat7")]
    catalog = build_catalog(str(job["out"]), markers, projection=False)
    assert catalog.validate_all() == 2
    assert isinstance(catalog, pystac.Catalog)


def test_existing_cluster_by_scheduler_address(job, tmp_path):
    """``scheduler=ADDRESS`` drives an existing cluster through the same code path."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        report = run_batch([str(job["root"] / "in" / "landsat7.tif")], tmp_path / "out", options(),
                           scheduler=cluster.scheduler_address, progress=False)
        assert report.ok and report.scenes[0].status == "done"
        assert report.scheduler == cluster.scheduler_address
        assert report.scenes[0].worker in cluster.workers[0].address
    assert_same_contents(decoded(tmp_path / "out" / "landsat7.zarr"), decoded(job["out"] / "landsat7.zarr"))


# --------------------------------------------------------------------------------------------- CLI
def test_cli_batch_exit_status(job, tmp_path, capsys):
    from dmenet_geo.cli.main import main

    good = job["root"] / "in" / "landsat7.tif"
    args = ["batch", str(good), "--out", str(job["out"]), "--chunk", str(CHUNK), "--chunks-per-task",
            str(CHUNKS_PER_TASK), "--in-process", "--workers", "1", "-q",
            "--report", str(tmp_path / "r.json")]
    assert main(args) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main([*args[:2], str(job["bad"]["nocrs"]), *args[2:], "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["totals"]["failed"] == 1 and doc["totals"]["skipped"] == 1
    assert "1 of 2 scenes failed" in captured.err
    assert main(["batch", str(tmp_path / "none-*.tif"), "--out", str(tmp_path / "o"), "-q",
                 "--in-process"]) == 1
    capsys.readouterr()
    assert main(["batch", str(good), "--out", str(tmp_path / "m"), "--model", "nope", "-q",
                 "--in-process"]) == 1
    assert "unknown model 'nope'; shipped: default" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before anything was written


# ------------------------------------------------------------------------- resumable compress_geotiff
def _stored_chunks(store: Path) -> list[Path]:
    return sorted(p for p in (store / "image" / "c").rglob("*") if p.is_file())


def test_compress_resume_encodes_only_missing_chunks(tmp_path, monkeypatch):
    from dmenet_geo.geo import tasks

    clean = tmp_path / "clean.zarr"
    compress_geotiff(UINT16_RGB, clean, resume=True, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    expected = decoded(clean)
    chunks = _stored_chunks(clean)
    assert len(chunks) == 9
    # an interrupted run: the completion flag not set yet, 4 chunks missing, a half-written temp file
    partial = tmp_path / "partial.zarr"
    shutil.copytree(clean, partial)
    meta_file = partial / "zarr.json"
    doc = json.loads(meta_file.read_text())
    doc["attributes"]["dmenet_geo"]["complete"] = False
    meta_file.write_text(json.dumps(doc))
    with pytest.raises(GeoError, match="incomplete"):
        decoded(partial)
    removed = [p.relative_to(partial) for p in _stored_chunks(partial)[::2]]
    for rel in removed:
        (partial / rel).unlink()
    (partial / "image" / "c" / "0" / "0" / ".1.dmenet-tmp-123456").write_bytes(b"DMNT half")
    encoded: list[int] = []
    original = tasks.encode_fixed

    def counting(arrays, *a, **k):
        encoded.append(len(arrays))
        return original(arrays, *a, **k)

    monkeypatch.setattr(tasks, "encode_fixed", counting)
    summary = compress_geotiff(UINT16_RGB, partial, resume=True, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    assert sum(encoded) == len(removed) == 5
    assert summary.chunks_written == 9
    got = decoded(partial)
    assert_same_contents(got, expected, "resumed vs clean")
    assert not [p for p in partial.rglob("*") if ".dmenet-tmp-" in p.name]
    # resuming a finished store re-encodes nothing
    encoded.clear()
    compress_geotiff(UINT16_RGB, partial, resume=True, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    assert sum(encoded) == 0
    # other settings never mix with the stored chunks
    with pytest.raises(GeoError, match="other settings"):
        compress_geotiff(UINT16_RGB, partial, quality=5, resume=True, **FAST)
    compress_geotiff(UINT16_RGB, partial, quality=5, resume=True, overwrite=True, **FAST)
    assert decoded(partial)["meta"]["quality"] == 5


def test_compress_resume_target_psnr_measures_stored_chunks(tmp_path):
    kwargs = {"target_psnr": 12.0, "chunks_per_task": 4, "resume": True, **FAST}
    clean = tmp_path / "clean.zarr"
    compress_geotiff(UINT8_RGB, clean, **kwargs)
    partial = tmp_path / "partial.zarr"
    shutil.copytree(clean, partial)
    for p in _stored_chunks(partial)[1::3]:
        p.unlink()
    compress_geotiff(UINT8_RGB, partial, **kwargs)
    a, b = decoded(clean), decoded(partial)
    assert_same_contents(a, b, "target-PSNR resume")
    assert a["meta"]["quality_mean"] == b["meta"]["quality_mean"] and a["meta"]["psnr"] == b["meta"]["psnr"]


def test_compress_resume_refuses_foreign_directories(tmp_path):
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"x")
    with pytest.raises(GeoError, match="already exists"):
        compress_geotiff(UINT8_RGB, foreign, resume=True, **FAST)
    assert (foreign / "data.bin").exists()
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    summary = compress_geotiff(UINT8_RGB, empty, resume=True, **FAST)
    assert summary.chunks_written == 9 and np.isfinite(summary.ratio)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("proj:shape", [10], "proj:shape"),
        ("proj:shape", [10.5, 3], "proj:shape"),
        ("proj:transform", [1, 0, 0], "proj:transform"),
        ("proj:bbox", ["a", 1, 2, 3], "proj:bbox"),
        ("proj:code", "4326", "AUTHORITY:CODE"),
        ("proj:code", 4326, "string or null"),
    ],
    ids=["shape-len", "shape-float", "transform-len", "bbox-type", "code-form", "code-type"],
)
def test_projection_field_check_finds_each_broken_field(job, field, value, problem):
    import pystac

    from dmenet_geo.archive.stac import check_projection_fields

    catalog = pystac.Catalog.from_file(str(job["out"] / "catalog.json"))
    item = next(iter(catalog.get_items(recursive=True)))
    assert check_projection_fields(item.properties) == []
    item.properties[field] = value
    assert any(problem in p for p in check_projection_fields(item.properties))


def test_validate_catalog_rejects_a_broken_projection_offline(job, monkeypatch):
    import pystac
    from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

    original = JsonSchemaSTACValidator._get_schema

    def offline(self, uri):  # whatever the network: the extension schema cannot be had
        if "stac-extensions" in uri:
            raise GetSchemaError(uri, OSError("offline"))
        return original(self, uri)

    monkeypatch.setattr(JsonSchemaSTACValidator, "_get_schema", offline)
    catalog = pystac.Catalog.from_file(str(job["out"] / "catalog.json"))
    assert validate_catalog(catalog) == ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"]
    item = next(iter(catalog.get_items(recursive=True)))
    item.properties["proj:shape"] = [0, 5]
    with pytest.raises(pystac.STACValidationError, match="proj:shape"):
        validate_catalog(catalog)
