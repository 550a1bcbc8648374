"""Checkerboard context: exact two-pass coding, the causal split, and a fresh context changing nothing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dmenet_geo.model import CompressedLatents, DMENet, DMENetConfig
from dmenet_geo.model.config import ConfigError
from dmenet_geo.model.context import CheckerboardContext, CodingStages, anchor_mask


def _with_context(base: DMENet, perturb: bool, groups: int = 1) -> DMENet:
    """``base``'s weights in a checkerboard model; ``perturb`` gives the context's last layer non-zero
    weights (a fresh one is exactly zero)."""
    model = DMENet(dataclasses.replace(base.config, context="checkerboard", context_groups=groups))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("context.") for k in missing)
    if perturb:
        torch.manual_seed(1)
        assert model.context is not None
        with torch.no_grad():
            for p in model.context.fuse[-1].parameters():
                p.normal_(0, 0.05)
    model.invalidate_exact_cache()
    return model.eval()


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    torch.manual_seed(3)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(3, 3, 160, 192), 9, stride=1, padding=4)
    return smooth.clamp(0, 1)


def _item(lat: CompressedLatents, i: int) -> CompressedLatents:
    return CompressedLatents(lat.y_strings[i : i + 1], lat.z_strings[i : i + 1], lat.z_shape,
                             lat.image_shape, lat.qualities[i : i + 1], lat.digests[i : i + 1])


def test_anchor_mask_is_a_checkerboard() -> None:
    mask = anchor_mask(3, 4)
    t, f = True, False
    assert mask.tolist() == [[t, f, t, f], [f, t, f, t], [t, f, t, f]]


@pytest.mark.parametrize(
    ("quality", "groups"), [(1.0, 1), (4.5, 1), (8.0, 1), (2.0, 4), (7.5, 2)],
    ids=["q1", "q4.5", "q8", "q2-4groups", "q7.5-2groups"],
)
def test_context_round_trip_is_exact_and_batch_independent(
    small_model: DMENet, tiles: torch.Tensor, quality: float, groups: int
) -> None:
    model = _with_context(small_model, perturb=True, groups=groups)
    lat = model.compress(tiles, quality)
    x_hat, digests = model.decompress(lat)
    assert digests == lat.digests
    assert x_hat.shape == tiles.shape
    for i in range(tiles.shape[0]):
        alone = model.compress(tiles[i : i + 1], quality)
        assert alone.y_strings == lat.y_strings[i : i + 1]  # same bytes alone as in a batch
        x_i, d_i = model.decompress(_item(lat, i))
        assert d_i == digests[i : i + 1] and torch.equal(x_i[0], x_hat[i])


@pytest.mark.parametrize("groups", [1, 4], ids=["checkerboard", "4groups"])
def test_fresh_context_codes_the_same_symbols(small_model: DMENet, tiles: torch.Tensor, groups: int) -> None:
    """A zero-initialised context is the hyperprior: same symbols (digests) and same pictures; only
    the order of the symbols in the stream differs."""
    model = _with_context(small_model, perturb=False, groups=groups)
    plain, ctx = small_model.compress(tiles, 3.0), model.compress(tiles, 3.0)
    assert ctx.digests == plain.digests
    assert torch.equal(model.decompress(ctx)[0], small_model.decompress(plain)[0])
    sizes = [len(s) for s in ctx.y_strings], [len(s) for s in plain.y_strings]
    assert all(abs(a - b) <= 8 for a, b in zip(*sizes, strict=True)), sizes


def test_wrong_context_does_not_decode_silently(small_model: DMENet, tiles: torch.Tensor) -> None:
    """Chunks coded with a context and decoded without one (or the reverse) give other symbols,
    which the digests expose."""
    model = _with_context(small_model, perturb=True)
    lat = model.compress(tiles, 6.0)
    _, digests = small_model.decompress(lat)
    assert digests != lat.digests


def _live_context(groups: int) -> CheckerboardContext:
    """A context of 8 channels whose residual is not zero (a fresh one changes nothing), seeded."""
    torch.manual_seed(0)
    ctx = CheckerboardContext(8, groups)
    with torch.no_grad():
        for p in ctx.fuse[-1].parameters():
            p.normal_(0, 0.1)
    return ctx


@pytest.mark.parametrize("groups", [1, 2], ids=["checkerboard", "2groups"])
def test_each_stage_sees_only_earlier_stages(groups: int) -> None:
    """Changing the latent in one stage moves the parameters of later stages only, never its own or
    earlier ones (the first stage's come from the hyperprior alone)."""
    ctx = _live_context(groups)
    params, y = torch.randn(1, 16, 6, 6), torch.randn(1, 8, 6, 6) * 3
    masks = ctx.stages(6, 6)
    assert len(masks) == 2 * groups
    assert torch.equal(torch.stack(masks).sum(0), torch.ones(8, 6, 6, dtype=torch.long))  # a partition
    with torch.no_grad():
        out = ctx.staged(params, y)
        for k, mask in enumerate(masks):
            moved = ctx.staged(params, torch.where(mask, y + 5.0, y))
            for j, other in enumerate(masks):
                same = torch.equal(moved[:, other.repeat(2, 1, 1)], out[:, other.repeat(2, 1, 1)])
                assert same == (j <= k), (k, j)


@pytest.mark.parametrize("groups", [1, 2, 4], ids=["checkerboard", "2groups", "4groups"])
def test_running_convolution_matches_the_full_context(groups: int) -> None:
    """The coder's and the training pass's running convolution give each stage the parameters of the
    full context over everything decoded so far: the same bits with one group (as shipped chunks
    were coded), the same values to rounding with channel groups. The coder's per-stage entries
    (:meth:`CodingStages.stage_parameters`) are those of the full tensor, in coding order."""
    ctx = _live_context(groups).double()
    torch.manual_seed(2)
    params = torch.randn(2, 16, 7, 5, dtype=torch.float64)
    y = torch.randn(2, 8, 7, 5, dtype=torch.float64) * 3
    stages, coder = CodingStages(ctx, params), CodingStages(ctx, params)
    known_values, known = torch.zeros_like(y), torch.zeros(8, 7, 5, dtype=torch.bool)
    reference = torch.zeros_like(params)
    for mask in stages.masks:
        full = ctx(params, known_values, known).detach()
        running = stages.parameters()
        entries = coder.stage_parameters()
        in_order = torch.stack([torch.cat([f[:8][mask], f[8:][mask]]) for f in full])
        if groups == 1:
            assert torch.equal(running, full) and torch.equal(entries.flatten(1), in_order)
        else:
            torch.testing.assert_close(running, full, rtol=0, atol=1e-12)
            torch.testing.assert_close(entries.flatten(1), in_order, rtol=0, atol=1e-12)
        reference = torch.where(mask.repeat(2, 1, 1), full, reference)
        decoded = torch.round(y - full[:, 8:]) + full[:, 8:]
        stages.record_stage(stages.gather(decoded))
        stage_values = torch.stack([d[mask] for d in decoded])
        coder.record_stage(stage_values.reshape(entries.shape[0], entries.shape[1] // 2, -1))
        known_values, known = torch.where(mask, decoded, known_values), known | mask
    with torch.no_grad():
        torch.testing.assert_close(ctx.staged(params, y), reference, rtol=0, atol=1e-12)


def test_frozen_context_keeps_the_known_terms_until_new_weights() -> None:
    """A frozen grouped context (as the coder's float64 copy is) computes each stage's 0/1-map
    convolution once per size; loading other weights drops them, and a trainable one keeps none.

    Only the spatial convolution is frozen here: the cache follows its weight, and the exact
    comparison stays exact. (Freezing the 1x1 layers too changes the last bits on some machines:
    ``torch.matmul`` of a 2-D by a 3-D tensor takes another path when one requires grad.)"""
    ctx = _live_context(2).double()
    params = torch.randn(1, 16, 6, 6, dtype=torch.float64)
    y = torch.randn(1, 8, 6, 6, dtype=torch.float64) * 3

    def coded() -> torch.Tensor:
        with torch.no_grad():
            return ctx.staged(params, y)

    trained = coded()
    assert not ctx._known_terms[1]  # trainable: nothing kept
    for p in ctx.spatial.parameters():
        p.requires_grad_(False)
    assert torch.equal(coded(), trained) and len(ctx._known_terms[1]) == 3  # stages 0-2 feed a later one
    other = _live_context(2).double()
    with torch.no_grad():
        other.spatial.weight.mul_(2.0)
    ctx.load_state_dict(other.state_dict())
    assert not ctx._known_terms[1]
    moved = coded()
    assert not torch.equal(moved, trained)
    for p in ctx.spatial.parameters():
        p.requires_grad_(True)
    torch.testing.assert_close(coded(), moved, rtol=0, atol=0)


def _staged_full(ctx: CheckerboardContext, params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The staged parameters from the full tensors at every stage (each stage keeping its own
    positions), rounded straight through: the form ``staged`` computes at the entries only."""
    out = torch.zeros_like(params)
    stages = CodingStages(ctx, params)
    for mask in stages.masks:
        full = stages.parameters()
        out = torch.where(mask.repeat(2, 1, 1), full, out)
        means = full[:, ctx.n :]
        stages.record_stage(stages.gather(y + (torch.round(y - means) + means - y).detach()))
    return out


@pytest.mark.parametrize("groups", [1, 2, 4], ids=["checkerboard", "2groups", "4groups"])
def test_staged_entries_match_the_full_form_with_gradients(groups: int) -> None:
    """Training and refinement differentiate ``staged``: its values and its gradients, for the
    context's weights, the raw parameters and the latent (straight through), are those of the
    full-tensor form it replaced, to float64 rounding."""
    ctx = _live_context(groups).double()
    torch.manual_seed(4)
    params = torch.randn(2, 16, 7, 5, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(2, 8, 7, 5, dtype=torch.float64) * 3).requires_grad_(True)
    weights = torch.randn(2, 16, 7, 5, dtype=torch.float64)
    inputs = [params, y, *ctx.parameters()]
    grads = []
    for form in (lambda: ctx.staged(params, y, straight_through=True), lambda: _staged_full(ctx, params, y)):
        out = form()
        grads.append((out.detach(), torch.autograd.grad((out * weights).sum(), inputs)))
    (entries, entry_grads), (full, full_grads) = grads
    torch.testing.assert_close(entries, full, rtol=0, atol=1e-12)
    for a, b in zip(entry_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert float(entry_grads[1].abs().sum()) > 0 and float(entry_grads[-1].abs().sum()) > 0


@pytest.mark.parametrize("straight_through", [False, True], ids=["detached", "straight-through"])
def test_anchor_gradient_through_the_context_only_when_asked(straight_through: bool) -> None:
    """The later stages' parameters pass a gradient back to the anchors' latent values only with
    ``straight_through`` (encoder refinement); the values themselves are the same either way."""
    ctx = _live_context(1)
    params = torch.randn(1, 16, 6, 6)
    y = (torch.randn(1, 8, 6, 6) * 3).requires_grad_(True)
    out = ctx.staged(params, y, straight_through=straight_through)
    assert torch.allclose(out.detach(), ctx.staged(params, y.detach()), atol=1e-5)
    anchors = anchor_mask(6, 6)
    (grad,) = torch.autograd.grad(out[:, :, ~anchors].sum(), [y], allow_unused=True)
    grad = torch.zeros_like(y) if grad is None else grad
    assert bool(grad[..., anchors].abs().sum() > 0) == straight_through
    assert float(grad[..., ~anchors].abs().sum()) == 0.0  # a stage never sees its own values


def test_context_config_round_trips_and_is_validated() -> None:
    cfg = DMENetConfig(n=16, context="checkerboard")
    assert DMENetConfig.from_json(cfg.to_json()) == cfg
    assert "context" not in DMENetConfig(n=16).to_dict()  # written as before without a context
    with pytest.raises(ConfigError, match="context"):
        DMENetConfig(n=16, context="autoregressive")
    grouped = DMENetConfig(n=16, context="checkerboard", context_groups=4)
    assert DMENetConfig.from_dict(grouped.to_dict()) == grouped
    for bad in (3, 0, True):
        with pytest.raises(ConfigError, match="context_groups"):
            DMENetConfig(n=16, context="checkerboard", context_groups=bad)
    with pytest.raises(ConfigError, match="context_groups"):
        DMENetConfig(n=16, context_groups=2)
    assert DMENet(DMENetConfig(n=16)).context is None


def test_refined_latents_code_exactly_with_a_context(small_model: DMENet, tiles: torch.Tensor) -> None:
    model = _with_context(small_model, perturb=True)
    lat = model.compress(tiles[:1], 5.0, refine_steps=3)
    _, digests = model.decompress(lat)
    assert digests == lat.digests
    assert model.compress(tiles[:1], 5.0, refine_steps=3).y_strings == lat.y_strings  # seeded


def test_shipped_n64_default_is_its_base_weights_plus_a_context() -> None:
    """The context of the N = 64 default of sessions 15 to 21 (``default-ecbb8582``) was trained on
    frozen weights that the package still ships: every tensor they share is bit-identical, so chunks
    of the earlier weights decode the same either way."""
    from dmenet_geo.model.zoo import available_models, load_model, model_info

    info = model_info("default-ecbb8582")
    assert info.config.context == "checkerboard"
    base_sha = info.provenance["context_base_sha256"]
    earlier = [m for m in available_models() if model_info(m).sha256 == base_sha]
    assert earlier, f"no shipped model has the base weights {base_sha[:16]}..."
    base = load_model(earlier[0]).state_dict()
    default = load_model("default-ecbb8582").state_dict()
    assert set(default) - set(base) == {k for k in default if k.startswith("context.")}
    assert all(torch.equal(default[k], v) for k, v in base.items())


def test_shipped_group_context_codes_the_sample_tiles_in_fewer_bytes(sample_tiles: torch.Tensor) -> None:
    """The 4-group context of ``default-ecbb8582`` keeps the transforms of the default before it (a
    one-group checkerboard, still shipped as ``default-e291bc13``), round-trips exactly and codes the
    sample tiles in fewer bytes at the same quality and PSNR."""
    from dmenet_geo.model.zoo import load_model

    grouped, previous = load_model("default-ecbb8582"), load_model("default-e291bc13")
    assert grouped.config.context_groups == 4 and previous.config.context_groups == 1
    shared = {k: v for k, v in previous.state_dict().items() if not k.startswith("context.")}
    assert all(torch.equal(grouped.state_dict()[k], v) for k, v in shared.items())
    sizes, pixels = {}, {}
    for name, model in (("grouped", grouped), ("previous", previous)):
        lat = model.compress(sample_tiles, 4.0)
        x_hat, digests = model.decompress(lat)
        assert digests == lat.digests
        sizes[name] = sum(len(s) for s in lat.y_strings)
        pixels[name] = (x_hat.float().clamp(0, 1) * 255).round()
    assert sizes["grouped"] < sizes["previous"], sizes
    mse = {k: float((v - sample_tiles * 255).pow(2).mean()) for k, v in pixels.items()}
    assert abs(mse["grouped"] - mse["previous"]) / mse["previous"] < 0.02, mse
