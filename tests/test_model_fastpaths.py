"""Speed paths that must not change results: SEB's gathered deformable convolution (CPU, float32 and
float64) against torchvision's, LSM's float64 depthwise convolutions and the float64 tap convolutions
(PEB, SEB's offsets) against PyTorch's, and the cached CDF tables of the y entropy coder against
compressai's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from dmenet_geo.model import DMENet, DMENetConfig
from dmenet_geo.model.layers import PEB, SEB, DepthwiseConv2d, deform_conv2d_gathered
from dmenet_geo.model.tapconv import tap_convolutions

SHAPES = [(4, 32, 64, 64), (2, 16, 1, 7), (2, 16, 5, 1), (1, 8, 1, 1), (3, 16, 16, 24)]


def _inputs(
    shape: tuple[int, int, int, int], scale: float, dtype: torch.dtype = torch.float32, seed: int = 0
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    x = torch.randn(shape, generator=g, dtype=dtype)
    offset = torch.randn((b, 18, h, w), generator=g, dtype=dtype) * scale
    weight = torch.randn((c, c, 3, 3), generator=g, dtype=dtype) * 0.1
    bias = torch.randn((c,), generator=g, dtype=dtype)
    return [x, offset, weight, bias]


#: largest difference to torchvision, relative to the output's largest value, per dtype
TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-13}


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("scale", [0.0, 0.4, 3.0, 30.0])  # 30: most taps sample outside (zeros)
def test_gathered_deform_conv_matches_torchvision(
    shape: tuple[int, int, int, int], scale: float, dtype: torch.dtype
) -> None:
    x, offset, weight, bias = _inputs(shape, scale, dtype)
    ref = deform_conv2d(x, offset, weight, bias, padding=(1, 1))
    got = deform_conv2d_gathered(x, offset, weight, bias)
    assert got.shape == ref.shape and got.dtype == ref.dtype and got.is_contiguous()
    assert float((got - ref).abs().max()) <= TOLERANCE[dtype] * max(1.0, float(ref.abs().max()))


def test_gathered_deform_conv_is_the_same_alone_in_a_batch_and_on_two_threads() -> None:
    """float64 (the exact decoder): an image's output does not depend on its batch or the threads."""
    x, offset, weight, bias = _inputs((4, 32, 40, 48), 1.5, torch.float64, seed=5)
    batch = deform_conv2d_gathered(x, offset, weight, bias)
    alone = [deform_conv2d_gathered(x[i : i + 1], offset[i : i + 1], weight, bias) for i in range(4)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = deform_conv2d_gathered(x, offset, weight, bias)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(two, batch)
    for i, one in enumerate(alone):
        assert torch.equal(one[0], batch[i]), i


def test_gathered_deform_conv_gradients_match_torchvision() -> None:
    grads = []
    for fn in (lambda *a: deform_conv2d(*a, padding=(1, 1)), deform_conv2d_gathered):
        inputs = [t.clone().requires_grad_() for t in _inputs((2, 16, 12, 10), 0.7, seed=3)]
        fn(*inputs).square().sum().backward()
        grads.append([t.grad for t in inputs])
    for name, a, b in zip(("x", "offset", "weight", "bias"), *grads, strict=True):
        # the offset gradient jumps where a sample crosses a pixel row or column: compare medians there
        err = (a - b).abs()
        bound = 1e-3 * float(a.abs().max())
        assert float(err.median() if name == "offset" else err.max()) <= bound, name


def _seb(dtype: torch.dtype) -> SEB:
    torch.manual_seed(1)
    seb = SEB(16).to(dtype).eval()
    with torch.no_grad():
        seb.offset.weight.normal_(0, 0.05)  # real (non-zero) offsets
    return seb


def test_seb_uses_the_gathered_path_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for dtype, tol in TOLERANCE.items():
        seb = _seb(dtype)
        x = torch.randn(2, 16, 20, 20, generator=torch.Generator().manual_seed(2), dtype=dtype)
        with torch.no_grad():
            offset = seb.offset(x)
            if dtype == torch.float64:  # the exact decoder computes the offsets as tap convolutions
                taps = tap_convolutions(x, [seb.offset])[0]
                assert float((taps - offset).abs().max()) <= tol * max(1.0, float(offset.abs().max()))
                offset = taps
            assert float(offset.abs().max()) > 0.1  # the samples really move
            ref = deform_conv2d(x, offset, seb.weight, seb.bias, padding=(1, 1))
            assert torch.equal(seb(x), deform_conv2d_gathered(x, offset, seb.weight, seb.bias))
            assert float((seb(x) - ref).abs().max()) <= tol * max(1.0, float(ref.abs().max()))
            monkeypatch.setattr(SEB, "gathered_on_cpu", False)
            assert torch.equal(seb(x), ref)  # switched off: torchvision exactly
            monkeypatch.setattr(SEB, "gathered_on_cpu", True)


@pytest.mark.parametrize("kernel", [(5, 5), (21, 1), (1, 21), (7, 1), (3, 3)], ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("shape", [(2, 8, 16, 16), (1, 8, 3, 30), (3, 8, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_depthwise_float64_matches_pytorch(kernel: tuple[int, int], shape: tuple[int, ...]) -> None:
    torch.manual_seed(7)
    conv = DepthwiseConv2d(shape[1], kernel)
    with torch.no_grad():
        conv.bias.normal_()  # type: ignore[union-attr]
    x = torch.randn(shape)
    ref32 = F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, groups=shape[1])
    assert torch.equal(conv(x), ref32)  # float32: PyTorch's own convolution
    conv64, x64 = conv.double(), x.double()
    ref64 = F.conv2d(x64, conv64.weight, conv64.bias, padding=conv64.padding, groups=shape[1])
    got = conv64(x64)
    assert got.shape == ref64.shape and got.dtype == torch.float64
    assert float((got - ref64).abs().max()) <= 1e-13 * max(1.0, float(ref64.abs().max()))
    assert not torch.equal(got, torch.zeros_like(got))


def test_depthwise_needs_an_odd_kernel() -> None:
    with pytest.raises(ValueError, match="odd kernel"):
        DepthwiseConv2d(4, (4, 1))


@pytest.mark.parametrize(
    ("kernel", "dilation", "shape"),
    [
        (3, 1, (2, 8, 16, 12)),
        (3, 2, (1, 8, 9, 11)),
        (3, 3, (1, 8, 64, 64)),
        (3, 3, (2, 4, 2, 5)),  # smaller than the dilated kernel: most taps fall outside
        (1, 1, (3, 8, 7, 7)),
        (5, 1, (1, 6, 16, 16)),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_tap_convolutions_match_pytorch(kernel: int, dilation: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(11)
    convs = [
        torch.nn.Conv2d(shape[1], out, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=bias)
        for out, bias in ((5, True), (3, False))
    ]
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        got = tap_convolutions(x, [conv.double() for conv in convs])
        for conv, out in zip(convs, got, strict=True):
            ref = conv(x)
            assert out.shape == ref.shape and out.dtype == torch.float64
            assert float((out - ref).abs().max()) <= 1e-13 * max(1.0, float(ref.abs().max()))


def test_tap_convolutions_refuse_what_they_do_not_compute() -> None:
    x = torch.zeros(1, 4, 8, 8, dtype=torch.float64)
    for conv in (
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
        torch.nn.Conv2d(4, 4, 3, padding=0),
        torch.nn.Conv2d(4, 4, 2, padding=1),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=2),
        torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    ):
        with pytest.raises(ValueError, match="tap convolutions need"):
            tap_convolutions(x, [conv.double()])


def test_peb_float64_matches_its_float32_layers() -> None:
    """PEB's float64 CPU path (tap convolutions) computes what its convolutions do."""
    torch.manual_seed(3)
    peb = PEB(16).eval()
    x = torch.randn(2, 16, 23, 17)
    with torch.no_grad():
        peb64 = PEB(16).double().eval()
        peb64.load_state_dict(peb.state_dict())
        convs = [peb64.branch_a, peb64.branch_b, peb64.branch_c, peb64.branch_d]
        x64 = x.double()
        ref = peb64.fuse(torch.cat([conv(x64) for conv in convs], dim=1) + x64)
        got = peb64(x64)
    assert float((got - ref).abs().max()) <= 1e-13 * max(1.0, float(ref.abs().max()))
    assert float((peb(x).double() - got).abs().max()) <= 1e-4  # the float32 path: the same layer


@pytest.mark.parametrize("rows", [None, (3, 17, 40, 41)], ids=["all-rows", "few-rows"])
def test_cached_cdf_tables_code_exactly_like_compressai(rows: tuple[int, ...] | None) -> None:
    """The coder passes CompressAI only the table rows a call uses, renumbered: the same strings as
    CompressAI's own coder with the whole table, also when a string is read in parts."""
    torch.manual_seed(0)
    model = DMENet(DMENetConfig(n=16))
    model.update(force=True)
    model.eval()
    gc = model.gaussian_conditional
    symbols = torch.round(torch.randn(3, 16, 5, 7) * 4)
    indexes = torch.randint(0, int(gc._quantized_cdf.shape[0]), symbols.shape, dtype=torch.int32)
    if rows is not None:
        indexes = torch.tensor(rows, dtype=torch.int32)[indexes % len(rows)]
    coder = model._coder()
    strings = [coder.encode(symbols[i], indexes[i]) for i in range(3)]
    assert strings == gc.compress(symbols, indexes)
    decoded = coder.decode(strings, indexes)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, symbols)
    assert torch.equal(decoded, gc.decompress(strings, indexes))
    read = coder.decoder(strings[0])
    parts = [read(indexes[0, :5]), read(indexes[0, 5:6]), read(indexes[0, 6:])]
    assert torch.equal(torch.cat(parts).float(), symbols[0])
    model.update(force=True)  # rebuilding the tables drops the cache
    assert model._symbol_coder is None and model._coder().tables == coder.tables
    with pytest.raises(ValueError):
        coder.decode(strings[:2], indexes)
    with pytest.raises(ValueError):
        coder.encode(symbols[0], indexes[0, :1])
