"""``pipelines/scale_tables.py``: the bytes of the same latent symbols under other scale tables."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model.dmenet import DMENet  # noqa: E402
from pipelines import scale_tables  # noqa: E402
from pipelines.apply_trained import ScaleTable  # noqa: E402


def test_the_models_own_table_rebuilt_codes_the_same_bytes(small_model: DMENet) -> None:
    """An untrained model carries CompressAI's table (64 scales, 0.11 to 256): rebuilding that
    table codes the same bytes, and measuring leaves the model's own table alone. (Its predicted
    scales sit mostly below the tables' common bottom, so a finer table saves it nothing; the
    shipped default's case is below.)"""
    own_table = small_model.gaussian_conditional.scale_table.clone()
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    rows = scale_tables.measure(small_model, x, [2.0, 6.0], [ScaleTable(64, 256.0), ScaleTable(256, 64.0)])
    assert [(r.quality, r.table) for r in rows] == [
        (q, t) for q in (2.0, 6.0) for t in ("own (64 scales)", "64 to 256", "256 to 64")]
    by = {(r.quality, r.table): r.nbytes for r in rows}
    for q in (2.0, 6.0):
        assert by[q, "64 to 256"] == by[q, "own (64 scales)"] > 0
    assert torch.equal(small_model.gaussian_conditional.scale_table, own_table)


@pytest.mark.parametrize("table", ["x:64", "256:top", "1.5:64", "1:64", "64:0.1"],
                         ids=["levels", "top", "fraction", "one-level", "top-below-bottom"])
def test_tables_that_are_not_levels_and_top_are_refused(table: str) -> None:
    with pytest.raises(SystemExit):
        scale_tables.main(["--tables", table])


def test_the_shipped_default_saves_against_the_coarse_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default carries 256 scales (session 26): CompressAI's 64 cost it bytes on real tiles."""
    argv = ["--data", str(REPO_ROOT / "sample_tiles"), "--tiles", "4", "--qualities", "3",
            "--tables", "64:256", "--threads", "1"]
    assert scale_tables.main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("quality 3: own (256 scales) "), line
    match = re.search(r"64 to 256 \d+ B \(([+-][\d.]+) %\)", line)
    assert match and float(match.group(1)) > 0, line
