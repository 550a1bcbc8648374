"""DMENet model config tests: JSON round trip, validation, quality range, gain interpolation."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from model_helpers import crop, loud_model

from dmenet_geo.model import DMENet, DMENetConfig
from dmenet_geo.model.config import DEFAULT_LAMBDAS, ConfigError


@pytest.fixture(scope="module")
def model16() -> DMENet:
    return loud_model(16, seed=16)


# ------------------------------------------------------------------------------------- config

CONFIGS = {
    "default": DMENetConfig(),
    "n16-single-lambda": DMENetConfig(n=16, lambdas=(0.01,)),
    "baseline": DMENetConfig(n=32, use_mdei=False, use_sdpm=False, use_lsm=False, psi=0.0),
    "paper-lambdas": DMENetConfig(n=256, lambdas=(0.007, 0.013, 0.033, 0.072, 0.211, 0.508, 0.660)),
    "wide-latent": DMENetConfig(n=16, m=40, context="checkerboard", context_groups=5),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_config_json_round_trip(config: DMENetConfig) -> None:
    text = config.to_json()
    assert json.loads(text)["id"] == "dmenet-model"
    assert DMENetConfig.from_json(text) == config
    assert DMENetConfig.from_dict(config.to_dict()) == config
    assert isinstance(DMENetConfig.from_json(text).lambdas, tuple)


def test_latent_width_is_tied_to_n_unless_set() -> None:
    assert DMENetConfig(n=32).latent == 32 and "m" not in DMENetConfig(n=32).to_dict()
    wide = DMENetConfig(n=32, m=96)
    assert wide.latent == 96 and wide.to_dict()["m"] == 96


@pytest.mark.parametrize("context", ["none", "checkerboard"])
def test_wide_latent_model_shapes_and_round_trip(context: str, sample_tiles: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = DMENet(DMENetConfig(n=16, m=40, context=context))
    x = crop(sample_tiles[:2], 64, 64)
    out = model(x, torch.tensor([1.0, 7.5]))
    assert out.likelihoods_y.shape[1] == 40 and out.likelihoods_z.shape[1] == 16
    assert model.log_gain.shape == (8, 40) and model.log_hyper_gain.shape == (8, 16)
    model.update(force=True)
    model.eval()
    latents = model.compress(x, [2.0, 6.0])
    x_hat, digests = model.decompress(latents)
    assert x_hat.shape == x.shape and digests == latents.digests


def test_default_config() -> None:
    config = DMENetConfig()
    assert config.lambdas == DEFAULT_LAMBDAS and config.levels == 8
    assert config.lambdas[0] == pytest.approx(0.0009) and config.lambdas[-1] == pytest.approx(0.0483)
    assert config.psi == pytest.approx(0.0185)


BAD_CONFIGS = {
    "n-too-small": {"n": 4},
    "n-not-div-4": {"n": 18},
    "n-zero": {"n": 0},
    "n-negative": {"n": -16},
    "n-float": {"n": 16.0},
    "n-bool": {"n": True},
    "lambdas-empty": {"lambdas": ()},
    "lambdas-zero": {"lambdas": (0.0, 0.1)},
    "lambdas-negative": {"lambdas": (-0.1, 0.1)},
    "lambdas-decreasing": {"lambdas": (0.2, 0.1)},
    "lambdas-repeated": {"lambdas": (0.1, 0.1)},
    "psi-negative": {"psi": -0.1},
    "switch-not-bool": {"use_sdpm": "yes"},
    "m-too-small": {"m": 4},
    "m-float": {"m": 64.0},
    "m-bool": {"m": True},
    "groups-not-dividing-latent": {"n": 16, "m": 24, "context": "checkerboard", "context_groups": 16},
}


@pytest.mark.parametrize("kwargs", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DMENetConfig(**kwargs)


NON_FINITE = {
    "lambda-nan": {"lambdas": (math.nan,)},
    "lambda-inf": {"lambdas": (0.1, math.inf)},
    "psi-nan": {"psi": math.nan},
    "psi-inf": {"psi": math.inf},
}


@pytest.mark.parametrize("kwargs", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_config_rejects_non_finite_numbers(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DMENetConfig(**kwargs)


BAD_DICTS = {
    "wrong-id": {"id": "something-else", "n": 16},
    "missing-id": {"n": 16},
    "unknown-key": {"id": "dmenet-model", "n": 16, "depth": 3},
    "bad-n": {"id": "dmenet-model", "n": 10},
}


@pytest.mark.parametrize("data", BAD_DICTS.values(), ids=BAD_DICTS.keys())
def test_config_from_dict_errors(data: dict) -> None:
    with pytest.raises(ConfigError):
        DMENetConfig.from_dict(data)


@pytest.mark.parametrize("quality", [0.0, 0.999, 8.001, 9, -1, math.nan, math.inf], ids=str)
def test_quality_out_of_range(quality: float) -> None:
    config = DMENetConfig()
    with pytest.raises(ConfigError):
        config.check_quality(quality)
    with pytest.raises(ConfigError):
        config.lambda_for(quality)


def test_compress_rejects_quality_out_of_range(small_model: DMENet, sample_tiles: torch.Tensor) -> None:
    with pytest.raises(ConfigError):
        small_model.compress(crop(sample_tiles[:1], 64, 64), 8.5)


# ------------------------------------------------------------------------------ gain / quality


def test_lambda_for_hits_operating_points_and_is_monotone() -> None:
    config = DMENetConfig()
    for k, lam in enumerate(config.lambdas, start=1):
        assert config.lambda_for(k) == pytest.approx(lam, rel=1e-12)
    assert config.lambda_for(2.5) == pytest.approx(math.sqrt(config.lambdas[1] * config.lambdas[2]))
    grid = np.linspace(1, config.levels, 141)
    values = [config.lambda_for(float(q)) for q in grid]
    assert all(b > a for a, b in pairwise(values))


def test_single_lambda_model_accepts_quality_one_only() -> None:
    config = DMENetConfig(n=16, lambdas=(0.01,))
    assert config.lambda_for(1) == 0.01
    with pytest.raises(ConfigError):
        config.lambda_for(1.5)


def test_gain_interpolates_log_linearly(small_model: DMENet) -> None:
    q = torch.tensor([2.0, 2.5, 3.0], dtype=torch.float64)
    log_g = torch.log(small_model._gain(small_model.log_gain.detach().double(), q))[:, :, 0, 0]
    assert not torch.equal(log_g[1], log_g[0]) and not torch.equal(log_g[1], log_g[2])
    torch.testing.assert_close(log_g[1], (log_g[0] + log_g[2]) / 2)


def test_quality_is_continuous(model16: DMENet, sample_tiles: torch.Tensor) -> None:
    x = crop(sample_tiles[2:3], 128, 128, top=64, left=64).expand(5, -1, -1, -1).contiguous()
    qualities = [2.0, 2.25, 2.5, 2.75, 3.0]
    latents = model16.compress(x, qualities)
    x_hat, digests = model16.decompress(latents)
    assert digests == latents.digests
    assert len(set(latents.digests)) == len(qualities)
    assert not torch.equal(x_hat[2], x_hat[0]) and not torch.equal(x_hat[2], x_hat[4])
    sizes = [len(s) for s in latents.y_strings]
    assert all(b > a for a, b in pairwise(sizes)), sizes  # a larger gain costs more bits
