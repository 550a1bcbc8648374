"""``pipelines/bench/counts.py``: what ``pipelines/complexity.py`` reports, checked against the paper's
N = 256 figures (recorded in ``docs/complexity_cpu.json``) and against plain sums."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dmenet_geo.model import DMENet  # noqa: E402
from dmenet_geo.model.config import DMENetConfig  # noqa: E402
from pipelines.bench.counts import count_flops, deform_conv_macs, params_by_part  # noqa: E402


@pytest.mark.parametrize(
    ("context", "post_filter"),
    [("none", 0), ("checkerboard", 0), ("checkerboard", 8)],
    ids=["hyperprior", "checkerboard", "post-filter"],
)
def test_parts_add_up_and_each_part_counts(context: str, post_filter: int) -> None:
    model = DMENet(DMENetConfig(n=16, context=context, post_filter=post_filter)).eval()
    parts = params_by_part(model)
    assert sum(parts.values()) == sum(p.numel() for p in model.parameters())
    assert ("context" in parts) == (context != "none")
    assert ("post_filter" in parts) == bool(post_filter)
    assert all(v > 0 for k, v in parts.items() if k != "gains_and_other")
    flops = count_flops(model, torch.rand(1, 3, 64, 64))
    assert set(flops) >= {"g_a", "h_a", "entropy_parameters", "g_s"}
    assert ("post_filter" in flops) == bool(post_filter)
    assert all(v > 0 for v in flops.values())
    assert deform_conv_macs(model, torch.rand(1, 3, 64, 64)) > 0


def test_the_paper_width_matches_the_recorded_table() -> None:
    """N = 256 untrained, as complexity.py measured it (the paper's 5.30 M parameters: 6.07 M here)."""
    row = next(r for r in json.loads((REPO_ROOT / "docs" / "complexity_cpu.json").read_text())["rows"]
               if r["n"] == 256)
    model = DMENet(DMENetConfig(n=256)).eval()
    assert params_by_part(model) == row["params_by_part"]
    x = torch.rand(1, 3, 256, 256)
    assert count_flops(model, x) == row["flops_by_part"]
    assert deform_conv_macs(model, x) == row["deform_conv_macs"]


def test_the_post_filter_is_timed_apart_where_a_model_has_one(tmp_path: Path) -> None:
    """``complexity.py`` times the post-filter alone in float32 and float64, and says "-" without one."""
    from pipelines.complexity import measure
    from pipelines.complexity_report import format_table

    torch.manual_seed(0)
    model = DMENet(DMENetConfig(n=16, post_filter=8))
    model.update(force=True)
    torch.save(model.state_dict(), tmp_path / "pf.pt")
    (tmp_path / "pf.json").write_text(json.dumps({"config": model.config.to_dict()}))
    with_filter = measure(16, "cpu", 1, str(tmp_path / "pf.pt"))
    without = measure(16, "cpu", 1)
    assert with_filter["post_filter_float32_s"] > 0 and with_filter["post_filter_float64_s"] > 0
    assert without["post_filter_float32_s"] is None and without["post_filter_float64_s"] is None
    row = next(line for line in format_table([without, with_filter], "cpu", 1, 5).splitlines()
               if "post-filter alone" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "-" and cells[3].endswith(" s") and " s / " in cells[3]
