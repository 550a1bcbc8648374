"""What an encoder that tries several codings of each chunk and keeps the cheapest would save.

    python pipelines/encoder_search.py --model default --tiles 35 --orientations 8
    python pipelines/encoder_search.py --model default --tiles 35 --offsets=-0.5,-0.25,0,0.25,0.5

Each 256x256 tile is coded through the real path (:meth:`DMENet.compress` and
:meth:`DMENet.decompress`) once per candidate: one of the tile's 8 orientations (rotations by
multiples of 90 degrees, each with or without a transpose), and a quality offset added to the
operating point. Per tile and quality the candidate with the lowest rate-distortion cost
``bpp + lambda * MSE`` (MSE on the 0..255 scale, the lambda the quality was trained for) is kept.
Printed: the curve of the choices and its Bjontegaard delta rate against the plain coding
(orientation 0, offset 0), on the mean of per-tile PSNR and on the PSNR of the mean MSE. With
``--refine S`` the kept candidate of each tile is coded again with ``S`` latent refinement steps
(:mod:`dmenet_geo.model.refine`), so the choice costs one refinement, not one per candidate.

A trial only: the chunk format stores no orientation, so no chunk can be written this way yet. Bytes
are those of the two entropy-coded strings plus the 31 bytes a 256x256 RGB chunk carries besides.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the ``pipelines`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.zoo import load_model  # noqa: E402
from pipelines.rd.bd import bd_rate  # noqa: E402
from pipelines.rd.tiles import list_images, load_tiles, log  # noqa: E402

CHUNK_OVERHEAD = 31  # bytes of a 256x256 RGB uint8 chunk besides its two strings (bitstream.py)


def orient(x: torch.Tensor, k: int) -> torch.Tensor:
    """Orientation ``k`` in 0..7 of images (..., H, W): transposed when ``k & 4``, then turned
    ``k & 3`` quarter turns."""
    if k & 4:
        x = x.transpose(-1, -2)
    return torch.rot90(x, k & 3, (-2, -1))


def unorient(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`orient`."""
    x = torch.rot90(x, -(k & 3), (-2, -1))
    return x.transpose(-1, -2) if k & 4 else x


@dataclass(frozen=True)
class Coded:
    """Bytes and squared error (0..255 scale) of every tile under one candidate at one quality."""

    quality: float
    orientation: int
    offset: float
    nbytes: np.ndarray  # (tiles,)
    sse: np.ndarray  # (tiles,)


@dataclass(frozen=True)
class Point:
    """The kept codings at one quality: bits per pixel, mean per-tile PSNR, PSNR of the mean MSE."""

    quality: float
    bpp: float
    psnr: float
    psnr_of_mean_mse: float


def _at(model: DMENet, quality: float, offset: float) -> float:
    """``quality + offset`` clamped to the model's range, as the f32 value a chunk would store."""
    return float(np.float32(min(max(quality + offset, 1.0), float(model.config.levels))))


def _costs(model: DMENet, cands: list[Coded], pixels: int, channels: int) -> np.ndarray:
    """(candidates, tiles) ``bpp + lambda * MSE`` of candidates at one quality."""
    lmbda = model.config.lambda_for(cands[0].quality)
    return np.stack([c.nbytes * 8 / pixels + lmbda * c.sse / (pixels * channels) for c in cands])


