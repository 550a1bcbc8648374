"""Metrics against hand-computed values: PSNR, per-band-peak PSNR (eq. 16), MS-SSIM (eq. 18), bpp."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from dmenet_geo.model import metrics
from dmenet_geo.model.metrics import bpp, ms_ssim, ms_ssim_db, mse, psnr, psnr_band_peak

# --------------------------------------------------------------------------------------- PSNR

PSNR_CASES = {
    # name: (value of original, constant error, data_range, expected dB)
    "255-err5": (100.0, 5.0, 255.0, 20 * math.log10(255 / 5)),  # 34.151 dB
    "255-err1": (100.0, 1.0, 255.0, 20 * math.log10(255)),  # 48.131 dB
    "1.0-err0.1": (0.5, 0.1, 1.0, 20.0),
    "1.0-err0.01": (0.5, -0.01, 1.0, 40.0),
    "65535-err655.35": (1000.0, 655.35, 65535.0, 40.0),
}


@pytest.mark.parametrize(
    ("value", "err", "data_range", "expected"), PSNR_CASES.values(), ids=PSNR_CASES.keys()
)
def test_psnr_of_known_mse(value: float, err: float, data_range: float, expected: float) -> None:
    a = np.full((3, 8, 8), value)
    b = a + err
    assert mse(a, b) == pytest.approx(err**2)
    assert psnr(a, b, data_range=data_range) == pytest.approx(expected, abs=1e-9)


def test_psnr_of_mixed_errors() -> None:
    a = np.zeros((1, 2, 2))
    b = np.array([[[0.0, 2.0], [4.0, 6.0]]])  # MSE = (0 + 4 + 16 + 36) / 4 = 14
    assert mse(a, b) == pytest.approx(14.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 14))


@pytest.mark.parametrize(
    "kind", ["numpy-uint8", "torch-uint8", "torch-float"], ids=["numpy-uint8", "torch-uint8", "torch-float"]
)
def test_psnr_input_types_do_not_wrap_or_truncate(kind: str) -> None:
    a: Any = np.full((3, 4, 4), 10, dtype=np.uint8)
    b: Any = np.full((3, 4, 4), 200, dtype=np.uint8)  # |a - b| = 190: uint8 arithmetic would wrap
    if kind == "torch-uint8":
        a, b = torch.from_numpy(a), torch.from_numpy(b)
    elif kind == "torch-float":
        a, b = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    assert mse(a, b) == pytest.approx(190.0**2)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 190))


def test_psnr_of_identical_images_is_inf() -> None:
    a = np.random.default_rng(0).random((3, 8, 8))
    assert psnr(a, a.copy()) == math.inf
    assert psnr_band_peak(a, a.copy()) == math.inf


@pytest.mark.parametrize("func", [mse, psnr, psnr_band_peak], ids=["mse", "psnr", "psnr_band_peak"])
def test_shape_mismatch_raises(func) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="shape"):
        func(np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))


# ------------------------------------------------------------------- per-band peak PSNR (eq. 16)


def _bands(peaks: list[float], errors: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(C, 4, 4) bands whose maximum is peaks[i], reconstructed with a constant error errors[i]."""
    a = np.stack([np.linspace(0, p, 16).reshape(4, 4) for p in peaks])
    b = a + np.asarray(errors)[:, None, None]
    return a, b


BAND_CASES = {
    "rgb-200-100-50": ([200.0, 100.0, 50.0], [2.0, 1.0, 5.0]),
    "rgbn-uint16-range": ([4000.0, 3000.0, 2000.0, 10000.0], [10.0, 30.0, 20.0, 100.0]),
    "one-band": ([255.0], [3.0]),
}


@pytest.mark.parametrize(("peaks", "errors"), BAND_CASES.values(), ids=BAND_CASES.keys())
def test_psnr_band_peak_eq16(peaks: list[float], errors: list[float]) -> None:
    a, b = _bands(peaks, errors)
    expected = float(np.mean([10 * math.log10(p**2 / e**2) for p, e in zip(peaks, errors, strict=True)]))
    assert psnr_band_peak(a, b) == pytest.approx(expected, abs=1e-9)
    # a batch dimension pools each band over the batch
    assert psnr_band_peak(np.stack([a, a]), np.stack([b, b])) == pytest.approx(expected, abs=1e-9)
    assert psnr_band_peak(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, abs=1e-9)


