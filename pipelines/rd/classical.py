"""Classical codecs through imagecodecs: one tile per stream, 8-bit RGB, and their RD sweeps.

* JPEG 2000 (OpenJPEG, raw J2K codestream, 9/7 wavelet): ``level`` is OpenJPEG's fixed-quality
  target PSNR in dB (``level=0`` would be lossless).
* WebP (libwebp, lossy): ``level`` is the quality 0..100.
* AVIF (libavif, 4:4:4): ``level`` is the quality 0..100, encoder ``speed`` (default 6; the
  library's own default takes seconds per tile on one CPU thread, 50-100x longer).
* JPEG XL (libjxl, VarDCT): ``distance`` is the Butteraugli distance (lower is better).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.rd.results import RDCurve, RDPoint, point_line
from pipelines.rd.tiles import log, tile_metrics

__all__ = ["CLASSICAL_CODECS", "ClassicalCodec", "available_codecs", "classical_curve", "sweep_classical"]


@dataclass(frozen=True)
class ClassicalCodec:
    """An imagecodecs encoder and its sweep, settings ordered from the lowest to the highest rate."""

    name: str
    key: str
    param: str
    settings: tuple[float, ...]
    encode: Callable[..., bytes] = field(repr=False)  # (tile, setting, threads, **options)
    decode: Callable[[bytes], np.ndarray] = field(repr=False)
    check: str = field(repr=False, default="")  # imagecodecs class whose ``available`` says it works
    options: dict[str, Any] = field(default_factory=dict)  # extra encoder keywords

    @property
    def available(self) -> bool:
        try:
            import imagecodecs
        except ImportError:
            return False
        cls = getattr(imagecodecs, self.check, None)
        return bool(getattr(cls, "available", False))


def _jpeg2k_encode(tile: np.ndarray, level: float, threads: int) -> bytes:
    import imagecodecs

    return bytes(
        imagecodecs.jpeg2k_encode(
            tile,
            level=float(level),  # type: ignore[arg-type]  # fractional target PSNRs work
            codecformat=imagecodecs.JPEG2K.CODEC.J2K,
            reversible=False,
            numthreads=threads,
        )
    )


def _webp_encode(tile: np.ndarray, level: float, threads: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.webp_encode(tile, level=float(level), lossless=False, numthreads=threads))


def _avif_encode(tile: np.ndarray, level: float, threads: int, speed: int = 6) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.avif_encode(tile, level=int(level), speed=int(speed), numthreads=threads))


def _jpegxl_encode(tile: np.ndarray, distance: float, threads: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(tile, distance=float(distance), numthreads=threads))


def _decoder(fn: str) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        import imagecodecs

        return np.asarray(getattr(imagecodecs, fn)(data))

    return decode


CLASSICAL_CODECS: dict[str, ClassicalCodec] = {
    c.key: c
    for c in (
        ClassicalCodec(
            "JPEG 2000",
            "jpeg2k",
            "level (target PSNR, dB)",
            (22.0, 24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0, 42.0),
            _jpeg2k_encode,
            _decoder("jpeg2k_decode"),
            "JPEG2K",
        ),
        ClassicalCodec(
            "WebP",
            "webp",
            "level (quality 0-100)",
            (0.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 85.0, 90.0),
            _webp_encode,
            _decoder("webp_decode"),
            "WEBP",
        ),
        ClassicalCodec(
            "AVIF",
            "avif",
            "level (quality 0-100)",
            (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0),
            _avif_encode,
            _decoder("avif_decode"),
            "AVIF",
            {"speed": 6},
        ),
        ClassicalCodec(
            "JPEG XL",
            "jpegxl",
            "distance (Butteraugli)",
            (25.0, 15.0, 10.0, 7.0, 5.0, 3.5, 2.5, 1.8, 1.2, 0.8),
            _jpegxl_encode,
            _decoder("jpegxl_decode"),
            "JPEGXL",
        ),
    )
}


def available_codecs() -> list[str]:
    """Keys of the classical codecs whose encoder and decoder the installed imagecodecs has."""
    return [k for k, c in CLASSICAL_CODECS.items() if c.available]


def sweep_classical(
    codec: ClassicalCodec | str,
    tiles: Sequence[np.ndarray],
    settings: Sequence[float] | None = None,
    threads: int = 1,
    progress: bool = True,
) -> list[RDPoint]:
    """Encode and decode every tile at every setting; one averaged point per setting."""
    c = CLASSICAL_CODECS[codec] if isinstance(codec, str) else codec
    if not tiles:
        raise ValueError("no tiles to evaluate")
    points = []
    settings = c.settings if settings is None else tuple(settings)
    for i, s in enumerate(settings, 1):
        t0 = time.perf_counter()
        nbytes, per_tile = [], []
        enc_s = dec_s = 0.0
        for tile in tiles:
            t = time.perf_counter()
            data = c.encode(tile, s, threads, **c.options)
            enc_s += time.perf_counter() - t
            t = time.perf_counter()
            rec = c.decode(data)
            dec_s += time.perf_counter() - t
            if rec.shape != tile.shape or rec.dtype != np.uint8:
                raise RuntimeError(f"{c.name} decoded {rec.shape} {rec.dtype}, expected {tile.shape} uint8")
            nbytes.append(len(data))
            per_tile.append(tile_metrics(tile, rec))
        pixels = tiles[0].shape[0] * tiles[0].shape[1]
        p = RDPoint.from_tiles(s, nbytes, per_tile, pixels, enc_s, dec_s)
        points.append(p)
        label = f"[{i}/{len(settings)}] {c.name} {c.param.split()[0]}={s:g}"
        log(point_line(label, p, time.perf_counter() - t0), progress)
    return points


def classical_curve(codec: ClassicalCodec, points: list[RDPoint]) -> RDCurve:
    """The curve of a sweep of ``codec`` (rates are the stream bytes)."""
    return RDCurve(
        codec.name,
        "classical",
        codec.param,
        points,
        key=codec.key,
        options=codec.options,
        rate_source="stream bytes",
    )
