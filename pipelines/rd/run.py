"""The whole rate-distortion evaluation: tiles, DMENet, learned baselines, classical sweeps, BD table.

Learned baselines: a result JSON of an earlier run or other DMENet weights (``baselines``), and
CompressAI mbt2018-mean / ``MeanScaleHyperprior`` checkpoints (``compressai_checkpoints``, one per
rate point).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipelines.rd.classical import CLASSICAL_CODECS, available_codecs, classical_curve, sweep_classical
from pipelines.rd.learned import (
    DEFAULT_QUALITIES,
    evaluate_compressai,
    evaluate_dmenet,
    evaluate_gain_baseline,
)
from pipelines.rd.report import bd_table, curve_from_json
from pipelines.rd.results import DMENET, RDCurve, RDMeta, RDResult
from pipelines.rd.tiles import list_images, load_tiles, log

__all__ = ["DEFAULT_DATA", "evaluate"]

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "val"


def _learned_baseline(
    path: Path,
    tiles: Sequence[np.ndarray],
    qualities: Sequence[float],
    baseline_curve: str,
    dmenet_rate: str,
    device: str,
    batch_size: int,
    progress: bool,
) -> RDCurve:
    """A curve read from a result JSON, or the curve of other weights (.pt): DMENet, or the
    variable-rate mbt2018-mean of ``train.py --arch mbt2018-mean`` (told apart by the sidecar)."""
    if path.suffix == ".json":
        return curve_from_json(path, baseline_curve, f"baseline ({path.stem})")
    # Measured as the main curve is: under "auto" a weights file is packed into the codec's chunk
    # container (the codec's own bytes for a shipped model). Until session 24 baselines counted the
    # bare latent strings, 29 bytes a tile fewer, which tilted every weights-against-weights
    # BD-rate by 1.2-1.5 % toward the baseline.
    rate = "latents" if dmenet_rate == "latents" else "container"
    sidecar = path.with_suffix(".json")
    if sidecar.exists() and json.loads(sidecar.read_text()).get("arch", "dmenet") != "dmenet":
        return evaluate_gain_baseline(path, tiles, qualities, device, batch_size, progress, rate)
    label = f"DMENet ({path.parent.name}/{path.stem})" if path.stem == "weights" else f"DMENet ({path.stem})"
    if dmenet_rate == "codec":
        rate = "codec"
    return evaluate_dmenet(tiles, qualities, path, rate, device, batch_size, progress, label)


def _weights_sha256(model: str | Path) -> str:
    """The SHA-256 of the weights: the one their sidecar records (checked when they load), else the
    file's own (a training run's weights, whose sidecar records none)."""
    from dmenet_geo.model.zoo import file_sha256, model_info

    info = model_info(model)
    return info.sha256 or file_sha256(info.path)


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
    refine: int = 0,
    workers: int = 1,
    device: str = "cpu",
    batch_size: int = 16,
    threads: int | None = None,
    avif_speed: int = 6,
    bd_method: str = "pchip",
    progress: bool = True,
) -> RDResult:
    """Run the whole evaluation; ``write_json`` of the result gives the JSON (``meta``, ``curves``, ``bd``).

    ``model=None`` skips DMENet. ``codecs`` are keys of :data:`CLASSICAL_CODECS` (default: all that
    the installed imagecodecs provides); ``sweeps`` overrides their settings per key. ``refine``
    and ``workers`` (batches coded at once, in threads) apply to the DMENet model only, not to
    baselines.
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
    log(f"{len(paths)} images -> {len(tiles)} tiles of {tile}x{tile}", progress)
    keys = available_codecs() if codecs is None else list(codecs)
    for k in keys:
        if k not in CLASSICAL_CODECS:
            raise KeyError(f"unknown codec {k!r}; known: {', '.join(CLASSICAL_CODECS)}")
        if not CLASSICAL_CODECS[k].available:
            raise RuntimeError(f"imagecodecs {imagecodecs.__version__} has no working {k} codec")
    sweeps = dict(sweeps or {})

    curves: dict[str, RDCurve] = {}
    if model is not None:
        curves[DMENET] = evaluate_dmenet(
            tiles, qualities, model, dmenet_rate, device, batch_size, progress, refine=refine, workers=workers
        )
    for b in map(Path, baselines):
        c = _learned_baseline(b, tiles, qualities, baseline_curve, dmenet_rate, device, batch_size, progress)
        curves[c.name] = c
    if compressai_checkpoints:
        curves[compressai_label] = evaluate_compressai(
            tiles, compressai_checkpoints, device, batch_size, progress, compressai_label
        )
    for k in keys:
        codec = CLASSICAL_CODECS[k]
        if k == "avif":
            codec = replace(codec, options={**codec.options, "speed": int(avif_speed)})
        pts = sweep_classical(codec, tiles, sweeps.get(k), threads or 1, progress)
        curves[codec.name] = classical_curve(codec, pts)

    meta = RDMeta(
        data=[str(d) for d in ([data] if isinstance(data, (str, Path)) else data)],
        images=len(paths),
        image_files=[str(p) for p in paths],
        tiles=len(tiles),
        tile=tile,
        device=device,
        imagecodecs=imagecodecs.__version__,
        bd_method=bd_method,
        seconds=round(time.perf_counter() - t_start, 1),
        threads=threads or 0,
        workers=workers,
        batch_size=batch_size,
        refine=refine,
        model=None if model is None else str(model),
        model_sha256=None if model is None else _weights_sha256(model),
    )
    return RDResult(meta, curves, bd_table(curves, DMENET, bd_method))
