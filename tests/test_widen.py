"""pipelines/widen.py: a widened model starts out decoding like the narrow one."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model import DMENet, DMENetConfig  # noqa: E402
from pipelines.widen import widen  # noqa: E402


@pytest.fixture(scope="module")
def tiles() -> torch.Tensor:
    torch.manual_seed(5)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 128, 128), 5, stride=1, padding=2)
    return smooth.clamp(0, 1)


@pytest.fixture(scope="module")
def plain_model() -> DMENet:
    """The paper's ablation: no SDPM, no LSM (a 1x1 head instead)."""
    torch.manual_seed(7)
    model = DMENet(DMENetConfig(n=16, use_sdpm=False, use_lsm=False))
    model.update(force=True)
    return model.eval()


def _trained_like(base: DMENet) -> DMENet:
    """``base`` with a context whose last layer is non-zero, as in a trained model."""
    model = DMENet(dataclasses.replace(base.config, context="checkerboard"))
    model.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(6)
    assert model.context is not None
    with torch.no_grad():
        for p in model.context.fuse[-1].parameters():
            p.normal_(0, 0.05)
    model.update(force=True)
    return model.eval()


@pytest.mark.parametrize(
    ("quality", "variant"), [(1.0, "full"), (4.5, "full"), (8.0, "full"), (6.0, "plain")],
    ids=["q1", "q4.5", "q8", "q6-no-sdpm-no-lsm"],
)
def test_widened_model_decodes_like_the_narrow_one(
    small_model: DMENet, plain_model: DMENet, tiles: torch.Tensor, quality: float, variant: str
) -> None:
    narrow = _trained_like(small_model if variant == "full" else plain_model)
    wide = DMENet(dataclasses.replace(narrow.config, n=32))
    wide.load_state_dict(widen(narrow.state_dict(), narrow.config, 32))
    wide.eval()
    a, b = narrow.compress(tiles, quality), wide.compress(tiles, quality)
    x_narrow, x_wide = narrow.decompress(a)[0], wide.decompress(b)[0]
    # float64 sums over the added zero channels may differ in the last bit, nothing more
    assert (x_narrow - x_wide).abs().max() < 1e-12
    for sa, sb in zip(a.y_strings + a.z_strings, b.y_strings + b.z_strings, strict=True):
        assert len(sa) <= len(sb) <= len(sa) + 16  # the new channels are coded zeros
    # the widened model is a different, trainable model: the new channels have live weights
    assert wide.g_s[0].conv.weight[16:].abs().sum() > 0


def test_widths_sdpm_cannot_split_are_refused(small_model: DMENet) -> None:
    with pytest.raises(ValueError, match="SDPM"):
        widen(small_model.state_dict(), small_model.config, 20)
    with pytest.raises(ValueError, match="exceed"):
        widen(small_model.state_dict(), small_model.config, 16)
    grouped = dataclasses.replace(small_model.config, context="checkerboard", context_groups=2)
    with pytest.raises(ValueError, match="groups"):
        widen(DMENet(grouped).state_dict(), grouped, 32)
