"""Shared helpers for the DMENet codec tests (``tests/test_codec*.py``).

Everything a test needs to build inputs, measure errors, run code in a fresh interpreter and take a
chunk apart lives here, together with the **quality thresholds** (one place: raise them when trained
weights replace the placeholder in ``dmenet_geo/weights/default.pt``).

Golden chunks (``tests/golden/fixture/dmenet``) are bound to the SHA-256 of the shipped weights. They
are only ever (re)written when the environment variable ``DMENET_REGENERATE_GOLDEN=1`` is set::

    DMENET_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/test_codec_numcodecs.py -k golden

This module imports no torch and no ``dmenet_geo`` at import time (subprocess helpers stay cheap).
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent
GOLDEN_DIR = TESTS_DIR / "golden"
SAMPLE_TILES = REPO_ROOT / "sample_tiles"
WEIGHTS_SIDECAR = REPO_ROOT / "dmenet_geo" / "weights" / "default.json"

# ------------------------------------------------------------------------------------ thresholds
# PSNR floors about 3 dB under what the shipped default decodes (session 23: the real tile at the
# default quality 31.0 dB; the synthetic rasters 20.9-33.2 dB, the lowest the 16-band int16 raster
# at quality 1). The error bounds below date from untrained weights and stay structural: the
# tighter values in their comments failed about 30 tests on the noise-like synthetic rasters.

#: PSNR (dB, peak 255) of a real 3-band uint8 tile at the default quality.
PSNR_MIN_DB = 28.0
#: PSNR (dB, peak = the band's value range) of the synthetic rasters.
PSNR_MIN_DB_SYNTHETIC = 18.0
#: Max abs error as a fraction of a band's (hi - lo) range, plus 1 for integer rounding. The decoder
#: clamps to [0, 1] in model space, so 1.0 is the structural bound (trained: ~0.3).
MAX_ABS_ERR_REL = 1.0
#: Mean abs error as a fraction of the band range (trained: ~0.03).
MEAN_ABS_ERR_REL = 0.6
#: ``decimal`` for numcodecs' check_encode_decode / check_backwards_compatibility on uint8 arrays:
#: ``abs(err) < 1.5 * 10**-decimal``, i.e. < 150 grey levels (trained: -1, i.e. < 15).
UINT8_DECIMAL = -2

#: Seconds a fresh interpreter may take for one job (import torch + load weights + the job).
SUBPROCESS_TIMEOUT_S = 240
#: Env var that allows the golden test to (re)write tests/golden/fixture/dmenet.
REGENERATE_ENV = "DMENET_REGENERATE_GOLDEN"
REGENERATE_HINT = f"{REGENERATE_ENV}=1 .venv/bin/pytest tests/test_codec_numcodecs.py -k golden"


def regenerate_golden() -> bool:
    return os.environ.get(REGENERATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def shipped_sha256(model: str = "default") -> str:
    """The SHA-256 the shipped weights' sidecar records (no torch)."""
    sidecar = WEIGHTS_SIDECAR.with_name(f"{model}.json")
    return str(json.loads(sidecar.read_text())["sha256"])


# ------------------------------------------------------------------------------------ test inputs


