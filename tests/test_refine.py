"""Encoder-side latent refinement: lower coded cost, unchanged decoder, deterministic bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from codec_helpers import psnr, real_tile

from dmenet_geo.codec import DMENetCodec
from dmenet_geo.codec.numcodecs import MAX_REFINE
from dmenet_geo.model import get_model
from dmenet_geo.model.refine import MAX_REFINE_STEPS, coded_costs, refine_latents

TILES = {"field": "field.png", "industry": "industry.png", "residential": "residential.png"}


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return get_model("default", "cpu")


def _coded_cost(model, x: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        coded, _ = coded_costs(model, y, x, q, model.config.lambda_for(float(q[0])), None)
    return float(coded)


@pytest.mark.parametrize("quality", [1.0, 4.0, 8.0], ids=["q1", "q4", "q8"])
def test_refinement_lowers_the_coded_cost(model, quality: float) -> None:  # type: ignore[no-untyped-def]
    tile = real_tile(128, 128, name="industry.png")
    x = torch.from_numpy(tile.astype(np.float32) / 255)[None]
    q = torch.tensor([quality])
    with torch.no_grad():
        y0 = model.g_a(x) * model._gain(model.log_gain, q)
    y = refine_latents(model, x, y0, q, 8)
    before, after = _coded_cost(model, x, y0, q), _coded_cost(model, x, y, q)
    assert after < before, f"q={quality}: cost {before:.4f} -> {after:.4f}"
    assert all(p.grad is None for p in model.parameters()), "the weights must get no gradients"


@pytest.mark.parametrize("name", TILES.values(), ids=TILES.keys())
def test_refined_chunks_decode_with_a_plain_codec(name: str) -> None:
    tile = np.ascontiguousarray(real_tile(128, 128, name=name))
    refined = DMENetCodec(quality=3, refine=6).encode(tile)
    plain = DMENetCodec(quality=3)
    decoded = plain.decode(refined)
    assert decoded.shape == tile.shape and decoded.dtype == np.uint8
    assert psnr(tile, decoded) > 22.0
    # same settings, same bytes: the refinement's noise is seeded per image
    assert DMENetCodec(quality=3, refine=6).encode(tile) == refined


def test_refinement_saves_bytes_over_real_tiles() -> None:
    tiles = [np.ascontiguousarray(real_tile(128, 128, name=n)) for n in TILES.values()]
    plain, refined = DMENetCodec(quality=2), DMENetCodec(quality=2, refine=10)
    plain_chunks, refined_chunks = plain.encode_batch(tiles), refined.encode_batch(tiles)
    plain_bytes, refined_bytes = (sum(len(b) for b in c) for c in (plain_chunks, refined_chunks))
    psnr_plain, psnr_refined = (
        np.mean([psnr(t, plain.decode(b)) for t, b in zip(tiles, c, strict=True)])
        for c in (plain_chunks, refined_chunks)
    )
    # fewer bytes for (almost) the same PSNR: the refinement trades along the model's own RD cost
    assert refined_bytes < plain_bytes
    assert psnr_refined > psnr_plain - 0.3


def test_refine_bounds(model) -> None:  # type: ignore[no-untyped-def]
    assert MAX_REFINE == MAX_REFINE_STEPS
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="refine steps"):
        model.compress(x, 2.0, refine_steps=MAX_REFINE_STEPS + 1)
    latents = model.compress(x, 2.0, refine_steps=2)
    _, digests = model.decompress(latents)  # the refined latents decode to what the encoder coded
    assert digests == latents.digests
