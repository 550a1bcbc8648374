"""``pipelines/encoder_search.py``: per-tile choice among several codings of each tile."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from pipelines import encoder_search  # noqa: E402


def test_the_eight_orientations_are_distinct_and_undone() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seen = []
    for k in range(8):
        turned = encoder_search.orient(x, k)
        assert torch.equal(encoder_search.unorient(turned, k), x)
        seen.append(turned.flatten().tolist())
    assert len({tuple(s) for s in seen}) == 8


def test_each_tile_keeps_its_cheapest_coding(small_model: DMENet) -> None:
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    coded = encoder_search.code_all(small_model, x, [2.0, 6.0], 2, [0.0, 0.5])
    assert [(c.quality, c.orientation, c.offset) for c in coded] == [
        (q, k, o) for q in (2.0, 6.0) for k in (0, 1) for o in (0.0, 0.5)]
    pixels = 64 * 64
    plain_rows = [c for c in coded if c.orientation == 0 and c.offset == 0]
    plain = encoder_search.choose(small_model, plain_rows, pixels)
    kept = encoder_search.choose(small_model, coded, pixels)
    for p, k in zip(plain, kept, strict=True):
        lam = small_model.config.lambda_for(p.quality)
        rows = [c for c in coded if c.quality == p.quality]
        costs = np.stack([c.nbytes * 8 / pixels + lam * c.sse / (3 * pixels) for c in rows])
        best = costs.argmin(0)
        kept_bytes = np.stack([c.nbytes for c in rows])[best, np.arange(3)]
        assert k.bpp == pytest.approx(kept_bytes.sum() * 8 / (3 * pixels))
        assert p.bpp == pytest.approx(rows[0].nbytes.sum() * 8 / (3 * pixels))  # rows[0]: plain
        assert np.isfinite(k.psnr) and np.isfinite(k.psnr_of_mean_mse)


@pytest.mark.parametrize("argv", [["--offsets", "0.5"], ["--qualities", "3"], ["--orientations", "3"]],
                         ids=["no-zero-offset", "one-quality", "orientations"])
def test_settings_without_an_anchor_or_a_curve_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        encoder_search.main(argv)


def test_recoding_the_kept_candidates_reproduces_them(small_model: DMENet) -> None:
    """With no refinement steps, coding each tile's kept candidate again gives the kept bytes and
    error; with steps, the same tiles are coded (one result per tile and quality)."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    pixels = 64 * 64
    coded = encoder_search.code_all(small_model, x, [3.0, 7.0], 4, [0.0])
    kept = encoder_search.choose(small_model, coded, pixels)
    again = encoder_search.refine_kept(small_model, x, coded, 0, pixels)
    assert [c.quality for c in again] == [3.0, 7.0]
    for p, c in zip(kept, encoder_search.choose(small_model, again, pixels), strict=True):
        assert c.bpp == pytest.approx(p.bpp) and c.psnr == pytest.approx(p.psnr)
    refined = encoder_search.refine_kept(small_model, x, coded, 2, pixels)
    assert all(c.nbytes.shape == (2,) and (c.nbytes > 0).all() for c in refined)
