"""``pipelines/apply_trained.py``: a fine-tuning run's ``trained.pt`` put back onto its base weights
gives the run's full weights, tensor for tensor; parts that do not fit the base are refused."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from finetune_helpers import finetune_twice  # noqa: E402

from pipelines import apply_trained, train_decoder  # noqa: E402


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base weights, the decoder run's output folder)."""
    tmp = tmp_path_factory.mktemp("apply")
    init, _ = finetune_twice(train_decoder.main, tmp)
    return init, tmp / "tuned"


def test_applied_tensors_give_the_runs_weights(tuned: tuple[Path, Path], tmp_path: Path) -> None:
    init, run = tuned
    part = run / "trained.pt"
    assert apply_trained.main([str(init), str(tmp_path / "out"), str(part)]) == 0
    got = torch.load(tmp_path / "out" / "weights.pt", map_location="cpu", weights_only=True)
    want = torch.load(run / "weights.pt", map_location="cpu", weights_only=True)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    meta = json.loads((tmp_path / "out" / "weights.json").read_text())
    assert meta["applied"]["base_sha256"] == _sha(init)
    assert meta["applied"]["parts"] == [{"file": str(part), "sha256": _sha(part),
                                         "tensors": len(torch.load(part, weights_only=True))}]
    assert meta["config"] == json.loads(init.with_suffix(".json").read_text())["config"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _part(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    torch.save(tensors, path)
    return path


@pytest.mark.parametrize("case", ["twice", "unknown-key", "wrong-shape", "empty"])
def test_parts_that_do_not_fit_are_refused(tuned: tuple[Path, Path], tmp_path: Path, case: str) -> None:
    init, run = tuned
    trained = torch.load(run / "trained.pt", map_location="cpu", weights_only=True)
    key = next(iter(trained))
    parts = {
        "twice": [run / "trained.pt", run / "trained.pt"],
        "unknown-key": [_part(tmp_path / "p.pt", {"g_s.no_such.weight": torch.zeros(1)})],
        "wrong-shape": [_part(tmp_path / "p.pt", {key: torch.zeros(*trained[key].shape, 2)})],
        "empty": [_part(tmp_path / "p.pt", {})],
    }[case]
    with pytest.raises(SystemExit):
        apply_trained.apply_trained(init, tmp_path / "out", parts)
    assert not (tmp_path / "out" / "weights.pt").exists()


def test_a_finer_scale_table_keeps_the_symbols_and_the_pixels(
    tuned: tuple[Path, Path], tmp_path: Path
) -> None:
    from dmenet_geo.model.zoo import load_model

    init, _ = tuned
    argv = [str(init), str(tmp_path / "out"), "--scale-levels", "96", "--scale-max", "32"]
    assert apply_trained.main(argv) == 0
    got = torch.load(tmp_path / "out" / "weights.pt", map_location="cpu", weights_only=True)
    base = torch.load(init, map_location="cpu", weights_only=True)
    assert got.keys() == base.keys()
    changed = {k for k in base if got[k].shape != base[k].shape or not torch.equal(got[k], base[k])}
    assert changed and all(k.startswith("gaussian_conditional.") for k in changed)  # no network weight
    table = got["gaussian_conditional.scale_table"].double()
    assert len(table) == 96
    assert (float(table[0]), float(table[-1])) == pytest.approx((0.11, 32))
    ratios = table[1:] / table[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-5)  # geometric
    assert json.loads((tmp_path / "out" / "weights.json").read_text())["applied"]["scale_table"] == {
        "levels": 96, "min": 0.11, "max": 32.0}

    old, new = load_model(init), load_model(tmp_path / "out" / "weights.pt")
    assert len(new.gaussian_conditional.scale_table) == 96  # loading keeps the carried table
    new.update(force=True)  # and so does rebuilding the tables (as every export does)
    assert len(new.gaussian_conditional.scale_table) == 96
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, b = old.compress(x, 4.0), new.compress(x, 4.0)
    assert a.digests == b.digests  # the same symbols ...
    assert a.y_strings != b.y_strings  # ... coded with other tables
    pixels_a, _ = old.decompress(a)
    pixels_b, digests_b = new.decompress(b)
    assert digests_b == b.digests and torch.equal(pixels_a, pixels_b)


BAD_TABLES = [[], ["--scale-levels", "1"], ["--scale-levels", "64", "--scale-max", "0.1"]]


@pytest.mark.parametrize("argv", BAD_TABLES, ids=["nothing-to-apply", "one-level", "top-below-bottom"])
def test_scale_tables_that_cannot_be_built_are_refused(
    tuned: tuple[Path, Path], tmp_path: Path, argv: list[str]
) -> None:
    init, _ = tuned
    with pytest.raises(SystemExit):
        apply_trained.main([str(init), str(tmp_path / "out"), *argv])
    assert not (tmp_path / "out" / "weights.pt").exists()
