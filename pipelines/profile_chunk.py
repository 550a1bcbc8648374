"""Where the time goes per 3x256x256 uint8 chunk, stage by stage, in the GeoTIFF -> Zarr pipeline.

    OMP_NUM_THREADS=1 .venv/bin/python pipelines/profile_chunk.py --src bench_cache/mosaic-rsscn7-v1-1024.tif
    .venv/bin/python pipelines/profile_chunk.py --threads 2 --batch 8 --device cuda

Encode stages: GeoTIFF window read (one block of ``--batch`` chunks), ``prepare`` (scaling to [0, 1]),
g_a (analysis, float32; its SEB deformable convolution timed apart), h_a + z entropy coding,
the float64 entropy parameters (h_s + LSM, CPU), y entropy coding, container packing, store write.
Decode stages: store read, unpacking, z decoding, float64 entropy parameters, y decoding, g_s in
float64 (its SEB apart), the post-filter in float64 (for a model that has one), restoring the
dtype. Times are medians over ``--repeats`` per chunk in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SRC = Path(__file__).resolve().parents[1] / "bench_cache" / "mosaic-rsscn7-v1-1024.tif"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=DEFAULT_SRC, help="an RGB uint8 GeoTIFF (>= 512x1024)")
    p.add_argument("--batch", type=int, default=8, help="chunks per block (= per model batch)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--model", default="default", help="shipped model name")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.src.exists():
        sys.exit(f"{args.src} missing: run pipelines/benchmark.py --quick first (it builds the mosaic)")

    import rasterio
    import torch
    from rasterio.windows import Window

    from dmenet_geo.codec import DMENetCodec, set_runtime
    from dmenet_geo.codec.bitstream import Chunk, ChunkHeader, GroupPayload, pack_chunk, unpack_chunk
    from dmenet_geo.codec.engine import prepare
    from dmenet_geo.model.dmenet import CompressedLatents
    from dmenet_geo.model.layers import SEB
    from dmenet_geo.model.zoo import get_model

    torch.set_num_threads(args.threads)
    set_runtime(device=args.device, batch_size=args.batch)
    codec = DMENetCodec(quality=args.quality, model=args.model)
    codec.decode(codec.encode(np.zeros((3, 64, 64), dtype=np.uint8)))
    model = get_model(args.model, args.device)
    dev = torch.device(args.device)
    b, side = args.batch, 256
    cols = min(b, 4)
    rows = -(-b // cols)
    times: dict[str, list[float]] = {}
    seb_time = [0.0]

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.setdefault(name, []).append((time.perf_counter() - t0) * 1e3 / b)
        return out

    original = SEB.forward

    def counting(self: SEB, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = original(self, x)
        seb_time[0] += time.perf_counter() - t0
        return out

    SEB.forward = counting  # type: ignore[method-assign]
    q = model._qualities(args.quality, b)
    store = Path(tempfile.mkdtemp()) / "chunks"
    store.mkdir()

    def one_round() -> None:  # one pass over every stage (a function: the lambdas bind its locals)
        # ---------------------------------------------------------------- encode
        def read() -> np.ndarray:
            with rasterio.open(args.src) as src:
                return src.read(window=Window(0, 0, cols * side, rows * side))

        block = timed("enc: GeoTIFF read", read)
        arrays = [np.ascontiguousarray(block[:, (k // cols) * side : (k // cols + 1) * side,
                                             (k % cols) * side : (k % cols + 1) * side]) for k in range(b)]
        prep = timed("enc: prepare (scale)", lambda: [prepare(a, None, None) for a in arrays])
        x = torch.from_numpy(np.stack([pr.groups[0] for pr in prep])).to(dev)
        gain = torch.exp(model._table64(model.log_gain, q)).float().to(dev)
        hgain = torch.exp(model._table64(model.log_hyper_gain, q)).float().to(dev)
        seb_time[0] = 0.0
        y = timed("enc: g_a float32", lambda: model.g_a(x) * gain)
        times.setdefault("enc:   of which SEB (deform conv)", []).append(seb_time[0] * 1e3 / b)
        z = timed("enc: h_a", lambda: model.h_a(y) * hgain)
        zs = timed("enc: z entropy code+decode", lambda: model.entropy_bottleneck.compress(z))
        z_hat = model.entropy_bottleneck.decompress(zs, z.shape[-2:])
        _sym, ys = timed("enc: entropy params float64 + y coding",
                         lambda: model._code_y(y.float().cpu(), z_hat, q))
        zshape = (int(z.shape[-2]), int(z.shape[-1]))

        def pack() -> list[bytes]:
            header = ChunkHeader("uint8", 3, side, side, args.quality, codec._model_id, zshape,
                                 ((0.0, 255.0),) * 3)
            return [pack_chunk(Chunk(header, (GroupPayload(0, zs[k], ys[k]),), None)) for k in range(b)]

        data = timed("enc: pack container", pack)

        def write() -> None:
            for k, d in enumerate(data):
                (store / f"c{k}").write_bytes(d)

        timed("enc: write chunk files", write)
        real = timed("enc: codec.encode_batch total", lambda: codec.encode_batch(arrays))
        # ---------------------------------------------------------------- decode
        raw = timed("dec: read chunk files", lambda: [(store / f"c{k}").read_bytes() for k in range(b)])
        chunks = timed("dec: unpack container", lambda: [unpack_chunk(d) for d in raw])
        zh = timed("dec: z entropy decode", lambda: model.entropy_bottleneck.decompress(
            [c.groups[0].z for c in chunks], zshape))
        ystrings = [c.groups[0].y for c in chunks]
        sym2, means2 = timed("dec: entropy params float64 + y decoding",
                             lambda: model._decode_y(ystrings, zh, q))
        inv = torch.exp(model._table64(model.log_inv_gain, q))
        y_hat = ((sym2.double() + means2.double()) * inv).to(dev)
        seb_time[0] = 0.0
        x_hat = timed("dec: g_s float64", lambda: model._synthesise64(y_hat, dev)).clamp_(0, 1)
        times.setdefault("dec:   of which SEB (deform conv)", []).append(seb_time[0] * 1e3 / b)
        if model.post_filter is not None:
            timed("dec: post-filter float64", lambda: model._post_filter64(x_hat, q))
        lat = CompressedLatents([c.groups[0].y for c in chunks], [c.groups[0].z for c in chunks], zshape,
                                (side, side), [args.quality] * b, [0] * b)
        timed("dec: model.decompress total", lambda: model.decompress(lat))
        timed("dec: codec.decode_batch total", lambda: codec.decode_batch(real))

    with torch.inference_mode():
        for _ in range(args.repeats):
            one_round()
    SEB.forward = original  # type: ignore[method-assign]
    med = {k: round(statistics.median(v), 2) for k, v in times.items()}
    if args.json:
        print(json.dumps({"batch": b, "threads": args.threads, "device": args.device, "ms_per_chunk": med}))
    else:
        print(f"ms per 3x256x256 chunk (batch {b}, {args.threads} torch threads, {args.device}):")
        for k, v in med.items():
            print(f"  {k:36s} {v:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
