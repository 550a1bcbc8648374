"""Where a model's quality is lost: the transforms alone, or the quantisation.

    python pipelines/ceiling.py [--model default] [--data ../shared/data/val] [--limit 35]

For each operating point it measures, on 256x256 tiles, the mean per-tile PSNR (peak 255) of

* ``transforms``: ``g_s(g_a(x))`` with the gains of that quality and no quantisation at all, the
  best any entropy coder could do with these transforms;
* ``coded``: the chunk as actually coded (``compress`` then ``decompress``), with its bpp from the
  entropy-coded strings (no container header).

When ``transforms`` hardly rises with the quality, more bits cannot buy more quality: the
transforms' width, not the rate, caps the model. ``--json`` writes the table.

``--klt 64,128,192`` adds a linear reference for that width: the PSNR of keeping, for every 16x16
RGB block (the area one latent position stands for), only its first ``k`` of 768 Karhunen-Loeve
coefficients (the block covariance's eigenvectors, fitted on the same tiles), unquantised. It is
not a bound on a non-linear, overlapping transform, but it shows how the quality a latent of ``k``
channels can carry grows with ``k``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make ``pipelines`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from dmenet_geo.model.zoo import load_model  # noqa: E402
from pipelines.rd.run import DEFAULT_DATA  # noqa: E402
from pipelines.rd.tiles import list_images, load_tiles  # noqa: E402


@dataclass(frozen=True)
class CeilingRow:
    quality: float
    transforms_psnr: float
    coded_psnr: float
    coded_bpp: float


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    mse = (x_hat.clamp(0, 1) - x).double().pow(2).reshape(x.shape[0], -1).mean(1).clamp_min(1e-10)
    return (-10 * torch.log10(mse)).numpy()


@torch.no_grad()
def measure(model: DMENet, tiles: torch.Tensor, quality: float, batch: int = 8) -> CeilingRow:
    """The three numbers of one operating point, over ``tiles`` (B, 3, H, W) in [0, 1]."""
    transforms, coded, bits = [], [], 0
    for i in range(0, tiles.shape[0], batch):
        x = tiles[i : i + batch]
        q = model._qualities(quality, x.shape[0])
        y = model.g_a(x) * model._gain(model.log_gain, q)
        transforms.append(_psnr(model.reconstruct(y * model._gain(model.log_inv_gain, q), q), x))
        latents = model.compress(x, quality)
        coded.append(_psnr(model.decompress(latents)[0].float(), x))
        bits += 8 * sum(len(s) for s in latents.y_strings + latents.z_strings)
    pixels = tiles.shape[0] * tiles.shape[2] * tiles.shape[3]
    return CeilingRow(quality, float(np.concatenate(transforms).mean()), float(np.concatenate(coded).mean()),
                      bits / pixels)


def klt_reference(tiles: torch.Tensor, channels: list[int], block: int = 16) -> dict[int, float]:
    """Mean per-tile PSNR (dB, peak 1) of keeping ``k`` Karhunen-Loeve coefficients of each
    ``block`` x ``block`` block of ``tiles`` (B, C, H, W) in [0, 1], for each ``k`` in ``channels``."""
    b, c, h, w = tiles.shape
    if h % block or w % block:
        raise ValueError(f"tiles must be a multiple of {block} pixels on each side, got {h}x{w}")
    size = c * block * block
    if any(not 0 < k <= size for k in channels):
        raise ValueError(f"each k must be in 1..{size}, got {channels}")
    blocks = tiles.double().reshape(b, c, h // block, block, w // block, block).permute(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(b, -1, size)
    centred = blocks - blocks.reshape(-1, size).mean(0)
    flat = centred.reshape(-1, size)
    _, vectors = torch.linalg.eigh(flat.T @ flat / flat.shape[0])  # ascending eigenvalues
    out = {}
    for k in channels:
        basis = vectors[:, size - k :]
        error = centred - centred @ basis @ basis.T
        mse = error.pow(2).mean(dim=(1, 2)).clamp_min(1e-20)
        out[k] = float((-10 * torch.log10(mse)).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="a shipped model name or a weights.pt path")
    p.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    p.add_argument("--limit", type=int, default=None, help="images, spread evenly over the folder")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--klt", type=lambda t: [int(v) for v in t.split(",")], default=None,
                   help="comma-separated latent widths for the linear reference (see above)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(Path(args.model) if args.model.endswith(".pt") else args.model)
    tiles = torch.from_numpy(np.stack(load_tiles(list_images(args.data, args.limit), 256)))
    tiles = tiles.permute(0, 3, 1, 2).float() / 255
    rows = [measure(model, tiles, float(q)) for q in range(1, model.config.levels + 1)]
    print(f"{args.model}: {tiles.shape[0]} tiles of 256x256, mean per-tile PSNR (dB)")
    print("| quality | transforms alone | coded | coded bpp (strings) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r.quality:g} | {r.transforms_psnr:.2f} | {r.coded_psnr:.2f} | {r.coded_bpp:.3f} |")
    klt = klt_reference(tiles, args.klt) if args.klt else {}
    for k, value in klt.items():
        print(f"linear reference, {k} of 768 KLT coefficients per 16x16 block: {value:.2f} dB")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "tiles": int(tiles.shape[0]),
                                         "rows": [asdict(r) for r in rows],
                                         "klt_psnr": {str(k): v for k, v in klt.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
