"""Train a post-filter (dmenet_geo.model.postfilter) for a frozen DMENet.

    python pipelines/train_postfilter.py --init-weights dmenet_geo/weights/default.pt \\
        --train ../shared/data/train/rsscn7 --val ../shared/data/val --out runs/pf --minutes 30

First codes ``--crops`` random 256x256 crops of the training images through the model's real
``compress`` / ``decompress`` (without a post-filter) at qualities drawn uniformly from its range
(the pictures users get; kept in ``OUT/decoded.pt`` and reused by a later run with the same model,
crops and seed), then trains the filter alone on random ``--patch`` x ``--patch`` windows of them:
a fresh filter, or with ``--warm-start`` the one the weights already have. Adam, a cosine decay
from ``--lr`` over the budget, mean squared error against the original crop. Every other tensor
of the model is copied unchanged, so the bitstream is the same and only the decoded picture
changes. With ``--val`` the gain in PSNR (mean over tiles, 8-bit) at qualities 1, 3, 5 and 8 of
the levels is logged every ``--val-every`` steps and at the end, on the validation images cut into
256x256 tiles (one per RSSCN7 image) and coded once. Writes ``OUT/weights.pt`` and
``OUT/weights.json``; SIGTERM or Ctrl-C stops after the current step and saves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.training import CropDataset, list_images  # noqa: E402
from dmenet_geo.model.zoo import read_state  # noqa: E402
from dmenet_geo.weights import read_sidecar  # noqa: E402
from pipelines.rd.tiles import list_images as val_images  # noqa: E402
from pipelines.rd.tiles import load_tiles  # noqa: E402
from pipelines.train_decoder import psnr_db  # noqa: E402
from pipelines.trainer.runtime import StopOnSignal, atomic_save, fp32_state, inherited_sidecar  # noqa: E402

VAL_QUALITIES = (1, 3, 5, 8)
_RUN_KEYS = ("post_filter_steps", "post_filter_crops", "post_filter_patch", "post_filter_batch",
             "post_filter_lr", "post_filter_seed", "post_filter_val_psnr_gain_db", "post_filter_warm_start")


@dataclasses.dataclass
class Decoded:
    """Originals (uint8) and what the model decoded (float32 in [0, 1]), with the qualities."""

    original: torch.Tensor
    decoded: torch.Tensor
    quality: torch.Tensor


@dataclasses.dataclass
class Loaded:
    """What ``--init-weights`` gave: the model without and with the filter, the sidecar, the SHA-256
    of the model without the filter (the one that codes the crops) and of the file itself."""

    base: DMENet
    model: DMENet
    meta: dict[str, object]
    base_sha256: str
    init_sha256: str


def load_base(weights: Path, channels: int | None, warm_start: bool = False) -> Loaded:
    """The frozen model without a post-filter and the same model with the filter to train.

    Without ``warm_start`` the weights must have no filter and get a fresh one of ``channels``; with
    it they must have one (of ``channels``, unless that is None), which training continues from."""
    sidecar = weights.with_suffix(".json")
    if not weights.is_file() or not sidecar.is_file():
        raise SystemExit(f"--init-weights needs {weights} and its sidecar {sidecar}")
    meta = dict(read_sidecar(sidecar))
    config = DMENetConfig.from_dict(meta["config"])  # type: ignore[arg-type]
    if config.post_filter and not warm_start:
        raise SystemExit(f"{weights} already has a post-filter (--warm-start trains it further)")
    if warm_start:
        if not config.post_filter or channels not in (None, config.post_filter):
            wanted = "" if channels is None else f" of --channels {channels}"
            raise SystemExit(f"--warm-start needs {weights} to have a post-filter{wanted}, "
                             f"it has {config.post_filter or 'none'}")
        channels = config.post_filter
    if not channels:
        raise ValueError("a fresh post-filter needs a number of channels")
    state, sha = read_state(weights)
    base = DMENet(dataclasses.replace(config, post_filter=0))
    base.load_state_dict({k: v for k, v in state.items() if not k.startswith("post_filter.")})
    model = DMENet(dataclasses.replace(config, post_filter=channels))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("post_filter.") for k in missing) or (warm_start and missing):
        raise SystemExit(f"{weights} does not fit the model: missing {missing}, unexpected {unexpected}")
    base_sha = meta.get("post_filter_base_sha256") if warm_start else sha
    if not isinstance(base_sha, str):
        raise SystemExit(f"{sidecar} does not record post_filter_base_sha256")
    return Loaded(base.eval(), model.eval(), meta, base_sha, sha)


@torch.no_grad()
def decode_all(
    model: DMENet, originals: torch.Tensor, qualities: torch.Tensor, batch: int = 8
) -> torch.Tensor:
    out = []
    for i in range(0, len(originals), batch):
        x = originals[i : i + batch].float() / 255
        out.append(model.decompress(model.compress(x, qualities[i : i + batch].tolist()))[0].float())
    return torch.cat(out)


def training_set(base: DMENet, args: argparse.Namespace, sha: str) -> Decoded:
    cache = args.out / "decoded.pt"
    key = {"sha256": sha, "crops": args.crops, "seed": args.seed, "train": [str(p) for p in args.train]}
    if cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == repr(key):
            print(f"decoded crops from {cache}", flush=True)
            return Decoded(saved["original"], saved["decoded"], saved["quality"])
    crops = CropDataset(list_images(args.train), 256)
    rng = random.Random(args.seed)
    originals = torch.from_numpy(np.stack([crops.sample(rng) for _ in range(args.crops)])).permute(0, 3, 1, 2)
    qualities = torch.tensor([rng.uniform(1, base.config.levels) for _ in range(args.crops)])
    start = time.time()
    decoded = decode_all(base, originals.contiguous(), qualities)
    print(f"coded {args.crops} crops in {time.time() - start:.0f} s", flush=True)
    atomic_save({"key": repr(key), "original": originals, "decoded": decoded, "quality": qualities}, cache)
    return Decoded(originals, decoded, qualities)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean PSNR of ``x`` (in [0, 1]) rounded to 8 bits, as a user gets it, against uint8 ``ref``."""
    return psnr_db((x * 255).round() / 255, ref.float() / 255)