def smooth_field(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth float64 field in [0, 1] of shape (h, w): gradients, low-frequency waves, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    a, b, c = rng.uniform(0.5, 3.0, 3)
    f = 0.45 * (xx * a + yy * b) / (a + b) + 0.25 * np.sin(2 * np.pi * c * xx + seed) * np.cos(
        2 * np.pi * (c / 2) * yy
    )
    f += 0.02 * rng.standard_normal((h, w))
    f -= f.min()
    top = f.max()
    return f / top if top > 0 else f


def raster(
    bands: int,
    h: int,
    w: int,
    dtype: str = "uint8",
    seed: int = 0,
    lo: float | None = None,
    hi: float | None = None,
) -> np.ndarray:
    """A (bands, h, w) raster of smooth bands, each scaled to [lo, hi] (dtype-typical defaults)."""
    defaults = {"uint8": (10.0, 240.0), "uint16": (200.0, 12000.0), "int16": (-3000.0, 2500.0),
                "float32": (-1.5, 40.0)}
    dlo, dhi = defaults[dtype]
    lo = dlo if lo is None else lo
    hi = dhi if hi is None else hi
    out = np.empty((bands, h, w), dtype=dtype)
    for i in range(bands):
        v = lo + smooth_field(h, w, seed * 31 + i) * (hi - lo)
        out[i] = np.rint(v) if np.dtype(dtype).kind in "iu" else v
    return out


def floor_heavy(bands: int, h: int, w: int, dtype: str, low: float, high: float) -> np.ndarray:
    """8x8 blocks alternating ``low`` / ``high`` over a flat ``low`` half.

    Lossy decoders undershoot next to such edges and sit around ``low`` in the flat part, so some
    pixels decode to (are clamped at) the bottom of the value range, whatever the weights.
    """
    yy, xx = np.mgrid[:h, :w]
    checker = ((yy // 8 + xx // 8) % 2 == 1) & (xx < w // 2)
    band = np.where(checker, high, low)
    return np.repeat(band[None], bands, axis=0).astype(dtype)


def real_tile(h: int = 256, w: int = 256, name: str = "field.png") -> np.ndarray:
    """A (3, h, w) uint8 crop of a real RGB sample tile from ``sample_tiles/``."""
    from PIL import Image

    with Image.open(SAMPLE_TILES / name) as im:
        arr = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(np.moveaxis(arr[:h, :w], -1, 0))


# ---------------------------------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over the finite pixels of both arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    mse = float(np.mean((a[ok] - b[ok]) ** 2)) if ok.any() else 0.0
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def assert_bitwise_equal(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    """Same shape, dtype and bytes (NaNs compare equal if their bit patterns do)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    if a.tobytes() != b.tobytes():
        diff = np.argwhere(a.view(np.uint8) != b.view(np.uint8)) if a.dtype.itemsize == 1 else None
        same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
        n = int((~same).sum())
        raise AssertionError(f"{what}: {n} elements differ (first byte positions: "
                             f"{None if diff is None else diff[:5].tolist()})")


def assert_within_band_ranges(
    original: np.ndarray,
    decoded: np.ndarray,
    invalid: np.ndarray | None = None,
    ranges: list[tuple[float, float]] | None = None,
) -> None:
    """Per band over valid pixels: decoded within [lo, hi] and errors bounded relative to hi - lo.

    ``ranges`` defaults to each band's valid min/max (the codec's own per-chunk scaling); pass the
    codec's ``value_range`` (data inside it) when one is configured, or (0, 255) for uint8.
    """
    assert decoded.shape == original.shape and decoded.dtype == original.dtype
    integer = original.dtype.kind in "iu"
    for i in range(original.shape[0]):
        valid = np.ones(original.shape[1:], bool) if invalid is None else ~invalid[i]
        if not valid.any():
            continue
        o = original[i][valid].astype(np.float64)
        d = decoded[i][valid].astype(np.float64)
        lo, hi = ranges[i] if ranges is not None else (float(o.min()), float(o.max()))
        span = hi - lo
        slack = 1.0 if integer else 1e-6 * max(abs(lo), abs(hi), 1.0)
        assert np.isfinite(d).all(), f"band {i}: non-finite values decoded at valid pixels"
        assert d.min() >= lo - slack and d.max() <= hi + slack, (
            f"band {i}: decoded range [{d.min()}, {d.max()}] outside the band range [{lo}, {hi}]"
        )
        err = np.abs(d - o)
        assert err.max() <= MAX_ABS_ERR_REL * span + slack, (
            f"band {i}: max abs error {err.max()} > {MAX_ABS_ERR_REL} x range {span}"
        )
        assert err.mean() <= MEAN_ABS_ERR_REL * span + slack, (
            f"band {i}: mean abs error {err.mean()} > {MEAN_ABS_ERR_REL} x range {span}"
        )


# ---------------------------------------------------------------------------- chunk anatomy


HEAD = struct.Struct("<4sBBBHHf4s")  # magic, version, flags, kind, height, width, quality, model id
RANGE_SIZES = (0, 8, 8, 16)  # bytes per band for range modes 0..3 (flags bits 2-3)


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    stop: int


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of an unsigned LEB128 integer."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def chunk_regions(data: bytes) -> list[Region]:
    """Byte regions of a well-formed chunk (format 2), independent of the package's parser."""
    regions = [Region("header", 0, HEAD.size)]
    head = HEAD.unpack_from(data, 0)
    assert head[1] == 2, "not a format-2 chunk"
    flags, bands = head[2], (head[3] & 0x0F) + 1
    pos = HEAD.size
    ranges = bands * RANGE_SIZES[flags >> 2 & 3]
    regions.append(Region("ranges", pos, pos + ranges))
    pos += ranges
    for g in range(-(-bands // 3)):
        start = pos
        len_z, pos = read_varint(data, pos + 4)
        len_y, pos = read_varint(data, pos)
        regions.append(Region(f"group{g}.lengths", start, pos))
        regions.append(Region(f"group{g}.z", pos, pos + len_z))
        pos += len_z
        regions.append(Region(f"group{g}.y", pos, pos + len_y))
        pos += len_y
    for bit, name in ((1, "mask"), (2, "nan_mask")):
        if flags & bit:
            length, after = read_varint(data, pos)
            regions.append(Region(name, pos, after + length))
            pos = after + length
    regions.append(Region("crc", pos, pos + 4))
    assert pos + 4 == len(data), "chunk layout does not add up"
    return regions


def with_crc(body: bytes) -> bytes:
    """Re-seal a chunk body (all bytes but the CRC) with a valid CRC32."""
    return body + struct.pack("<I", zlib.crc32(body))


def reseal(data: bytes) -> bytes:
    """Recompute the CRC of a (modified) chunk so the mutation reaches the parser and decoder."""
    return with_crc(bytes(data[:-4]))


# -------------------------------------------------------------------------------- subprocesses


def child_env(**overrides: str | None) -> dict[str, str]:
    """The environment for a fresh interpreter: single-threaded BLAS unless overridden."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    env.pop("DMENET_DEVICE", None)
    env.pop(REGENERATE_ENV, None)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_python(
    code: str,
    env: dict[str, str | None] | None = None,
    *,
    timeout: float = SUBPROCESS_TIMEOUT_S,
    cwd: Path | str | None = None,
) -> Any:
    """Run ``code`` in a fresh ``sys.executable``; it must print one JSON line last. Returns it.

    A non-zero exit, a crash (signal) or a timeout fails the calling test with the child's stderr.
    """
    import pytest

    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(cwd) if cwd is not None else None,
            env=child_env(**(env or {})),
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"subprocess timed out after {timeout} s (hang?)\nstderr:\n{(err or '')[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f"subprocess exited with {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                    f"stderr:\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"subprocess printed nothing\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------- golden chunks


def golden_shas(root: Path) -> set[str]:
    """The weights SHA-256s the golden codec configs under ``root`` are bound to."""
    return {json.loads(p.read_text())["weights_sha256"] for p in root.glob("*/codec.*/config.json")}


def golden_status(root: Path, shipped: set[str]) -> tuple[str, str]:
    """``("ok", "")``, ``("missing", why)`` or ``("stale", why)`` for the golden chunks under ``root``,
    which must be bound to exactly the ``shipped`` weights (one SHA-256 per model they use)."""
    shas = golden_shas(root) if root.exists() else set()
    if not shas:
        return "missing", f"no golden chunks in {root}: generate them with {REGENERATE_HINT}"
    if shas != shipped:
        return "stale", (
            f"golden chunks were made with weights {', '.join(sorted(shas))}, shipped weights are "
            f"{', '.join(sorted(shipped))}: regenerate with {REGENERATE_HINT}"
        )
    return "ok", ""
