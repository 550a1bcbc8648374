"""The determinism matrix: chunks encoded once decode bit-identically everywhere.

16 chunks are encoded in this process. Fresh processes decode them with 1 and 2 torch threads,
one chunk at a time (``codec.decode``) and all together (``codec.decode_batch``), with the model
batch size changed by ``set_runtime(batch_size=...)`` and the device chosen by ``DMENET_DEVICE``.
Every decoded array must be bit-identical to what this (the encoding) process decodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from codec_helpers import SAMPLE_TILES, assert_bitwise_equal, raster, real_tile, run_python

from dmenet_geo.codec import DMENetCodec

N_CHUNKS = 16


def _chunks() -> list[np.ndarray]:
    """12 real 3x64x64 uint8 crops plus mixed dtypes, band counts and one other size."""
    tiles = sorted(p.name for p in SAMPLE_TILES.glob("*.png"))
    out = []
    for k in range(12):
        tile = real_tile(name=tiles[k % len(tiles)])
        r, c = divmod(k // len(tiles), 2)
        out.append(np.ascontiguousarray(tile[:, 64 * r + 32 : 64 * r + 96, 64 * c + 64 : 64 * c + 128]))
    out.append(raster(4, 64, 64, "uint16", seed=12))  # two groups
    f32 = raster(1, 64, 64, "float32", seed=13)
    f32[0, :7, :7] = np.nan  # NaN mask
    out.append(f32)
    out.append(raster(3, 64, 64, "int16", seed=14))
    out.append(raster(7, 40, 50, "uint8", seed=15))  # another size, three groups
    assert len(out) == N_CHUNKS
    return out


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("determinism")
    codec = DMENetCodec(quality=3.5)
    data = codec.encode_batch(_chunks())
    for i, d in enumerate(data):
        (root / f"chunk{i:02d}.dat").write_bytes(d)
    (root / "config.json").write_text(json.dumps(codec.get_config()))
    singles = [codec.decode(d) for d in data]
    return {"root": root, "codec": codec, "data": data, "singles": singles}


def test_encoding_process_decodes_consistently(encoded) -> None:
    codec, data, singles = encoded["codec"], encoded["data"], encoded["singles"]
    for i, (a, b) in enumerate(zip(singles, codec.decode_batch(data), strict=True)):
        assert_bitwise_equal(a, b, f"chunk {i}: decode vs decode_batch (encoding process)")


DECODER = r"""
import json, os
from pathlib import Path
import torch

threads = int(os.environ["DET_THREADS"])
torch.set_num_threads(threads)
import numpy as np
import numcodecs

root = Path(os.environ["DET_DIR"])
codec = numcodecs.get_codec(json.loads((root / "config.json").read_text()))
from dmenet_geo.codec.engine import runtime, set_runtime
if os.environ.get("DET_BATCH_SIZE"):
    set_runtime(batch_size=int(os.environ["DET_BATCH_SIZE"]))
data = [p.read_bytes() for p in sorted(root.glob("chunk*.dat"))]
singles = [codec.decode(d) for d in data]
batch = codec.decode_batch(data)
out = {**{f"s{i}": a for i, a in enumerate(singles)}, **{f"b{i}": a for i, a in enumerate(batch)}}
default_batch_size = runtime.batch_size
for bs in filter(None, os.environ.get("DET_ALSO_BATCH_SIZES", "").split(",")):
    set_runtime(batch_size=int(bs))  # the same process, other model batch sizes
    out.update({f"b{bs}_{i}": a for i, a in enumerate(codec.decode_batch(data))})
set_runtime(batch_size=default_batch_size)
tag = os.environ["DET_TAG"]
np.savez(root / f"out-{tag}.npz", **out)
print(json.dumps({"threads": torch.get_num_threads(), "device": runtime.resolved_device(),
                  "batch_size": runtime.batch_size, "n": len(data)}))