def _code(
    model: DMENet, x: torch.Tensor, k: int, quality: float, steps: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes and squared error (0..255 scale) of each image of ``x`` coded in orientation ``k``."""
    latents = model.compress(orient(x, k).contiguous(), quality, refine_steps=steps)
    x_hat, _ = model.decompress(latents)
    err = torch.round(unorient(x_hat, k) * 255) - torch.round(x.double() * 255)
    strings = zip(latents.y_strings, latents.z_strings, strict=True)
    nbytes = np.array([len(y) + len(z) + CHUNK_OVERHEAD for y, z in strings])
    return nbytes, err.pow(2).flatten(1).sum(1).numpy()


def code_all(
    model: DMENet, x: torch.Tensor, qualities: list[float], orientations: int, offsets: list[float]
) -> list[Coded]:
    """Code ``x`` (B, 3, H, W) in [0, 1] under every candidate (orientation below ``orientations``,
    quality offset, clamped to the model's range) at each quality."""
    out = []
    for q in qualities:
        out += [Coded(q, k, off, *_code(model, x, k, _at(model, q, off)))
                for k in range(orientations) for off in offsets]
        log(f"quality {q:g}: {orientations * len(offsets)} codings of {x.shape[0]} tiles done")
    return out


def choose(model: DMENet, coded: list[Coded], pixels: int, channels: int = 3) -> list[Point]:
    """Per tile and quality, the candidate of the lowest ``bpp + lambda * MSE``."""
    points = []
    for q in dict.fromkeys(c.quality for c in coded):
        cands = [c for c in coded if c.quality == q]
        nbytes = np.stack([c.nbytes for c in cands])  # (candidates, tiles)
        mse = np.stack([c.sse for c in cands]) / (pixels * channels)
        best = _costs(model, cands, pixels, channels).argmin(0)
        tiles = np.arange(nbytes.shape[1])
        kept_bytes, kept_mse = nbytes[best, tiles], np.maximum(mse[best, tiles], 1e-10)
        points.append(Point(q, float(kept_bytes.sum() * 8 / (pixels * len(tiles))),
                            float(np.mean(10 * np.log10(255.0**2 / kept_mse))),
                            10 * math.log10(255.0**2 / float(kept_mse.mean()))))
    return points


def refine_kept(
    model: DMENet, x: torch.Tensor, coded: list[Coded], steps: int, pixels: int, channels: int = 3
) -> list[Coded]:
    """The candidate :func:`choose` keeps for each tile, coded again with ``steps`` refinement steps
    (one :class:`Coded` per quality, orientation and offset set to -1 and NaN: they vary by tile)."""
    out = []
    for q in dict.fromkeys(c.quality for c in coded):
        cands = [c for c in coded if c.quality == q]
        kept = [cands[best] for best in _costs(model, cands, pixels, channels).argmin(0)]
        per_tile = [_code(model, x[i : i + 1], c.orientation, _at(model, q, c.offset), steps)
                    for i, c in enumerate(kept)]
        out.append(Coded(q, -1, math.nan, *(np.concatenate(v) for v in zip(*per_tile, strict=True))))
        log(f"quality {q:g}: kept codings of {x.shape[0]} tiles refined for {steps} steps")
    return out


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="shipped name or weights .pt")
    p.add_argument("--data", type=Path, default=Path("../shared/data/val"))
    p.add_argument("--tiles", type=int, default=35, help="images, spread evenly (one 256x256 tile each)")
    p.add_argument("--qualities", type=_floats, default=[1.0, 3.0, 5.0, 8.0])
    p.add_argument("--orientations", type=int, choices=(1, 2, 4, 8), default=1,
                   help="try orientations 0..N-1 (2: plain and transposed)")
    p.add_argument("--offsets", type=_floats, default=[0.0], help="quality offsets to try")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="code each kept candidate again with this many refinement steps")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if 0.0 not in args.offsets:
        p.error("--offsets must include 0 (the plain coding is the anchor)")
    if len(args.qualities) < 2:
        p.error("--qualities needs at least two values for a delta rate")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    tiles = load_tiles(list_images(args.data, limit=args.tiles))
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255
    coded = code_all(model, x, args.qualities, args.orientations, args.offsets)
    pixels = x.shape[-2] * x.shape[-1]
    plain = choose(model, [c for c in coded if c.orientation == 0 and c.offset == 0.0], pixels)
    kept = choose(model, coded, pixels)
    if args.refine:
        kept = choose(model, refine_kept(model, x, coded, args.refine, pixels), pixels)
    for a, b in zip(plain, kept, strict=True):
        print(f"quality {a.quality:g}: plain {a.bpp:.4f} bpp {a.psnr:.2f} dB; "
              f"kept {b.bpp:.4f} bpp {b.psnr:.2f} dB")
    for metric in ("psnr", "psnr_of_mean_mse"):
        delta = bd_rate([a.bpp for a in plain], [getattr(a, metric) for a in plain],
                        [b.bpp for b in kept], [getattr(b, metric) for b in kept])
        print(f"BD-rate ({metric}) of the kept codings against the plain: {delta:+.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
