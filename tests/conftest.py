"""Shared test fixtures. Keep this file generic: module-specific fixtures live in their test files."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dmenet_geo.model import DMENet, DMENetConfig  # noqa: E402

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_TILES = REPO_ROOT / "sample_tiles"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_tile_paths() -> list[Path]:
    """The real 256x256 RGB PNG tiles in ``sample_tiles/`` (sorted)."""
    paths = sorted(SAMPLE_TILES.glob("*.png"))
    assert paths, f"no sample tiles in {SAMPLE_TILES} (run sample_tiles/make_samples.py)"
    return paths


@pytest.fixture(scope="session")
def sample_tiles(sample_tile_paths: list[Path]) -> torch.Tensor:
    """The sample PNGs as a (B, 3, 256, 256) float tensor in [0, 1]; do not modify it in place."""
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sample_tile_paths]
    return torch.from_numpy(np.stack(arrays).copy()).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="session")
def sample_geotiff_path() -> Path:
    """The real Landsat-7 GeoTIFF crop (600x500, 3 x uint8, EPSG:32618, nodata 0)."""
    path = SAMPLE_TILES / "landsat7_rgb_byte_crop.tif"
    assert path.exists(), f"missing {path} (run sample_tiles/make_samples.py)"
    return path


def _small_model(seed: int = 0) -> DMENet:
    torch.manual_seed(seed)
    model = DMENet(DMENetConfig(n=16))
    model.update(force=True)
    return model.eval()


@pytest.fixture(scope="session")
def small_model() -> DMENet:
    """An untrained eval-mode ``DMENet(DMENetConfig(n=16))`` with its entropy tables built.

    Shared by the whole session: do not train or modify it in place (use ``fresh_small_model``).
    """
    return _small_model()


@pytest.fixture
def fresh_small_model() -> DMENet:
    """A new untrained n=16 model (same seed as ``small_model``) that a test may modify."""
    return _small_model()