"""

VARIANTS: dict[str, dict[str, str]] = {
    # tag: environment of the decoding process
    "threads1": {"DET_THREADS": "1", "DET_ALSO_BATCH_SIZES": "1,5"},
    "threads2": {"DET_THREADS": "2", "OMP_NUM_THREADS": "2"},
    "threads1-batch3-device-cpu": {"DET_THREADS": "1", "DET_BATCH_SIZE": "3", "DMENET_DEVICE": "cpu"},
}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _decode_elsewhere(encoded, tag: str, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    root: Path = encoded["root"]
    report = run_python(DECODER, {"DET_DIR": str(root), "DET_TAG": tag, **env})
    with np.load(root / f"out-{tag}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return report, arrays


def _assert_matches(encoded, tag: str, arrays: dict[str, np.ndarray]) -> list[str]:
    for i, ref in enumerate(encoded["singles"]):
        assert_bitwise_equal(arrays[f"s{i}"], ref, f"{tag}: chunk {i} decoded alone")
        assert_bitwise_equal(arrays[f"b{i}"], ref, f"{tag}: chunk {i} decoded in a batch of {N_CHUNKS}")
    extra = sorted(k for k in arrays if "_" in k)
    for key in extra:
        bs, idx = key[1:].split("_")
        ref = encoded["singles"][int(idx)]
        assert_bitwise_equal(arrays[key], ref, f"{tag}: chunk {idx}, batch size {bs}")
    return extra


@pytest.mark.parametrize("tag", VARIANTS, ids=list(VARIANTS))
def test_decoding_is_bit_identical_across_processes(encoded, tag: str) -> None:
    env = VARIANTS[tag]
    report, arrays = _decode_elsewhere(encoded, tag, env)
    assert report["threads"] == int(env["DET_THREADS"])
    assert report["n"] == N_CHUNKS
    assert report["batch_size"] == int(env.get("DET_BATCH_SIZE", 16))
    if "DMENET_DEVICE" in env:
        assert report["device"] == env["DMENET_DEVICE"]
    extra = _assert_matches(encoded, tag, arrays)
    also = [b for b in env.get("DET_ALSO_BATCH_SIZES", "").split(",") if b]
    assert len(extra) == N_CHUNKS * len(also)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs CUDA")
def test_cuda_decode_matches_cpu_encoder(encoded) -> None:
    report, arrays = _decode_elsewhere(encoded, "cuda", {"DET_THREADS": "1", "DMENET_DEVICE": "cuda"})
    assert report["device"] == "cuda"
    _assert_matches(encoded, "cuda", arrays)


def test_cpu_encoding_does_not_depend_on_the_batch() -> None:
    """A chunk's bytes are the same whether it is encoded alone or among others (CPU)."""
    from dmenet_geo.codec import set_runtime
    from dmenet_geo.codec.engine import runtime

    tiles = [real_tile(name=p.name) for p in sorted(SAMPLE_TILES.glob("*.png"))][:6]
    codec = DMENetCodec(quality=5.5)
    previous = (runtime.device, runtime.batch_size)
    try:
        set_runtime(device="cpu", batch_size=16)
        together = codec.encode_batch(tiles + tiles[::-1])
        set_runtime(batch_size=1)
        alone = [codec.encode(t) for t in tiles]
    finally:
        runtime.device, runtime.batch_size = previous
    assert together[: len(tiles)] == alone
    assert together[len(tiles) :] == alone[::-1]
    # the analysis transform's float latents themselves, which a batched float32 pass changes
    from dmenet_geo.model import load_model

    model = load_model("default")
    x = torch.from_numpy(np.stack(tiles)).float() / 255
    gain = torch.ones(len(tiles), model.config.n, 1, 1)
    y, z = model._analysis(x, gain, gain)
    for i in range(len(tiles)):
        y1, z1 = model._analysis(x[i : i + 1], gain[:1], gain[:1])
        assert torch.equal(y[i : i + 1], y1) and torch.equal(z[i : i + 1], z1), f"tile {i}"


def test_set_runtime_validates_and_keeps_settings() -> None:
    from dmenet_geo.codec import set_runtime
    from dmenet_geo.codec.engine import runtime

    before = (runtime.device, runtime.batch_size)
    try:
        with pytest.raises(ValueError, match="batch_size"):
            set_runtime(batch_size=0)
        assert set_runtime(batch_size=5).batch_size == 5
        assert set_runtime().batch_size == 5  # None leaves a setting unchanged
    finally:
        runtime.device, runtime.batch_size = before
