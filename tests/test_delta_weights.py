"""Models shipped as deltas on other models: built, loaded, checked, kept across installs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dmenet_geo.model import DMENet, zoo
from pipelines import delta_weights, install_weights


def _install(folder: Path, name: str, state: dict[str, torch.Tensor], model: DMENet) -> str:
    torch.save(state, folder / f"{name}.pt")
    sha = zoo.file_sha256(folder / f"{name}.pt")
    (folder / f"{name}.json").write_text(json.dumps({"sha256": sha, "config": model.config.to_dict()}))
    return sha


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_small_model: DMENet) -> dict[str, object]:
    """A weights folder with ``base`` and ``tuned`` (its synthesis and entropy tables changed), and
    ``alias`` naming ``tuned``'s file."""
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    base = {k: v.clone() for k, v in fresh_small_model.state_dict().items()}
    tuned = {k: v.clone() for k, v in base.items()}
    tuned["g_s.0.conv.weight"] = tuned["g_s.0.conv.weight"] * 1.01  # a changed value
    tuned["gaussian_conditional._quantized_cdf"] = torch.cat(  # a changed shape
        [tuned["gaussian_conditional._quantized_cdf"]] * 2
    )
    _install(tmp_path, "base", base, fresh_small_model)
    sha = _install(tmp_path, "tuned", tuned, fresh_small_model)
    (tmp_path / "alias.json").write_text(json.dumps({**json.loads((tmp_path / "tuned.json").read_text()),
                                                     "weights_file": "tuned.pt"}))
    return {"folder": tmp_path, "tuned": tuned, "sha": sha}


def test_a_delta_stores_the_changed_tensors_and_loads_the_whole_state(shipped: dict[str, object]) -> None:
    folder, tuned, sha = Path(str(shipped["folder"])), shipped["tuned"], shipped["sha"]
    assert isinstance(tuned, dict)
    before = (folder / "tuned.pt").stat().st_size
    out = delta_weights.make_delta("tuned", "base")
    assert out.tensors == 2 and out.bytes_after < before
    assert set(torch.load(folder / "tuned.pt", weights_only=True)) == {
        "g_s.0.conv.weight", "gaussian_conditional._quantized_cdf"}
    for name in ("tuned", "alias"):  # the alias names the same file, so it records the delta too
        info = zoo.model_info(name)
        assert info.delta is not None and info.delta.base == "base" and info.sha256 == sha
        state, identity = zoo.load_state(info)
        assert identity == sha and zoo.state_sha256(state) == zoo.state_sha256(tuned)
    assert zoo.read_state(folder / "tuned.pt")[1] == sha == zoo.weights_sha256(folder / "tuned.pt")
    assert zoo.load_model("tuned").weights_sha256 == sha


def test_a_corrupted_delta_or_a_changed_base_is_refused(shipped: dict[str, object]) -> None:
    folder = Path(str(shipped["folder"]))
    delta_weights.make_delta("tuned", "base")
    delta = torch.load(folder / "tuned.pt", weights_only=True)
    torch.save({k: v + 1 for k, v in delta.items()}, folder / "tuned.pt")
    with pytest.raises(zoo.WeightsError, match="does not give the recorded state"):
        zoo.load_model("tuned")
    torch.save(delta, folder / "tuned.pt")
    zoo.load_model("tuned")
    base = torch.load(folder / "base.pt", weights_only=True)
    base["g_a.0.conv.bias"] = base["g_a.0.conv.bias"] + 1
    torch.save(base, folder / "base.pt")
    meta = json.loads((folder / "base.json").read_text())
    (folder / "base.json").write_text(json.dumps(dict(meta, sha256=zoo.file_sha256(folder / "base.pt"))))
    with pytest.raises(zoo.WeightsError, match="is a delta on base"):
        zoo.load_model("tuned")


@pytest.mark.parametrize(
    ("name", "base", "message"),
    [
        ("alias", "base", "shares tuned.pt"),
        ("tuned", "tuned", "its own base"),
        ("base", "tuned", "its own base"),
    ],
    ids=["shared-file", "itself", "cycle"],
)
def test_deltas_that_cannot_be_made_are_refused(
    shipped: dict[str, object], name: str, base: str, message: str
) -> None:
    if name == "base":  # tuned is a delta on base: base on tuned would be a cycle
        delta_weights.make_delta("tuned", "base")
    with pytest.raises(SystemExit, match=message):
        delta_weights.make_delta(name, base)


def test_a_delta_twice_is_refused(shipped: dict[str, object]) -> None:
    delta_weights.make_delta("tuned", "base")
    with pytest.raises(SystemExit, match="already a delta"):
        delta_weights.make_delta("tuned", "base")


@pytest.mark.parametrize(
    "entry",
    [None, {"base": "base"}, {"base": "../x", "base_sha256": "", "state_sha256": ""},
     {"base": "b", "base_sha256": 1, "state_sha256": ""}],
    ids=["null", "incomplete", "path", "type"],
)
def test_malformed_delta_entries_are_refused(entry: object) -> None:
    with pytest.raises(zoo.WeightsError, match="delta"):
        zoo.Delta.from_dict(entry)


def test_installing_over_a_base_moves_its_deltas_to_the_kept_copy(
    shipped: dict[str, object], monkeypatch: pytest.MonkeyPatch, fresh_small_model: DMENet
) -> None:
    folder = Path(str(shipped["folder"]))
    monkeypatch.setattr(install_weights, "WEIGHTS_DIR", folder)
    delta_weights.make_delta("tuned", "base")
    run = folder / "run"
    run.mkdir()
    new = {k: v.clone() for k, v in fresh_small_model.state_dict().items()}
    new["g_a.0.conv.bias"] = new["g_a.0.conv.bias"] - 1
    torch.save(new, run / "weights.pt")
    (run / "weights.json").write_text(json.dumps({"config": fresh_small_model.config.to_dict()}))
    with pytest.raises(SystemExit, match="tuned, alias|alias, tuned"):
        install_weights.install(run / "weights.pt", "base", keep=False)
    install_weights.install(run / "weights.pt", "base")
    info = zoo.model_info("tuned")
    assert info.delta is not None and info.delta.base.startswith("base-")
    assert zoo.load_model("tuned").weights_sha256 == shipped["sha"]


def test_a_delta_may_add_tensors_its_base_lacks(shipped: dict[str, object]) -> None:
    """A model with a context over a base without one, as the N = 64 defaults are shipped."""
    folder, tuned = Path(str(shipped["folder"])), shipped["tuned"]
    assert isinstance(tuned, dict)
    base = torch.load(folder / "base.pt", weights_only=True)
    torch.save({k: v for k, v in base.items() if not k.startswith("g_s.0.")}, folder / "base.pt")
    meta = json.loads((folder / "base.json").read_text())
    (folder / "base.json").write_text(json.dumps(dict(meta, sha256=zoo.file_sha256(folder / "base.pt"))))
    out = delta_weights.make_delta("tuned", "base")
    assert out.tensors == len([k for k in tuned if k.startswith("g_s.0.")]) + 1  # + the changed CDF
    state, identity = zoo.load_state(zoo.model_info("tuned"))
    assert identity == shipped["sha"] and zoo.state_sha256(state) == zoo.state_sha256(tuned)
