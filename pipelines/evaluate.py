"""Rate-distortion evaluation of DMENet against JPEG 2000, WebP, AVIF and JPEG XL.

Every image of the data folder is cut into non-overlapping TILE x TILE tiles (default 256; partial
tiles at the right and bottom edges are dropped) and each tile is coded on its own, as one Zarr chunk
would be. Rates are bits per pixel of the real bytes of each tile's stream; quality is PSNR (peak
255 over the three RGB bands, computed per tile then averaged, plus the PSNR of the average MSE) and
MS-SSIM (mean per-tile value and mean per-tile dB, ``-10 log10(1 - MS-SSIM)``).

    python pipelines/evaluate.py --data /work/shared/data/val --json runs/eval/rd.json \\
        --plot runs/eval/rd.png

DMENet rate: the bytes of the ``dmenet_geo.codec.DMENetCodec`` chunk (container header included)
when the codec is installed and the model is a shipped model name, otherwise the entropy-coded
latent strings (``len(y) + len(z)``, no header); the JSON records which (``rate_source``).

Classical codecs (imagecodecs; one tile per stream, 8-bit RGB, single-threaded unless --threads):

* JPEG 2000 (OpenJPEG, raw J2K codestream, 9/7 wavelet): ``level`` is OpenJPEG's fixed-quality
  target PSNR in dB (``level=0`` would be lossless).
* WebP (libwebp, lossy): ``level`` is the quality 0..100.
* AVIF (libavif, 4:4:4): ``level`` is the quality 0..100, encoder ``--avif-speed`` (default 6; the
  library's own default takes seconds per tile on one CPU thread, 50-100x longer).
* JPEG XL (libjxl, VarDCT): ``distance`` is the Butteraugli distance (lower is better).

Bjontegaard delta rates (PCHIP, see ``rd_metrics.py``) are of DMENet against every other curve:
negative numbers mean DMENet needs fewer bits for the same PSNR / MS-SSIM dB. Learned baselines: a
result JSON of an earlier run or other DMENet weights (``--baseline``), and CompressAI
mbt2018-mean / ``MeanScaleHyperprior`` checkpoints (``--compressai-baseline``, one per rate point).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``pipelines.rd_metrics`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.rd_metrics import bd_quality, bd_rate  # noqa: E402

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_QUALITIES",
    "CLASSICAL_CODECS",
    "ClassicalCodec",
    "RDPoint",
    "available_codecs",
    "list_images",
    "load_tiles",
    "tile_metrics",
    "sweep_classical",
    "evaluate_dmenet",
    "evaluate_compressai",
    "evaluate",
    "bd_table",
    "format_table",
    "plot_curves",
    "main",
]

DEFAULT_DATA = Path("/work/shared/data/val")
DEFAULT_QUALITIES: tuple[float, ...] = tuple(1 + 0.5 * k for k in range(15))  # 1, 1.5, ..., 8
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DB_CAP = 100.0  # PSNR / MS-SSIM dB of an exact reconstruction (MSE 0) is counted as this
DMENET = "DMENet"


def _log(msg: str, enabled: bool = True) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tiles


def list_images(folder: Path | str | Sequence[Path | str], limit: int | None = None) -> list[Path]:
    """Image files under the folder(s), sorted; ``limit`` keeps that many spread evenly over the list."""
    folders = [folder] if isinstance(folder, (str, Path)) else list(folder)
    files: list[Path] = []
    for f in map(Path, folders):
        if f.is_file():
            files.append(f)
            continue
        if not f.is_dir():
            raise FileNotFoundError(f"image folder not found: {f}")
        files += [p for p in f.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    files = sorted(set(files))
    if not files:
        raise FileNotFoundError(f"no images under {', '.join(map(str, folders))}")
    if limit is not None and 0 < limit < len(files):
        idx = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
        files = [files[i] for i in idx]
    return files


def _read_rgb(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8, or None (with a note) for images that are not 8-bit."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "L", "P", "RGBA", "LA", "CMYK", "YCbCr"):
                return np.asarray(im.convert("RGB"))
            arr = np.asarray(im)
    except Exception:  # unusual TIFFs: let imagecodecs try
        import imagecodecs

        arr = np.asarray(imagecodecs.imread(str(path)))
    if arr.dtype != np.uint8:
        _log(f"skipping {path}: dtype {arr.dtype} (only 8-bit images are evaluated)")
        return None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] > 4:  # planar
            arr = np.moveaxis(arr, 0, -1)
        else:
            _log(f"skipping {path}: shape {arr.shape}")
            return None
    return np.ascontiguousarray(arr[..., :3])


def load_tiles(paths: Iterable[Path], tile: int = 256) -> list[np.ndarray]:
    """Non-overlapping ``tile`` x ``tile`` RGB uint8 tiles (H, W, 3) of the images, row-major."""
    tiles: list[np.ndarray] = []
    for path in paths:
        img = _read_rgb(Path(path))
        if img is None:
            continue
        h, w = img.shape[:2]
        for r in range(0, h - tile + 1, tile):
            for c in range(0, w - tile + 1, tile):
                tiles.append(np.ascontiguousarray(img[r : r + tile, c : c + tile]))
    return tiles


# ------------------------------------------------------------------------- metrics


def tile_metrics(original: np.ndarray, reconstruction: np.ndarray) -> dict[str, float]:
    """MSE, PSNR (peak 255) and MS-SSIM of two (H, W, 3) uint8 tiles."""
    from dmenet_geo.model import metrics

    if original.shape != reconstruction.shape:
        raise ValueError(f"reconstruction shape {reconstruction.shape} != original {original.shape}")
    a = np.moveaxis(original, -1, 0)
    b = np.moveaxis(reconstruction, -1, 0)
    err = metrics.mse(a, b)
    msssim = metrics.ms_ssim(a, b, data_range=255.0)
    return {
        "mse": err,
        "psnr": min(metrics.psnr(a, b, data_range=255.0), DB_CAP),
        "ms_ssim": msssim,
        "ms_ssim_db": DB_CAP if msssim >= 1 else min(-10 * math.log10(1 - msssim), DB_CAP),
    }


@dataclass
class RDPoint:
    """One operating point of one codec, averaged over the tiles."""

    setting: float | str
    bpp: float
    psnr: float  # mean of per-tile PSNR
    psnr_of_mean_mse: float  # PSNR of the mean MSE over all tiles
    ms_ssim: float
    ms_ssim_db: float  # mean of per-tile MS-SSIM dB
    tiles: int
    encode_ms: float = math.nan  # mean per tile
    decode_ms: float = math.nan

    @classmethod
    def from_tiles(
        cls,
        setting: float | str,
        nbytes: Sequence[int],
        per_tile: Sequence[dict[str, float]],
        pixels: int,
        encode_s: float = math.nan,
        decode_s: float = math.nan,
    ) -> RDPoint:
        n = len(per_tile)
        if n == 0 or len(nbytes) != n:
            raise ValueError("need one byte count and one metrics dict per tile")
        mean_mse = float(np.mean([m["mse"] for m in per_tile]))
        return cls(
            setting=setting,
            bpp=8.0 * float(np.sum(nbytes)) / (pixels * n),
            psnr=float(np.mean([m["psnr"] for m in per_tile])),
            psnr_of_mean_mse=DB_CAP if mean_mse == 0 else min(10 * math.log10(255.0**2 / mean_mse), DB_CAP),
            ms_ssim=float(np.mean([m["ms_ssim"] for m in per_tile])),
            ms_ssim_db=float(np.mean([m["ms_ssim_db"] for m in per_tile])),
            tiles=n,
            encode_ms=1000 * encode_s / n,
            decode_ms=1000 * decode_s / n,
        )


def _curve(name: str, kind: str, param: str, points: list[RDPoint], **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "param": param, **extra, "points": [asdict(p) for p in points]}


def _point_line(label: str, p: RDPoint, seconds: float) -> str:
    return (
        f"{label}: {p.tiles} tiles, {p.bpp:.4f} bpp, PSNR {p.psnr:.2f} dB, "
        f"MS-SSIM {p.ms_ssim_db:.2f} dB ({seconds:.1f} s)"
    )


# --------------------------------------------------------------- classical codecs


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
        _log(
            _point_line(
                f"[{i}/{len(settings)}] {c.name} {c.param.split()[0]}={s:g}", p, time.perf_counter() - t0
            ),
            progress,
        )
    return points


# --------------------------------------------------------------------- learned codecs


def _to_uint8(x: Any) -> np.ndarray:
    """(B, 3, H, W) float tensor in [0, 1] to (B, H, W, 3) uint8 (what a decoder would store)."""
    arr = x.detach().cpu().numpy().astype(np.float64)
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _to_tensor(tiles: Sequence[np.ndarray]) -> Any:
    import torch

    return torch.from_numpy(np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _codec_for(model: str | Path) -> tuple[Any, str]:
    """The DMENetCodec class when it can code with ``model``, else None and the reason."""
    try:
        from dmenet_geo.codec import DMENetCodec
    except ImportError as exc:
        return None, f"dmenet_geo.codec not importable ({exc})"
    from dmenet_geo.model import available_models

    if isinstance(model, Path) or str(model).endswith(".pt") or str(model) not in available_models():
        return None, f"the codec only codes shipped models, {model} is a weights file"
    return DMENetCodec, ""


def evaluate_dmenet(
    tiles: Sequence[np.ndarray],
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    model: str | Path = "default",
    rate: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    label: str = DMENET,
) -> dict[str, Any]:
    """DMENet curve over ``qualities``: codec container bytes (``rate="codec"``), raw latent strings
    (``"latents"``), or the codec when it can be used (``"auto"``)."""
    from dmenet_geo.model import get_model, load_model

    if rate not in ("auto", "codec", "latents"):
        raise ValueError(f"rate must be auto, codec or latents, got {rate!r}")
    if not tiles:
        raise ValueError("no tiles to evaluate")
    t0 = time.perf_counter()
    is_file = isinstance(model, Path) or str(model).endswith(".pt")
    net = load_model(Path(model), device) if is_file else get_model(str(model), device)
    for q in qualities:
        net.config.check_quality(q)
    codec_cls, why_not = (None, "rate=latents requested") if rate == "latents" else _codec_for(model)
    if rate == "codec" and codec_cls is None:
        raise RuntimeError(f"cannot use the DMENet codec: {why_not}")
    if codec_cls is not None:
        from dmenet_geo import codec as codec_pkg

        codec_pkg.set_runtime(device=device, batch_size=batch_size)
        rate_source = "codec: DMENetCodec chunk bytes (container header included)"
    else:
        rate_source = f"latents: len(y_strings) + len(z_strings), no container header ({why_not})"
    _log(
        f"{label}: model {model} (N={net.config.n}, {net.config.levels} levels) loaded in "
        f"{time.perf_counter() - t0:.1f} s; rate from {rate_source}",
        progress,
    )
    pixels = tiles[0].shape[0] * tiles[0].shape[1]
    points = []
    for i, q in enumerate(qualities, 1):
        t0 = time.perf_counter()
        nbytes: list[int] = []
        recs: list[np.ndarray] = []
        enc_s = dec_s = 0.0
        codec = None if codec_cls is None else codec_cls(quality=float(q), model=str(model))
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start : start + batch_size]
            if codec is not None:
                t = time.perf_counter()
                blobs = codec.encode_batch([np.ascontiguousarray(b.transpose(2, 0, 1)) for b in batch])
                enc_s += time.perf_counter() - t
                t = time.perf_counter()
                decoded = codec.decode_batch(blobs)
                dec_s += time.perf_counter() - t
                nbytes += [len(b) for b in blobs]
                for d, b in zip(decoded, batch, strict=True):
                    recs.append(np.asarray(d).reshape(3, *b.shape[:2]).transpose(1, 2, 0))
            else:
                x = _to_tensor(batch).to(device)
                t = time.perf_counter()
                latents = net.compress(x, float(q))
                enc_s += time.perf_counter() - t
                t = time.perf_counter()
                x_hat, digests = net.decompress(latents)
                dec_s += time.perf_counter() - t
                if digests != latents.digests:
                    raise RuntimeError(f"{label}: decoded latents differ from the encoder's at q={q}")
                pairs = zip(latents.y_strings, latents.z_strings, strict=True)
                nbytes += [len(y) + len(z) for y, z in pairs]
                recs += list(_to_uint8(x_hat))
        per_tile = [tile_metrics(t, r) for t, r in zip(tiles, recs, strict=True)]
        p = RDPoint.from_tiles(float(q), nbytes, per_tile, pixels, enc_s, dec_s)
        points.append(p)
        _log(_point_line(f"[{i}/{len(qualities)}] {label} q={q:g}", p, time.perf_counter() - t0), progress)
    return _curve(label, "dmenet", "quality", points, rate_source=rate_source, model=str(model))


def _load_compressai(checkpoint: Path, device: str) -> Any:
    import torch
    from compressai.models import MeanScaleHyperprior

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "network"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = MeanScaleHyperprior.from_state_dict(state)
    if net.entropy_bottleneck._offset.numel() == 0 or net.gaussian_conditional._offset.numel() == 0:
        net.update(force=True)
    return net.to(device).eval()


def evaluate_compressai(
    tiles: Sequence[np.ndarray],
    checkpoints: Sequence[Path | str],
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    label: str = "mbt2018-mean",
) -> dict[str, Any]:
    """One point per fixed-rate CompressAI ``MeanScaleHyperprior`` checkpoint (state dict)."""
    import torch

    pixels = tiles[0].shape[0] * tiles[0].shape[1]
    if any(s % 64 for s in tiles[0].shape[:2]):
        raise ValueError("CompressAI hyperprior models need tiles whose sides are multiples of 64")
    points = []
    for i, ckpt in enumerate(map(Path, checkpoints), 1):
        t0 = time.perf_counter()
        net = _load_compressai(ckpt, device)
        nbytes: list[int] = []
        recs: list[np.ndarray] = []
        enc_s = dec_s = 0.0
        with torch.inference_mode():
            for start in range(0, len(tiles), batch_size):
                x = _to_tensor(tiles[start : start + batch_size]).to(device)
                t = time.perf_counter()
                out = net.compress(x)
                enc_s += time.perf_counter() - t
                t = time.perf_counter()
                x_hat = net.decompress(out["strings"], out["shape"])["x_hat"]
                dec_s += time.perf_counter() - t
                nbytes += [sum(len(s[k]) for s in out["strings"]) for k in range(x.shape[0])]
                recs += list(_to_uint8(x_hat))
        per_tile = [tile_metrics(t, r) for t, r in zip(tiles, recs, strict=True)]
        p = RDPoint.from_tiles(_stem(ckpt), nbytes, per_tile, pixels, enc_s, dec_s)
        points.append(p)
        _log(
            _point_line(f"[{i}/{len(checkpoints)}] {label} {ckpt.name}", p, time.perf_counter() - t0),
            progress,
        )
    points.sort(key=lambda p: p.bpp)
    return _curve(
        label,
        "compressai",
        "checkpoint",
        points,
        rate_source="latents: len(y_strings) + len(z_strings), no container header",
        checkpoints=[str(c) for c in checkpoints],
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar", ".pth", ".pt", ".ckpt"):
        name = name.removesuffix(suffix)
    return name


def _curve_from_json(path: Path, curve: str, label: str) -> dict[str, Any]:
    result = json.loads(path.read_text())
    curves = result.get("curves", {})
    if curve not in curves:
        raise KeyError(f"{path} has no curve {curve!r}; it has {', '.join(curves) or 'none'}")
    out = dict(curves[curve])
    out.update(name=label, kind="baseline-json", source=str(path))
    return out


# ------------------------------------------------------------------------ evaluation


def _points(curve: dict[str, Any], metric: str) -> tuple[list[float], list[float]]:
    pts = [p for p in curve["points"] if p.get("bpp") and p.get(metric) is not None]
    return [float(p["bpp"]) for p in pts], [float(p[metric]) for p in pts]


def bd_table(curves: dict[str, dict[str, Any]], test: str = DMENET, method: str = "pchip") -> dict[str, Any]:
    """BD-rate (%) of ``test`` against every other curve, for PSNR and MS-SSIM dB, and BD-PSNR (dB)."""
    if test not in curves:
        return {}
    out: dict[str, Any] = {}
    for name, anchor in curves.items():
        if name == test:
            continue
        row: dict[str, float] = {}
        for metric in ("psnr", "ms_ssim_db"):
            ra, qa = _points(anchor, metric)
            rt, qt = _points(curves[test], metric)
            row[f"bd_rate_{metric}_pct"] = bd_rate(ra, qa, rt, qt, method=method) if ra and rt else math.nan
        ra, qa = _points(anchor, "psnr")
        rt, qt = _points(curves[test], "psnr")
        row["bd_psnr_db"] = bd_quality(ra, qa, rt, qt, method=method) if ra and rt else math.nan
        out[name] = row
    return out


def evaluate(
    data: Path | str | Sequence[Path | str] = DEFAULT_DATA,
    *,
    limit: int | None = None,
    tile: int = 256,
    model: str | Path | None = "default",
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    codecs: Sequence[str] | None = None,
    sweeps: dict[str, Sequence[float]] | None = None,
    baselines: Sequence[Path | str] = (),
    baseline_curve: str = DMENET,
    compressai_checkpoints: Sequence[Path | str] = (),
    compressai_label: str = "mbt2018-mean",
    dmenet_rate: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    threads: int | None = None,
    avif_speed: int = 6,
    bd_method: str = "pchip",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole evaluation and return the JSON-ready result (``meta``, ``curves``, ``bd``).

    ``model=None`` skips DMENet. ``codecs`` are keys of :data:`CLASSICAL_CODECS` (default: all that
    the installed imagecodecs provides); ``sweeps`` overrides their settings per key.
    """
    import imagecodecs
    import torch

    if threads:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    paths = list_images(data, limit)
    tiles = load_tiles(paths, tile)
    if not tiles:
        raise ValueError(f"no {tile}x{tile} tiles in {len(paths)} images")
    _log(f"{len(paths)} images -> {len(tiles)} tiles of {tile}x{tile}", progress)
    keys = available_codecs() if codecs is None else list(codecs)
    for k in keys:
        if k not in CLASSICAL_CODECS:
            raise KeyError(f"unknown codec {k!r}; known: {', '.join(CLASSICAL_CODECS)}")
        if not CLASSICAL_CODECS[k].available:
            raise RuntimeError(f"imagecodecs {imagecodecs.__version__} has no working {k} codec")
    sweeps = dict(sweeps or {})

    curves: dict[str, dict[str, Any]] = {}
    if model is not None:
        curves[DMENET] = evaluate_dmenet(tiles, qualities, model, dmenet_rate, device, batch_size, progress)
    for b in map(Path, baselines):
        if b.suffix == ".json":
            label = f"baseline ({b.stem})"
            curves[label] = _curve_from_json(b, baseline_curve, label)
        else:
            label = f"DMENet ({b.parent.name}/{b.stem})" if b.stem == "weights" else f"DMENet ({b.stem})"
            curves[label] = evaluate_dmenet(
                tiles,
                qualities,
                b,
                "latents" if dmenet_rate == "auto" else dmenet_rate,
                device,
                batch_size,
                progress,
                label,
            )
    if compressai_checkpoints:
        curves[compressai_label] = evaluate_compressai(
            tiles, compressai_checkpoints, device, batch_size, progress, compressai_label
        )
    for k in keys:
        c = CLASSICAL_CODECS[k]
        if k == "avif":
            c = replace(c, options={**c.options, "speed": int(avif_speed)})
        pts = sweep_classical(c, tiles, sweeps.get(k), threads or 1, progress)
        curves[c.name] = _curve(
            c.name, "classical", c.param, pts, key=k, options=c.options, rate_source="stream bytes"
        )

    meta = {
        "data": [str(d) for d in ([data] if isinstance(data, (str, Path)) else data)],
        "images": len(paths),
        "image_files": [str(p) for p in paths],
        "tiles": len(tiles),
        "tile": tile,
        "device": device,
        "imagecodecs": imagecodecs.__version__,
        "bd_method": bd_method,
        "psnr": "peak 255 over the 3 RGB bands; psnr = mean of per-tile PSNR, psnr_of_mean_mse = PSNR of "
        f"the mean MSE; exact tiles count as {DB_CAP:g} dB",
        "bd": "BD-rate of DMENet against each curve in percent (negative: DMENet needs fewer bits)",
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    return {"meta": meta, "curves": curves, "bd": bd_table(curves, DMENET, bd_method)}


# ----------------------------------------------------------------------- reporting


def format_table(result: dict[str, Any]) -> str:
    """The points of every curve and the BD-rates as fixed-width text."""
    lines = [
        f"{'codec':<22} {'setting':>10} {'bpp':>8} {'PSNR':>7} {'PSNR(mMSE)':>10} {'MS-SSIM':>8} "
        f"{'MS-SSIM dB':>10} {'enc ms':>8} {'dec ms':>8}"
    ]
    for name, curve in result["curves"].items():
        for p in curve["points"]:
            s = p["setting"]
            setting = f"{s:g}" if isinstance(s, (int, float)) else str(s)[:10]
            lines.append(
                f"{name[:22]:<22} {setting:>10} {p['bpp']:8.4f} {p['psnr']:7.2f} "
                f"{p['psnr_of_mean_mse']:10.2f} {p['ms_ssim']:8.4f} {p['ms_ssim_db']:10.2f} "
                f"{_num(p.get('encode_ms')):>8} {_num(p.get('decode_ms')):>8}"
            )
    if result.get("bd"):
        lines += [
            "",
            f"BD of {DMENET} against (negative BD-rate / positive BD-PSNR: {DMENET} better)",
            f"{'anchor':<22} {'BD-rate PSNR':>13} {'BD-rate MS-SSIM':>16} {'BD-PSNR dB':>10}",
        ]
        for name, row in result["bd"].items():
            lines.append(
                f"{name[:22]:<22} {_pct(row['bd_rate_psnr_pct']):>13} "
                f"{_pct(row['bd_rate_ms_ssim_db_pct']):>16} {_num(row['bd_psnr_db'], '{:+.2f}'):>10}"
            )
    return "\n".join(lines)


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _pct(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.2f} %"


def plot_curves(result: dict[str, Any], path: Path | str | None = None, title: str | None = None) -> Any:
    """PSNR vs bpp and MS-SSIM dB vs bpp, one line per codec; saved to ``path`` when given.

    Returns the matplotlib ``Figure`` (built without pyplot, so any backend, including none, works).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, curve in result["curves"].items():
        pts = sorted(curve["points"], key=lambda p: p["bpp"])
        bpp = [p["bpp"] for p in pts]
        style = (
            {"linewidth": 2.2, "marker": "o", "zorder": 3}
            if curve.get("kind") == "dmenet"
            else {"marker": "."}
        )
        axes[0].plot(bpp, [p["psnr"] for p in pts], label=name, **style)
        axes[1].plot(bpp, [p["ms_ssim_db"] for p in pts], label=name, **style)
    for ax, ylabel in zip(axes, ("PSNR (dB, RGB, peak 255)", "MS-SSIM (dB)"), strict=True):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right", fontsize="small")
    meta = result.get("meta", {})
    fig.suptitle(
        title
        or f"{meta.get('tiles', '?')} tiles of {meta.get('tile', '?')}x{meta.get('tile', '?')} px, "
        "each coded on its own"
    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def write_json(result: dict[str, Any], path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ CLI


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _sweep(text: str) -> tuple[str, list[float]]:
    key, sep, values = text.partition("=")
    if not sep or key not in CLASSICAL_CODECS:
        raise argparse.ArgumentTypeError(
            f"expected CODEC=v1,v2,... with CODEC in {', '.join(CLASSICAL_CODECS)}"
        )
    return key, _floats(values)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA], help="image folders or files")
    p.add_argument("--limit", type=int, default=None, help="use N images spread evenly over the sorted list")
    p.add_argument("--tile", type=int, default=256, help="tile side (non-overlapping, partial tiles dropped)")
    p.add_argument("--model", default="default", help="DMENet: shipped model name or weights .pt path")
    p.add_argument("--no-dmenet", action="store_true", help="only the other codecs")
    p.add_argument(
        "--qualities",
        type=_floats,
        default=list(DEFAULT_QUALITIES),
        help="DMENet qualities, comma-separated (default 1,1.5,...,8)",
    )
    p.add_argument(
        "--dmenet-rate",
        choices=("auto", "codec", "latents"),
        default="auto",
        help="DMENet bytes: codec chunks (with header) or raw latent strings; auto: codec if usable",
    )
    p.add_argument(
        "--codecs",
        default=None,
        help=f"comma-separated subset of {','.join(CLASSICAL_CODECS)} (default: all available; "
        "'none' for no classical codec)",
    )
    p.add_argument(
        "--sweep",
        type=_sweep,
        action="append",
        default=[],
        metavar="CODEC=V1,V2,...",
        help="override a classical codec's settings (repeatable)",
    )
    p.add_argument("--avif-speed", type=int, default=6, help="libavif encoder speed 0 (slow) .. 10 (fast)")
    p.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="learned baseline: result JSON of this script, or DMENet weights .pt (repeatable)",
    )
    p.add_argument("--baseline-curve", default=DMENET, help="curve to take from a baseline JSON")
    p.add_argument(
        "--compressai-baseline",
        type=Path,
        nargs="+",
        default=[],
        metavar="CHECKPOINT",
        help="CompressAI MeanScaleHyperprior (mbt2018-mean) state dicts, one per rate point",
    )
    p.add_argument("--compressai-label", default="mbt2018-mean")
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip")
    p.add_argument("--device", default="cpu", help="torch device for the learned codecs")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--threads", type=int, default=0, help="torch and encoder threads (0: torch default, 1 encoder)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.codecs is None:
        codecs = None
    elif args.codecs.strip().lower() == "none":
        codecs = []
    else:
        codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    result = evaluate(
        args.data,
        limit=args.limit,
        tile=args.tile,
        model=None if args.no_dmenet else args.model,
        qualities=args.qualities,
        codecs=codecs,
        sweeps=dict(args.sweep),
        baselines=args.baseline,
        baseline_curve=args.baseline_curve,
        compressai_checkpoints=args.compressai_baseline,
        compressai_label=args.compressai_label,
        dmenet_rate=args.dmenet_rate,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads or None,
        avif_speed=args.avif_speed,
        bd_method=args.bd_method,
        progress=not args.quiet,
    )
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_curves(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