def test_psnr_band_peak_hand_value() -> None:
    # band 0: max 200, MSE 4 -> 10 log10(40000 / 4) = 40 dB; band 1: max 100, MSE 1 -> 40 dB;
    # band 2: max 50, MSE 25 -> 10 log10(2500 / 25) = 20 dB. Mean: 33.333 dB.
    a, b = _bands([200.0, 100.0, 50.0], [2.0, 1.0, 5.0])
    assert psnr_band_peak(a, b) == pytest.approx(100 / 3)
    # the usual PSNR with peak 255 over all bands is different: MSE = (4 + 1 + 25) / 3 = 10
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 10))


def test_psnr_band_peak_uses_the_original_band_maximum() -> None:
    a, b = _bands([100.0], [1.0])
    assert psnr_band_peak(a, b) == pytest.approx(40.0)
    assert psnr_band_peak(b, a) == pytest.approx(10 * math.log10(101.0**2))  # peak of the 1st argument


# -------------------------------------------------------------------------------------- MS-SSIM


def _noisy(sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:176, 0:176]
    base = 127 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    a = np.stack([base, base * 0.8, 255 - base])
    b = np.clip(a + rng.normal(0, sigma, a.shape), 0, 255) if sigma else a.copy()
    return a, b


@pytest.mark.parametrize("batched", [False, True], ids=["CHW", "BCHW"])
def test_ms_ssim_of_identical_images(batched: bool) -> None:
    a, b = _noisy(0.0)
    if batched:
        a, b = a[None], b[None]
    assert ms_ssim(a, b) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim_db(a, b) == math.inf


def test_ms_ssim_falls_with_noise() -> None:
    values = [ms_ssim(*_noisy(sigma)) for sigma in (2.0, 8.0, 32.0)]
    assert 1.0 > values[0] > values[1] > values[2] > 0.0


def test_ms_ssim_data_range() -> None:
    a, b = _noisy(8.0)
    assert ms_ssim(a / 255, b / 255, data_range=1.0) == pytest.approx(ms_ssim(a, b), abs=1e-5)


@pytest.mark.parametrize(
    ("value", "expected_db"),
    [
        (0.9, 10.0),
        (0.99, 20.0),
        (0.999, 30.0),
        (0.5, 10 * math.log10(2)),
        (1.0, math.inf),
        (1.0 + 1e-7, math.inf),
    ],
    ids=["0.9", "0.99", "0.999", "0.5", "1", "above-1"],
)
def test_ms_ssim_db_formula(monkeypatch: pytest.MonkeyPatch, value: float, expected_db: float) -> None:
    monkeypatch.setattr(metrics, "ms_ssim", lambda *args, **kwargs: value)
    assert ms_ssim_db(np.zeros(1), np.zeros(1)) == pytest.approx(expected_db)


def test_ms_ssim_db_matches_ms_ssim() -> None:
    a, b = _noisy(8.0)
    assert ms_ssim_db(a, b) == pytest.approx(-10 * math.log10(1 - ms_ssim(a, b)))


# ------------------------------------------------------------------------------------------ bpp

BPP_CASES = {
    "1kB-100x80": (1000, 100, 80, 1.0),
    "zero-bytes": (0, 256, 256, 0.0),
    "one-byte-one-pixel": (1, 1, 1, 8.0),
    "tile-256": (8192, 256, 256, 1.0),
    "odd-size": (123, 70, 45, 8 * 123 / (70 * 45)),
}


@pytest.mark.parametrize(("num_bytes", "h", "w", "expected"), BPP_CASES.values(), ids=BPP_CASES.keys())
def test_bpp_from_bytes(num_bytes: int, h: int, w: int, expected: float) -> None:
    assert bpp(num_bytes, h, w) == pytest.approx(expected)


@pytest.mark.parametrize(("h", "w"), [(0, 10), (10, 0), (-1, 10)], ids=["h0", "w0", "h-neg"])
def test_bpp_rejects_empty_images(h: int, w: int) -> None:
    with pytest.raises(ValueError):
        bpp(10, h, w)
