"""DMENet model tests: shapes, exact decoding, ablations, training, MDEI (config: test_model_config.py)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_helpers import crop, loud_model

from dmenet_geo.model import STRIDE, CompressedLatents, DMENet, DMENetConfig
from dmenet_geo.model.dmenet import ForwardResult
from dmenet_geo.model.layers import LKE, LSM, PEB, SDPM, SEB
from dmenet_geo.model.losses import RateDistortionLoss
from dmenet_geo.model.mdei import EEM, MDEI, _Axial, mdse_loss
from dmenet_geo.model.training import Optimisers, train_step

# ---------------------------------------------------------------------------------------- helpers


def single(latents: CompressedLatents, i: int) -> CompressedLatents:
    """Item ``i`` of a batch of latents as a batch of one."""
    return CompressedLatents(
        y_strings=[latents.y_strings[i]],
        z_strings=[latents.z_strings[i]],
        z_shape=latents.z_shape,
        image_shape=latents.image_shape,
        qualities=[latents.qualities[i]],
        digests=[latents.digests[i]],
    )


@torch.inference_mode()
def encoder_side_reconstruction(model: DMENet, x: torch.Tensor, quality: float | list[float]) -> torch.Tensor:
    """What the encoder reconstructs without any bitstream: eval-mode quantisation of y and z.

    Mirrors the decoder's synthesis: a float64 copy of g_s when the model has one, else g_s itself.
    """
    b, _, h, w = x.shape
    q = model._qualities(quality, b)
    padded = F.pad(x, (0, (-w) % STRIDE, 0, (-h) % STRIDE), mode="replicate")
    y = model.g_a(padded) * torch.exp(model._table64(model.log_gain, q)).float()
    z = model.h_a(y) * torch.exp(model._table64(model.log_hyper_gain, q)).float()
    eb = model.entropy_bottleneck
    z_hat = eb.quantize(z, "dequantize", eb._get_medians())
    _, means = model._indexes_and_means(z_hat, q)
    symbols = torch.round(y - means)
    inv = torch.exp(model._table64(model.log_inv_gain, q))
    if hasattr(model, "_synthesise64"):
        y_hat = (symbols.double() + means.double()) * inv
        x_hat = model._synthesise64(y_hat, y_hat.device)
    else:
        x_hat = model.g_s((symbols + means) * inv.float())
    return x_hat.clamp(0, 1)[..., :h, :w]


@pytest.fixture(scope="module")
def tiles(sample_tiles: torch.Tensor) -> torch.Tensor:
    return sample_tiles


_MODELS: dict[int, DMENet] = {}


@pytest.fixture(scope="module")
def model_for() -> Iterator[Callable[[int], DMENet]]:
    """``model_for(n)``: a cached :func:`loud_model` of width n."""

    def get(n: int) -> DMENet:
        if n not in _MODELS:
            _MODELS[n] = loud_model(n, seed=n)
        return _MODELS[n]

    yield get
    _MODELS.clear()


@pytest.fixture(scope="module")
def model16(model_for: Callable[[int], DMENet]) -> DMENet:
    return model_for(16)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def has(model: torch.nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


# ------------------------------------------------------------------------------------ shapes

SIZES = [(1, 1), (70, 45), (64, 64), (130, 200)]


@pytest.mark.parametrize("n", [16, 32, 64], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compress_decompress_shapes(model_for, tiles: torch.Tensor, n: int, size: tuple[int, int]) -> None:
    h, w = size
    model = model_for(n)
    x = crop(tiles[:2], h, w, top=7, left=11)
    latents = model.compress(x, 4)
    x_hat, digests = model.decompress(latents)
    assert x_hat.shape == (2, 3, h, w)
    assert x_hat.dtype in (torch.float32, torch.float64)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
    assert latents.image_shape == (h, w)
    assert latents.z_shape == (math.ceil(h / STRIDE), math.ceil(w / STRIDE))
    assert len(latents.y_strings) == len(latents.z_strings) == len(latents.digests) == 2
    assert all(isinstance(s, bytes) and s for s in latents.y_strings + latents.z_strings)
    assert digests == latents.digests


@pytest.mark.parametrize("n", [16, 32], ids=lambda n: f"N{n}")
def test_forward_shapes(model_for, tiles: torch.Tensor, n: int) -> None:
    model = model_for(n)
    x = crop(tiles[:2], 64, 128)
    with torch.no_grad():
        out = model.forward(x, [2.0, 7.5])
    assert out.x_hat.shape == x.shape
    assert out.likelihoods_y.shape == (2, n, 4, 8)  # y at stride 16
    assert out.likelihoods_z.shape == (2, n, 1, 2)  # z at stride 64
    assert model.training is False  # forward itself does not switch modes


def test_wrong_number_of_qualities(small_model: DMENet, tiles: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expected 2 qualities"):
        small_model.compress(crop(tiles[:2], 64, 64), [1.0, 2.0, 3.0])


def test_update_required(tiles: torch.Tensor) -> None:
    model = DMENet(DMENetConfig(n=16)).eval()
    with pytest.raises(RuntimeError, match="update"):
        model.compress(crop(tiles[:1], 64, 64), 1)


# ---------------------------------------------------------------------------- exact decoding

EXACT_CASES = [
    pytest.param((64, 64), [1.0], id="64x64-q1"),
    pytest.param((70, 45), [8.0, 2.5], id="70x45-q8,2.5"),
    pytest.param((130, 200), [1.0, 3.7, 5.0, 8.0], id="130x200-mixed"),
]


@pytest.mark.parametrize(("size", "qualities"), EXACT_CASES)
def test_decode_reproduces_encoder_reconstruction(
    model16: DMENet, tiles: torch.Tensor, size: tuple[int, int], qualities: list[float]
) -> None:
    x = crop(tiles[: len(qualities)], *size)
    latents = model16.compress(x, qualities)
    x_hat, digests = model16.decompress(latents)
    assert digests == latents.digests
    assert torch.equal(x_hat, encoder_side_reconstruction(model16, x, qualities))


def test_decode_twice_is_identical(model16: DMENet, tiles: torch.Tensor) -> None:
    latents = model16.compress(crop(tiles, 70, 130), [1.0, 2.5, 6.0, 8.0])
    first, d1 = model16.decompress(latents)
    second, d2 = model16.decompress(latents)
    assert d1 == d2 == latents.digests
    assert torch.equal(first, second)


def test_a_copy_of_a_model_that_has_coded_codes_the_same(model16: DMENet, tiles: torch.Tensor) -> None:
    """``copy.deepcopy`` after coding (the rANS coder and float64 copies are cached by then) gives
    a model of its own that writes the same bytes and decodes them to the same pixels."""
    x = crop(tiles, 64, 64)
    latents = model16.compress(x, 3.0)
    model16.decompress(latents)
    twin = copy.deepcopy(model16)
    again = twin.compress(x, 3.0)
    assert again.y_strings == latents.y_strings and again.z_strings == latents.z_strings
    assert torch.equal(twin.decompress(again)[0], model16.decompress(latents)[0])
    assert twin.g_s[0].conv.weight.data_ptr() != model16.g_s[0].conv.weight.data_ptr()  # its own tensors


@dataclass
class Decodings:
    """One batch of latents decoded as a batch, item by item, and as a batch on 2 threads."""

    latents: CompressedLatents
    batch: tuple[torch.Tensor, list[int]]
    items: list[tuple[torch.Tensor, list[int]]]
    two_threads: tuple[torch.Tensor, list[int]]


@pytest.fixture(scope="module")
def decodings(model16: DMENet, tiles: torch.Tensor) -> Decodings:
    latents = model16.compress(crop(tiles, 130, 100), [1.0, 2.5, 5.0, 8.0])
    batch = model16.decompress(latents)
    items = [model16.decompress(single(latents, i)) for i in range(len(latents.y_strings))]
    torch.set_num_threads(2)
    try:
        two_threads = model16.decompress(latents)
    finally:
        torch.set_num_threads(1)
    return Decodings(latents, batch, items, two_threads)


def test_decoded_symbols_exact_across_batch_and_threads(decodings: Decodings) -> None:
    """The integer symbols (hence y_hat) decode exactly per item, in a batch and on 2 threads."""
    digests = decodings.latents.digests
    assert decodings.batch[1] == digests == decodings.two_threads[1]
    for i, (_, d_i) in enumerate(decodings.items):
        assert d_i == [digests[i]]


def test_decoded_pixels_identical_across_batch_and_close_across_threads(decodings: Decodings) -> None:
    """x_hat is bit-identical whether decoded alone or in a batch of 4. On 2 threads it may differ in
    the last bits (seen on an Intel Xeon: about 2e-16, from MKL splitting the float64 3x3
    convolutions with few output channels differently), never by enough to change a uint8 value."""
    batch = decodings.batch[0]
    for i, (x_i, _) in enumerate(decodings.items):
        assert torch.equal(x_i[0], batch[i]), f"item {i}: max diff {(x_i[0] - batch[i]).abs().max():.3g}"
    assert float((decodings.two_threads[0] - batch).abs().max()) < 1e-12
    to_uint8 = [(x * 255).round().to(torch.uint8) for x in (batch, decodings.two_threads[0])]
    assert torch.equal(*to_uint8)


def test_digest_detects_a_different_stream(model16: DMENet, tiles: torch.Tensor) -> None:
    x = crop(tiles[:2], 64, 64)
    a = model16.compress(x[:1], 8)
    b = model16.compress(x[1:], 8)
    swapped = CompressedLatents(b.y_strings, a.z_strings, a.z_shape, a.image_shape, a.qualities, a.digests)
    _, digests = model16.decompress(swapped)
    assert digests != a.digests


# ---------------------------------------------------------------------------------- ablations

ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-sdpm": {"use_sdpm": False},
    "no-lsm": {"use_lsm": False},
    "no-mdei": {"use_mdei": False},
    "baseline": {"use_sdpm": False, "use_lsm": False, "use_mdei": False},
}


def build(**switches: Any) -> DMENet:
    torch.manual_seed(0)
    return DMENet(DMENetConfig(n=16, **switches))


@pytest.mark.parametrize("switches", ABLATIONS.values(), ids=ABLATIONS.keys())
def test_ablation_switches_remove_modules(switches: dict[str, Any]) -> None:
    config = DMENetConfig(n=16, **switches)
    model = build(**switches)
    assert has(model, SDPM) is config.use_sdpm
    assert has(model, SEB) is config.use_sdpm
    assert has(model, PEB) is config.use_sdpm
    assert has(model, LSM) is config.use_lsm
    assert has(model, LKE) is config.use_lsm
    criterion = RateDistortionLoss(config)
    assert (criterion.mdei is None) is (not config.use_mdei)
    assert has(criterion, MDEI) is config.use_mdei


def test_ablations_reduce_parameters() -> None:
    full = n_params(build())
    no_sdpm = n_params(build(use_sdpm=False))
    no_lsm = n_params(build(use_lsm=False))
    baseline = n_params(build(use_sdpm=False, use_lsm=False, use_mdei=False))
    assert no_sdpm < full and no_lsm < full
    assert baseline < no_sdpm and baseline < no_lsm
    assert n_params(build(use_mdei=False)) == full  # MDEI lives in the loss, not in the model


def test_rate_weights_change_the_loss_not_the_reported_rate(tiles: torch.Tensor) -> None:
    x = crop(tiles[:2], 64, 64)
    q = torch.tensor([2.0, 6.0])
    model = build(use_mdei=False)
    criterion = RateDistortionLoss(model.config)
    with torch.no_grad():
        result = model(x, q)
        full = criterion(result, x, q)
        n = model.config.n
        criterion.rate_weights = torch.ones(n)
        same = criterion(result, x, q)
        criterion.rate_weights = torch.cat([torch.ones(n // 2), torch.zeros(n - n // 2)])
        half = criterion(result, x, q)
    assert torch.allclose(same.loss, full.loss)
    assert torch.equal(half.bpp, full.bpp) and torch.equal(half.mse, full.mse)
    free_bpp = -torch.log2(result.likelihoods_y[:, n // 2 :]).sum() / (2 * 64 * 64)  # batch mean
    assert float(full.loss - half.loss) == pytest.approx(float(free_bpp), rel=2e-3)  # float32 loss


def test_quality_balance_weights_each_sample_by_its_lambda(tiles: torch.Tensor) -> None:
    x = crop(tiles[:2], 64, 64)
    q = torch.tensor([1.0, 8.0])
    model = build(use_mdei=False)
    config = model.config
    with torch.no_grad():
        result = model(x, q)
        alone = [RateDistortionLoss(config)(_one(result, i), x[i : i + 1], q[i : i + 1]) for i in (0, 1)]
        per_sample = [float(terms.loss) for terms in alone]
        plain = RateDistortionLoss(config)(result, x, q)
        balanced = RateDistortionLoss(config, balance=0.5)(result, x, q)
    mid = math.exp(np.mean(np.log(config.lambdas)))
    weights = [(config.lambda_for(float(v)) / mid) ** -0.5 for v in q]
    assert weights[0] > 1 > weights[1]  # the low quality gains weight, the high one loses it
    assert float(plain.loss) == pytest.approx(np.mean(per_sample), rel=1e-5)
    assert float(balanced.loss) == pytest.approx(np.dot(weights, per_sample) / 2, rel=1e-5)
    assert torch.equal(balanced.bpp, plain.bpp) and torch.equal(balanced.mse, plain.mse)
    with pytest.raises(ValueError, match="balance"):
        RateDistortionLoss(config, balance=-0.1)


def _one(result: ForwardResult, i: int) -> ForwardResult:
    """Sample ``i`` of a batched ForwardResult."""
    return dataclasses.replace(
        result, **{f.name: getattr(result, f.name)[i : i + 1] for f in dataclasses.fields(result)}
    )


def test_mdse_term_is_zero_without_mdei(tiles: torch.Tensor) -> None:
    x = crop(tiles[:2], 64, 64)
    q = torch.tensor([2.0, 6.0])
    for use_mdei in (True, False):
        model = build(use_mdei=use_mdei)
        with torch.no_grad():
            terms = RateDistortionLoss(model.config)(model(x, q), x, q)
        assert (float(terms.mdse) > 0) is use_mdei
        assert math.isfinite(float(terms.loss))


@pytest.mark.parametrize("switches", list(ABLATIONS.values())[1:], ids=list(ABLATIONS.keys())[1:])
def test_ablated_models_round_trip(switches: dict[str, Any], tiles: torch.Tensor) -> None:
    model = build(**switches)
    model.update(force=True)
    model.eval()
    x = crop(tiles[:1], 70, 45)
    latents = model.compress(x, 3)
    x_hat, digests = model.decompress(latents)
    assert x_hat.shape == x.shape and digests == latents.digests


# ----------------------------------------------------------------------------------- training


def test_loss_falls_on_real_tiles(tiles: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = DMENet(DMENetConfig(n=16))
    criterion = RateDistortionLoss(model.config)
    opt = Optimisers.build(model, lr=1e-3, aux_lr=1e-3)
    x = crop(tiles, 64, 64, top=96, left=96)  # a fixed batch of 4 real crops
    q = torch.tensor([1.0, 3.5, 6.0, 8.0])
    losses = []
    for _ in range(15):
        terms = train_step(model, criterion, opt, x, q)
        assert math.isfinite(float(terms.loss))
        losses.append(float(terms.loss))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.97 * first, losses
    assert model.training  # train_step leaves the model in training mode


# --------------------------------------------------------------------------------------- MDEI


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (64, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("value", [0.0, 0.3, 1.0], ids=lambda v: f"v{v}")
def test_eem_of_constant_image_is_zero_inside(size: tuple[int, int], value: float) -> None:
    x = torch.full((2, 3, *size), value)
    out = EEM(learnable=False)(x)
    assert out.shape == x.shape
    assert float(out[..., 2:-2, 2:-2].abs().max()) < 1e-6


def test_eem_of_constant_image_is_zero_at_the_border() -> None:
    x = torch.full((1, 3, 16, 16), 0.5)
    assert float(EEM(learnable=False)(x).abs().max()) < 1e-6


def test_eem_responds_to_an_edge() -> None:
    x = torch.zeros(1, 1, 16, 16)
    x[..., 8:] = 1.0
    out = EEM(learnable=False)(x)
    assert float(out[..., 4:12, 6:10].abs().max()) > 0.1
    assert float(out[..., 4:12, 2:4].abs().max()) < 1e-6  # flat region away from edge and border


@pytest.mark.parametrize("axis", [-1, -2], ids=["HA", "VA"])
@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 17, 40), (1, 1, 9, 5)], ids=str)
def test_axial_attention_keeps_shape(axis: int, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    out = _Axial(axis, 0.5, 0.5, learnable=False)(x)
    assert out.shape == x.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # a sigmoid gate


def test_axial_profiles_point_the_right_way() -> None:
    x = torch.rand(1, 3, 12, 20)
    ha = _Axial(-1, 0.5, 0.5, learnable=False)(x)  # varies along W only
    va = _Axial(-2, 0.5, 0.5, learnable=False)(x)  # varies along H only
    assert torch.equal(ha, ha[:, :1, :1, :].expand_as(ha))
    assert torch.equal(va, va[:, :1, :, :1].expand_as(va))


@pytest.mark.parametrize("learnable", [False, True], ids=["buffers", "learnable"])
def test_mdei_shape_and_parameters(learnable: bool) -> None:
    mdei = MDEI(learnable=learnable)
    x = torch.rand(2, 3, 33, 20)
    assert mdei(x).shape == x.shape
    assert (len(list(mdei.parameters())) > 0) is learnable


def test_mdse_loss_of_identical_images_is_zero() -> None:
    mdei = MDEI()
    x = torch.rand(2, 3, 32, 48)
    assert float(mdse_loss(mdei, x, x)) == 0.0
    assert float(mdse_loss(mdei, x, (x + 0.1 * torch.rand_like(x)).clamp(0, 1))) > 0.0
