"""Object storage against a real S3 endpoint: moto's server on 127.0.0.1 (a free port), started by
these tests, with dummy credentials set in this process's environment only.

GeoTIFFs are read from ``s3://`` (GDAL's /vsis3/ with the endpoint from ``AWS_ENDPOINT_URL``), stores,
markers, the STAC catalog and the report are written to ``s3://`` (zarr's FsspecStore over s3fs), and
``dmenet_geo.open_dataset`` reads a store back over S3 to compare it with a local run.
"""

from __future__ import annotations

import json

import pytest
from batch_helpers import (
    CHUNKS_PER_TASK,
    S3_ENV,
    assert_same_contents,
    decoded,
    moto_s3,
    options,
    write_bad,
    write_good,
)
from test_geo_common import FAST

import dmenet_geo
from dmenet_geo.archive import MARKER, run_batch, validate_catalog
from dmenet_geo.geo import compress_geotiff

BUCKET = "dmenet-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import boto3

    local = tmp_path_factory.mktemp("s3src")
    good = write_good(local / "in")
    bad = write_bad(local / "in")
    with pytest.MonkeyPatch.context() as mp, moto_s3() as endpoint:
        for k, v in S3_ENV.items():
            mp.setenv(k, v)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        for var in ("AWS_S3_ENDPOINT", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(var, raising=False)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        for p in [*good, bad["corrupt"]]:
            client.upload_file(str(p), BUCKET, f"scenes/{p.name}")
        yield {"client": client, "local": local, "good": good}


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_s3_round_trip_equals_local(s3, tmp_path):
    out = f"s3://{BUCKET}/archive"
    report = run_batch([f"s3://{BUCKET}/scenes/"], out, options(), processes=False, workers=2, progress=False)
    by_name = {s.name: s for s in report.scenes}
    assert by_name["landsat7"].status == by_name["landsat5"].status == "done"
    assert by_name["corrupt"].status == "failed" and not report.ok
    keys = _keys(s3["client"], "archive/")
    assert "archive/landsat7.zarr/zarr.json" in keys and f"archive/landsat7.zarr/{MARKER}" in keys
    assert "archive/catalog.json" in keys and "archive/items/landsat7.json" in keys
    assert "archive/batch-report.json" in keys and f"archive/corrupt.zarr/{MARKER}" not in keys
    # read back over S3 and compare with a local single-scene run of the same file
    local = tmp_path / "local.zarr"
    compress_geotiff(s3["local"] / "in" / "landsat7.tif", local, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    remote = decoded(f"{out}/landsat7.zarr")
    expected = decoded(local)
    for d in (remote, expected):
        d["meta"].pop("resume_key", None)
        d["meta"].pop("source")
    assert_same_contents(remote, expected, "S3 store vs local store")
    ds = dmenet_geo.open_dataset(f"{out}/landsat7.zarr")
    assert ds["image"].rio.crs.to_epsg() == 32618
    info = dmenet_geo.store_info(f"{out}/landsat7.zarr")
    assert info.store == f"{out}/landsat7.zarr" and info.store_bytes > info.bytes_out > 0
    # the catalog on S3 is readable and valid
    import pystac

    from dmenet_geo.archive.stac import stac_io

    catalog = pystac.Catalog.from_file(f"{out}/catalog.json", stac_io=stac_io())
    validate_catalog(catalog)
    assert {i.id for i in catalog.get_items(recursive=True)} == {"landsat5", "landsat7"}
    # no credential anywhere in what the job wrote or printed
    body = s3["client"].get_object(Bucket=BUCKET, Key="archive/batch-report.json")["Body"].read().decode()
    marker = s3["client"].get_object(Bucket=BUCKET, Key=f"archive/landsat7.zarr/{MARKER}")["Body"].read()
    for text in (body, marker.decode(), str(report)):
        assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in text and S3_ENV["AWS_ACCESS_KEY_ID"] not in text
        assert "X-Amz-Signature" not in text
    assert json.loads(body)["totals"]["done"] == 2
    # a second run finds everything done on S3
    again = run_batch([f"s3://{BUCKET}/scenes/landsat*.tif"], out, options(), processes=False, workers=1,
                      progress=False, catalog=False, report_path=str(tmp_path / "r.json"))
    assert again.ok and [s.status for s in again.scenes] == ["skipped", "skipped"]


def test_s3_chunk_level_resume(s3):
    """An interrupted S3 store (completion flag unset, chunk objects missing) is finished by a resumed
    run that encodes only the missing chunks, and then decodes like the uninterrupted store."""
    from dmenet_geo.geo import tasks

    src = f"s3://{BUCKET}/scenes/landsat5.tif"
    clean, partial = f"s3://{BUCKET}/resume/clean.zarr", f"s3://{BUCKET}/resume/partial.zarr"
    compress_geotiff(src, clean, resume=True, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    client = s3["client"]
    for key in _keys(client, "resume/clean.zarr/"):
        client.copy_object(Bucket=BUCKET, Key=key.replace("clean.zarr", "partial.zarr"),
                           CopySource={"Bucket": BUCKET, "Key": key})
    doc = json.loads(client.get_object(Bucket=BUCKET, Key="resume/partial.zarr/zarr.json")["Body"].read())
    doc["attributes"]["dmenet_geo"]["complete"] = False
    client.put_object(Bucket=BUCKET, Key="resume/partial.zarr/zarr.json", Body=json.dumps(doc).encode())
    chunks = [k for k in _keys(client, "resume/partial.zarr/image/c/")]
    removed = chunks[::2]
    for key in removed:
        client.delete_object(Bucket=BUCKET, Key=key)
    calls: list[int] = []
    original = tasks.encode_fixed
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tasks, "encode_fixed", lambda arrays, *a, **k: calls.append(len(arrays)) or original(
            arrays, *a, **k))
        compress_geotiff(src, partial, resume=True, chunks_per_task=CHUNKS_PER_TASK, **FAST)
    assert sum(calls) == len(removed) > 0
    assert_same_contents(decoded(partial), decoded(clean), "S3 resume")


def test_s3_lease_blocks_second_job_until_released_expired_or_broken(s3):
    from dmenet_geo.archive import JobLockedError, job_lock
    from dmenet_geo.archive.lock import LOCK_NAME

    out = f"s3://{BUCKET}/leased"
    key = f"leased/{LOCK_NAME}"
    with job_lock(out):
        assert key in _keys(s3["client"], "leased/")
        with pytest.raises(JobLockedError, match="lease expires"):
            with job_lock(out):
                pass
    assert key not in _keys(s3["client"], "leased/")  # released on exit
    # a killed job's lease (not released) blocks until it expires, or until --break-lock
    s3["client"].put_object(
        Bucket=BUCKET, Key=key, Body=json.dumps({"token": "dead", "pid": 1, "host": "h", "since": 0,
                                                 "expires": 4e9}).encode()
    )
    with pytest.raises(JobLockedError, match="--break-lock"):
        with job_lock(out):
            pass
    with job_lock(out, break_lock=True):
        body = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert body["token"] != "dead"
    s3["client"].put_object(
        Bucket=BUCKET, Key=key, Body=json.dumps({"token": "old", "since": 0, "expires": 1.0}).encode()
    )
    with job_lock(out):  # expired: taken over without --break-lock
        pass
