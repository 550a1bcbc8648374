"""Learned codecs: DMENet over its qualities, and CompressAI mbt2018-mean checkpoints as a baseline.

DMENet rate: the bytes of the ``dmenet_geo.codec.DMENetCodec`` chunk (container header included)
when the model is a shipped model name; for a weights file, the same chunk container packed around
its latent strings (what the codec would write, were the weights shipped); or, on request, the bare
entropy-coded strings (``len(y) + len(z)``, no header). The curve records which (``rate_source``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.rd.results import DMENET, RDCurve, RDPoint, point_line
from pipelines.rd.sweep import Coded, sweep
from pipelines.rd.tiles import log, tile_metrics

__all__ = ["DEFAULT_QUALITIES", "evaluate_compressai", "evaluate_dmenet", "evaluate_gain_baseline"]

DEFAULT_QUALITIES: tuple[float, ...] = tuple(1 + 0.5 * k for k in range(15))  # 1, 1.5, ..., 8
RATE_SOURCES = ("auto", "codec", "container", "latents")


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


def _container_bytes(
    y: bytes,
    z: bytes,
    digest: int,
    shape: tuple[int, int],
    quality: float,
    z_shape: tuple[int, int],
    model_id: bytes,
) -> int:
    """The size of the DMENetCodec chunk an 8-bit RGB tile with these latent strings would make."""
    from dmenet_geo.codec.bitstream import Chunk, ChunkHeader, GroupPayload, pack_chunk

    header = ChunkHeader("uint8", 3, *shape, quality, model_id, z_shape, ((0.0, 255.0),) * 3)
    return len(pack_chunk(Chunk(header, (GroupPayload(digest, z, y),), None)))


def evaluate_dmenet(
    tiles: Sequence[np.ndarray],
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    model: str | Path = "default",
    rate: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    label: str = DMENET,
    refine: int = 0,
    workers: int = 1,
) -> RDCurve:
    """DMENet curve over ``qualities``: codec chunk bytes (``rate="codec"``), the same container
    packed around the model's latent strings (``"container"``, any weights), the raw latent strings
    (``"latents"``), or the codec when it can be used and the container otherwise (``"auto"``).
    ``refine`` > 0 optimises each tile's latent for that many steps before coding (encoder only);
    ``workers`` batches are coded at once (:func:`pipelines.rd.sweep.sweep`)."""
    from dmenet_geo.codec.bitstream import MODEL_ID_BYTES, model_id_for
    from dmenet_geo.model import get_model, load_model

    if rate not in RATE_SOURCES:
        raise ValueError(f"rate must be one of {', '.join(RATE_SOURCES)}, got {rate!r}")
    if not tiles:
        raise ValueError("no tiles to evaluate")
    t0 = time.perf_counter()
    is_file = isinstance(model, Path) or str(model).endswith(".pt")
    net = load_model(Path(model), device) if is_file else get_model(str(model), device)
    for q in qualities:
        net.config.check_quality(q)
    model_id = model_id_for(net.weights_sha256) if net.weights_sha256 else bytes(MODEL_ID_BYTES)
    codec_cls, why_not = _codec_for(model) if rate in ("auto", "codec") else (None, f"rate={rate} requested")
    if rate == "codec" and codec_cls is None:
        raise RuntimeError(f"cannot use the DMENet codec: {why_not}")
    if codec_cls is not None:
        from dmenet_geo import codec as codec_pkg

        codec_pkg.set_runtime(device=device, batch_size=batch_size)
        rate_source = "codec: DMENetCodec chunk bytes (container header included)"
    elif rate == "latents":
        rate_source = f"latents: len(y_strings) + len(z_strings), no container header ({why_not})"
    else:
        rate_source = f"container: latent strings packed as DMENetCodec chunks, header included ({why_not})"
    if refine:
        rate_source += f"; latents refined for {refine} steps per tile"
    log(
        f"{label}: model {model} (N={net.config.n}, M={net.config.latent}, {net.config.levels} levels) "
        f"loaded in {time.perf_counter() - t0:.1f} s; rate from {rate_source}",
        progress,
    )

    def code(batch: Sequence[np.ndarray], q: float) -> Coded:
        out = Coded()
        if codec_cls is not None:
            codec = codec_cls(quality=float(q), model=str(model), refine=refine)
            t = time.perf_counter()
            blobs = codec.encode_batch([np.ascontiguousarray(b.transpose(2, 0, 1)) for b in batch])
            out.enc_s = time.perf_counter() - t
            t = time.perf_counter()
            decoded = codec.decode_batch(blobs)
            out.dec_s = time.perf_counter() - t
            out.nbytes = [len(b) for b in blobs]
            pairs = zip(decoded, batch, strict=True)
            out.recs = [np.asarray(d).reshape(3, *b.shape[:2]).transpose(1, 2, 0) for d, b in pairs]
            return out
        x = _to_tensor(batch).to(device)
        t = time.perf_counter()
        latents = net.compress(x, float(q), refine_steps=refine)
        out.enc_s = time.perf_counter() - t
        t = time.perf_counter()
        x_hat, digests = net.decompress(latents)
        out.dec_s = time.perf_counter() - t
        if digests != latents.digests:
            raise RuntimeError(f"{label}: decoded latents differ from the encoder's at q={q}")
        strings = zip(latents.y_strings, latents.z_strings, latents.digests, strict=True)
        if rate == "latents":
            out.nbytes = [len(y) + len(z) for y, z, _ in strings]
        else:
            q32 = float(np.float32(q))
            shape = (int(x.shape[2]), int(x.shape[3]))
            out.nbytes = [
                _container_bytes(y, z, d, shape, q32, latents.z_shape, model_id) for y, z, d in strings
            ]
        out.recs = list(_to_uint8(x_hat))
        return out

    points = sweep(tiles, qualities, label, batch_size, progress, code, workers)
    return RDCurve(label, "dmenet", "quality", points, rate_source=rate_source, model=str(model))


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


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar", ".pth", ".pt", ".ckpt"):
        name = name.removesuffix(suffix)
    return name


def evaluate_compressai(
    tiles: Sequence[np.ndarray],
    checkpoints: Sequence[Path | str],
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    label: str = "mbt2018-mean",
) -> RDCurve:
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
        label_i = f"[{i}/{len(checkpoints)}] {label} {ckpt.name}"
        log(point_line(label_i, p, time.perf_counter() - t0), progress)
    points.sort(key=lambda p: p.bpp)
    return RDCurve(
        label,
        "compressai",
        "checkpoint",
        points,
        rate_source="latents: len(y_strings) + len(z_strings), no container header",
        checkpoints=[str(c) for c in checkpoints],
    )


def evaluate_gain_baseline(
    weights: Path,
    tiles: Sequence[np.ndarray],
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = True,
    rate: str = "container",
) -> RDCurve:
    """Curve of a variable-rate mbt2018-mean trained by ``train.py --arch mbt2018-mean``.

    Rate: its latent strings packed into DMENet's chunk container (``"container"``, the same header
    bytes a DMENet chunk carries, so the two networks are compared alike) or bare (``"latents"``).
    """
    if rate not in ("container", "latents"):
        raise ValueError(f"rate must be container or latents, got {rate!r}")
    import json

    import torch

    from dmenet_geo.codec.bitstream import MODEL_ID_BYTES
    from dmenet_geo.model.config import DMENetConfig
    from pipelines.rd.gain_mbt import ARCH, GainMeanScaleHyperprior

    meta = json.loads(weights.with_suffix(".json").read_text())
    if meta.get("arch") != ARCH:
        raise ValueError(f"{weights} is not an {ARCH} run (arch {meta.get('arch')!r})")
    net = GainMeanScaleHyperprior(DMENetConfig.from_dict(meta["config"]))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.update(force=True)
    net = net.to(device).eval()
    label = f"{ARCH} ({weights.parent.name})"

    def code(batch: Sequence[np.ndarray], q: float) -> Coded:
        out = Coded()
        with torch.inference_mode():
            x = _to_tensor(batch).to(device)
            t = time.perf_counter()
            y_strings, z_strings, shape = net.compress_at(x, float(q))
            out.enc_s = time.perf_counter() - t
            t = time.perf_counter()
            x_hat = net.decompress_at(y_strings, z_strings, shape, float(q))
            out.dec_s = time.perf_counter() - t
        pairs = zip(y_strings, z_strings, strict=True)
        if rate == "latents":
            out.nbytes = [len(y) + len(z) for y, z in pairs]
        else:
            hw = (int(x.shape[2]), int(x.shape[3]))
            q32, z_shape = float(np.float32(q)), (int(shape[0]), int(shape[1]))
            no_id = bytes(MODEL_ID_BYTES)
            out.nbytes = [_container_bytes(y, z, 0, hw, q32, z_shape, no_id) for y, z in pairs]
        out.recs = list(_to_uint8(x_hat))
        return out

    points = sweep(tiles, qualities, label, batch_size, progress, code)
    source = {
        "container": "container: latent strings packed as DMENetCodec chunks, header included",
        "latents": "latents: len(y_strings) + len(z_strings), no container header",
    }[rate]
    return RDCurve(label, "compressai", "quality", points, rate_source=source, model=str(weights))