@torch.no_grad()
def psnr_gains(pf: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], val: Decoded) -> dict[int, float]:
    """PSNR with the filter ``pf(decoded, quality)`` minus without (dB, mean over tiles), for each
    quality ``val`` was coded at (those of ``VAL_QUALITIES`` the model has)."""
    gains = {}
    for q in sorted({int(v) for v in val.quality.tolist()}):
        pick = val.quality == q
        decoded, original = val.decoded[pick], val.original[pick]
        filtered = pf(decoded, val.quality[pick]).clamp(0, 1).float()
        gains[q] = _psnr(filtered, original) - _psnr(decoded, original)
    return gains


def validation_set(base: DMENet, folder: Path) -> Decoded:
    tiles = torch.from_numpy(np.stack(load_tiles(val_images(folder), 256))).permute(0, 3, 1, 2).contiguous()
    qs = [q for q in VAL_QUALITIES if q <= base.config.levels]
    originals = torch.cat([tiles] * len(qs))
    qualities = torch.tensor([float(q) for q in qs for _ in range(len(tiles))])
    return Decoded(originals, decode_all(base, originals, qualities), qualities)


def fit(
    net: torch.nn.Module, data: Decoded, args: argparse.Namespace,
    log: Callable[[int, float, float], None] | None = None,
) -> int:
    """Train ``net(decoded, quality)`` towards the originals on random ``args.patch`` windows of
    ``args.batch`` crops (Adam, cosine from ``args.lr`` over ``args.minutes`` or ``args.steps``) until
    the budget ends or SIGTERM / Ctrl-C; ``log(step, mse, lr)`` after every step. Returns the steps."""
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    budget, start, step = args.minutes * 60, time.time(), 0
    side = data.original.shape[-1]
    with StopOnSignal() as stop:
        while time.time() - start < budget and not stop.requested and (not args.steps or step < args.steps):
            done = (step / args.steps) if args.steps else (time.time() - start) / budget
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
            idx = torch.randint(len(data.original), (args.batch,), generator=gen)
            top, left = torch.randint(side - args.patch + 1, (2,), generator=gen).tolist()
            window = (idx, slice(None), slice(top, top + args.patch), slice(left, left + args.patch))
            target = data.original[window].float() / 255
            loss = (net(data.decoded[window], data.quality[idx]) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if log is not None:
                log(step, loss.item(), opt.param_groups[0]["lr"])
    return step


def train(model: DMENet, data: Decoded, val: Decoded | None, args: argparse.Namespace) -> int:
    pf = model.post_filter
    assert pf is not None
    pf.train()
    start = time.time()

    def log(step: int, mse: float, lr: float) -> None:
        if step % args.log_every == 0:
            print(f"step={step} mse={mse:.3e} lr={lr:.2e} elapsed_s={time.time() - start:.0f}", flush=True)
        if val is not None and step % args.val_every == 0:
            gains = [round(g, 4) for g in psnr_gains(pf, val).values()]
            print(f"step={step} val_psnr_gain_db={gains}", flush=True)

    steps = fit(pf, data, args, log)
    pf.eval()
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-weights", type=Path, required=True, help="weights.pt with its .json sidecar")
    p.add_argument("--train", type=Path, nargs="+", required=True, help="folders of training images")
    p.add_argument("--val", type=Path, default=None, help="folder of validation images")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--warm-start", action="store_true",
                   help="continue training the post-filter --init-weights already has")
    p.add_argument("--crops", type=int, default=1200, help="training crops coded once")
    p.add_argument("--patch", type=int, default=128, help="training window side (even)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of the training loop")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--val-every", type=int, default=2000)
    args = p.parse_args(argv)
    if args.patch % 2 or not 2 <= args.patch <= 256 or args.crops < 1 or args.batch < 1:
        p.error("--patch must be even in 2..256, --crops and --batch positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = load_base(args.init_weights, args.channels, args.warm_start)
    base, model, meta, sha = loaded.base, loaded.model, loaded.meta, loaded.base_sha256
    data = training_set(base, args, sha)
    val = validation_set(base, args.val) if args.val else None
    steps = train(model, data, val, args)
    gains = psnr_gains(model.post_filter, val) if val is not None and model.post_filter is not None else None
    print(f"final step={steps} val_psnr_gain_db={gains}", flush=True)
    earlier = {k: v for k, v in inherited_sidecar(meta).items() if k not in _RUN_KEYS}  # moved below
    out_meta = dict(earlier, config=model.config.to_dict(), post_filter_base_sha256=sha,
                    post_filter_steps=steps, post_filter_crops=args.crops, post_filter_patch=args.patch,
                    post_filter_batch=args.batch, post_filter_lr=args.lr, post_filter_seed=args.seed)
    if args.warm_start:
        out_meta["post_filter_warm_start"] = {
            "sha256": loaded.init_sha256,
            **{k: meta[k] for k in _RUN_KEYS if k in meta},
        }
    if gains is not None:
        out_meta["post_filter_val_psnr_gain_db"] = {str(q): g for q, g in gains.items()}
    atomic_save(fp32_state(model), args.out / "weights.pt")
    (args.out / "weights.json").write_text(json.dumps(out_meta, indent=2) + "\n")
    print(f"wrote {args.out / 'weights.pt'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
