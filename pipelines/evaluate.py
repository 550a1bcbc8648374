"""Rate-distortion evaluation of DMENet against JPEG 2000, WebP, AVIF and JPEG XL.

Every image of the data folder is cut into non-overlapping TILE x TILE tiles (default 256; partial
tiles at the right and bottom edges are dropped) and each tile is coded on its own, as one Zarr chunk
would be. Rates are bits per pixel of the real bytes of each tile's stream; quality is PSNR (peak
255 over the three RGB bands, computed per tile then averaged, plus the PSNR of the average MSE) and
MS-SSIM (mean per-tile value and mean per-tile dB, ``-10 log10(1 - MS-SSIM)``).

    python pipelines/evaluate.py --data /work/shared/data/val --json runs/eval/rd.json \\
        --plot runs/eval/rd.png

DMENet rate: the bytes of the ``dmenet_geo.codec.DMENetCodec`` chunk (container header included)
when the model is a shipped model name; for a weights file, the same chunk container packed around
its latent strings (the bytes the codec would write were the weights shipped), so both compare on
equal terms; ``--dmenet-rate latents`` counts the bare strings (``len(y) + len(z)``, no header).
The JSON records which (``rate_source``).

Classical codecs (imagecodecs; one tile per stream, 8-bit RGB, single-threaded unless --threads):

* JPEG 2000 (OpenJPEG, raw J2K codestream, 9/7 wavelet): ``level`` is OpenJPEG's fixed-quality
  target PSNR in dB (``level=0`` would be lossless).
* WebP (libwebp, lossy): ``level`` is the quality 0..100.
* AVIF (libavif, 4:4:4): ``level`` is the quality 0..100, encoder ``--avif-speed`` (default 6; the
  library's own default takes seconds per tile on one CPU thread, 50-100x longer).
* JPEG XL (libjxl, VarDCT): ``distance`` is the Butteraugli distance (lower is better).

Bjontegaard delta rates (PCHIP, see ``pipelines/rd/bd.py``) are of DMENet against every other curve:
negative numbers mean DMENet needs fewer bits for the same PSNR / MS-SSIM dB. Learned baselines: a
result JSON of an earlier run or other DMENet weights (``--baseline``), and CompressAI
mbt2018-mean / ``MeanScaleHyperprior`` checkpoints (``--compressai-baseline``, one per rate point).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``pipelines.rd`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The package's public API, re-exported for the notebook, the tests and older imports.
from pipelines.rd.bd import bd_quality, bd_rate  # noqa: E402
from pipelines.rd.classical import (  # noqa: E402
    CLASSICAL_CODECS,
    ClassicalCodec,
    available_codecs,
    sweep_classical,
)
from pipelines.rd.learned import (  # noqa: E402
    DEFAULT_QUALITIES,
    RATE_SOURCES,
    evaluate_compressai,
    evaluate_dmenet,
)
from pipelines.rd.report import (  # noqa: E402
    bd_table,
    curve_from_json,
    format_table,
    plot_curves,
    write_json,
)
from pipelines.rd.results import DMENET, BDRow, RDCurve, RDMeta, RDPoint, RDResult  # noqa: E402
from pipelines.rd.run import DEFAULT_DATA, evaluate  # noqa: E402
from pipelines.rd.tiles import DB_CAP, TileMetrics, list_images, load_tiles, tile_metrics  # noqa: E402

__all__ = [
    "DB_CAP",
    "DEFAULT_DATA",
    "DEFAULT_QUALITIES",
    "DMENET",
    "CLASSICAL_CODECS",
    "BDRow",
    "ClassicalCodec",
    "RDCurve",
    "RDMeta",
    "RDPoint",
    "RDResult",
    "TileMetrics",
    "available_codecs",
    "bd_quality",
    "bd_rate",
    "list_images",
    "load_tiles",
    "tile_metrics",
    "sweep_classical",
    "evaluate_dmenet",
    "evaluate_compressai",
    "evaluate",
    "bd_table",
    "curve_from_json",
    "format_table",
    "plot_curves",
    "write_json",
    "parse_args",
    "main",
]


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
        choices=RATE_SOURCES,
        default="auto",
        help="DMENet bytes: codec chunks (shipped models), the same container packed around the "
        "latent strings (any weights), or the bare latent strings; auto: codec if usable, else container",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        help="DMENet: optimise each tile's latent for N steps before coding (encoder only; 0: off)",
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
        "--workers",
        type=int,
        default=1,
        help="DMENet batches coded at once, in threads; for --refine, with --threads 1 and a small"
        " --batch-size (refinement optimises one tile at a time)",
    )
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
        refine=args.refine,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
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
