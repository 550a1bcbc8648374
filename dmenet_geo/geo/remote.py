"""Local paths and object-storage URLs (``s3://bucket/key``, any fsspec protocol) behind one small API,
and the GDAL configuration that lets rasterio read ``s3://`` GeoTIFFs from a custom endpoint.

Credentials and endpoints come from the environment only, as every AWS tool reads them:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``, ``AWS_PROFILE``...),
``AWS_DEFAULT_REGION``/``AWS_REGION`` and, for S3-compatible stores, ``AWS_ENDPOINT_URL``
(``http://host:port``; read natively by botocore/s3fs) or GDAL's ``AWS_S3_ENDPOINT`` (``host:port`` with
``AWS_HTTPS=NO`` for plain HTTP). Either one is translated into the other, so setting one is enough.
Nothing here logs or returns a credential.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "exists",
    "file_identity",
    "filesystem",
    "gdal_options",
    "is_url",
    "join",
    "list_sizes",
    "normalize",
    "read_json",
    "remove_tree",
    "storage_options",
    "tree_bytes",
    "write_bytes_atomic",
    "zarr_store",
]


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``protocol://...`` (except ``file://``)."""
    s = os.fspath(path)
    return "://" in s and not s.startswith("file://")


def normalize(path: str | os.PathLike[str]) -> str:
    """An absolute local path, or the URL without a trailing slash."""
    s = os.fspath(path)
    if s.startswith("file://"):
        s = s[len("file://"):]
    return s.rstrip("/") if is_url(s) else os.path.abspath(s)


def join(base: str, *parts: str) -> str:
    if is_url(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def _endpoint_url() -> str | None:
    """The S3 endpoint as a URL (from ``AWS_ENDPOINT_URL[_S3]`` or GDAL's ``AWS_S3_ENDPOINT``)."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if url:
        return url
    host = os.environ.get("AWS_S3_ENDPOINT")
    if host:
        if "://" in host:
            return host
        https = os.environ.get("AWS_HTTPS", "YES").upper() not in ("NO", "FALSE", "OFF", "0")
        return f"{'https' if https else 'http'}://{host}"
    return None


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for a URL; S3 gets the endpoint from the environment."""
    import fsspec

    protocol = url.split("://", 1)[0]
    kwargs: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        endpoint = _endpoint_url()
        if endpoint:
            kwargs["endpoint_url"] = endpoint
    fs, path = fsspec.core.url_to_fs(url, **kwargs)
    return fs, path


def storage_options(url: str) -> dict[str, Any] | None:
    """The fsspec ``storage_options`` zarr/xarray need to open ``url`` (``None`` for local paths)."""
    if not is_url(url):
        return None
    if url.split("://", 1)[0] in ("s3", "s3a"):
        endpoint = _endpoint_url()
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


def zarr_store(path: str, read_only: bool = False) -> Any:
    """What to pass to ``zarr.open_*`` as ``store``: the path itself, or an ``FsspecStore`` for a URL."""
    if not is_url(path):
        return path
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(path, storage_options=storage_options(path), read_only=read_only)


def gdal_options(path: str | os.PathLike[str]) -> dict[str, str]:
    """GDAL config options for reading ``s3://`` through ``/vsis3/`` from the endpoint in
    ``AWS_ENDPOINT_URL`` (GDAL itself only reads ``AWS_S3_ENDPOINT``); empty when nothing is needed."""
    s = os.fspath(path)
    if not s.startswith("s3://") or os.environ.get("AWS_S3_ENDPOINT"):
        return {}
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return {}
    parts = urlsplit(url)
    return {
        "AWS_S3_ENDPOINT": parts.netloc,
        "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    fs, p = filesystem(path)
    return bool(fs.exists(p))


def read_json(path: str) -> Any | None:
    """The JSON document at ``path`` (``None`` when missing or unreadable)."""
    try:
        if is_url(path):
            fs, p = filesystem(path)
            with fs.open(p, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
        return json.loads(data)
    except (OSError, ValueError):
        return None


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write a whole object: a temporary file renamed into place locally (``os.replace``), one PUT on
    object storage (atomic there). A reader never sees a partial object."""
    if is_url(path):
        fs, p = filesystem(path)
        fs.pipe_file(p, data)
        return
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.dmenet-tmp-{os.urandom(6).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_tree(path: str) -> None:
    """Remove a directory / every object under a prefix (missing is fine)."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, p = filesystem(path)
    try:
        if fs.exists(p):
            fs.rm(p, recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache()


def _walk_local(root: str) -> Iterator[tuple[str, int]]:
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            try:
                size = os.stat(full).st_size
            except OSError:  # removed meanwhile
                continue
            yield os.path.relpath(full, root).replace(os.sep, "/"), size


def list_sizes(prefix: str) -> dict[str, int]:
    """``{key relative to prefix: size}`` of every file/object under ``prefix`` (``{}`` if none)."""
    if not is_url(prefix):
        return dict(_walk_local(prefix)) if os.path.isdir(prefix) else {}
    fs, p = filesystem(prefix)
    fs.invalidate_cache()
    try:
        found = fs.find(p, detail=True)
    except FileNotFoundError:
        return {}
    base = p.rstrip("/") + "/"
    return {k[len(base):]: int(v.get("size") or 0) for k, v in found.items() if k.startswith(base)}


def tree_bytes(path: str) -> int:
    """Total size of the files/objects under ``path``."""
    return sum(list_sizes(path).values())


def file_identity(path: str) -> dict[str, Any]:
    """What tells one version of a file from another: size and modification time (plus the ETag on
    object storage). Empty when it cannot be read (then only the path identifies the source)."""
    try:
        if not is_url(path):
            st = os.stat(path)
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        fs, p = filesystem(path)
        info = fs.info(p)
        return {"size": info.get("size"), "etag": info.get("ETag") or info.get("etag"),
                "mtime": str(info.get("LastModified") or info.get("mtime") or "")}
    except (OSError, ValueError, ImportError):
        return {}
