"""Ship a model as the tensors that differ from another shipped model (its base).

    python pipelines/delta_weights.py default-9745a0c3 --base default

Rewrites ``dmenet_geo/weights/NAME.pt`` with only the tensors of NAME that differ from BASE and
records ``"delta"`` (BASE, BASE's SHA-256 and the SHA-256 of NAME's whole state) in NAME's sidecar
and in every sidecar that shares the file (``"weights_file"``). ``load_model`` puts the two back
together and checks the state's SHA-256 before using it. NAME's own SHA-256, the identity its
chunks and stores record, is unchanged. Nothing is replaced until BASE plus the written delta has
been checked to give NAME's state exactly; the sidecars are written before the file, so a run
stopped between the two leaves the whole file under a delta entry, which still loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from dmenet_geo.model import zoo  # noqa: E402
from dmenet_geo.weights import read_sidecar, weights_path  # noqa: E402


@dataclass(frozen=True)
class DeltaWritten:
    name: str
    base: str
    tensors: int  # tensors stored in the delta
    bytes_before: int
    bytes_after: int


def changed_tensors(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``base`` lacks or holds with another dtype, shape or value."""
    out = {}
    for key, value in state.items():
        old = base.get(key)
        if old is None or old.dtype != value.dtype or old.shape != value.shape or not torch.equal(old, value):
            out[key] = value
    return out


def _chain(name: str) -> list[str]:
    """``name`` and the bases its delta entries lead through."""
    names = [name]
    info = zoo.model_info(name)
    while info.delta is not None and len(names) <= 8:
        names.append(info.delta.base)
        info = zoo.model_info(info.delta.base)
    return names


def make_delta(name: str, base: str) -> DeltaWritten:
    info = zoo.model_info(name)
    folder = info.path.parent
    if info.delta is not None:
        raise SystemExit(f"{name} is already a delta on {info.delta.base}")
    if info.path != folder / f"{name}.pt":
        raise SystemExit(f"{name} shares {info.path.name}: convert the model that owns that file")
    if name in _chain(base):
        raise SystemExit(f"{base} is {name} or built on it: a delta cannot be its own base")
    state, sha = zoo.load_state(info)
    base_state, base_sha = zoo.load_state(zoo.model_info(base))
    missing = sorted(set(base_state) - set(state))
    if missing:
        raise SystemExit(f"{name} lacks tensors of {base} ({', '.join(missing[:3])}): no delta expresses it")
    changed = changed_tensors(state, base_state)
    entry = {"base": base, "base_sha256": base_sha, "state_sha256": zoo.state_sha256(state)}
    staged = info.path.with_name(f"{info.path.name}.tmp")
    torch.save(changed, staged)
    assembled = dict(base_state)
    assembled.update(torch.load(staged, map_location="cpu", weights_only=True))
    if zoo.state_sha256(assembled) != entry["state_sha256"]:
        staged.unlink()
        raise SystemExit(f"the delta written for {name} does not rebuild it; nothing replaced")
    before = info.path.stat().st_size
    for sidecar in sorted(folder.glob("*.json")):
        if weights_path(sidecar) == info.path:
            meta = dict(read_sidecar(sidecar), delta=entry)
            tmp = sidecar.with_name(f"{sidecar.name}.tmp")
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
            os.replace(tmp, sidecar)
    os.replace(staged, info.path)
    rebuilt, identity = zoo.load_state(zoo.model_info(name))  # raises if anything does not fit
    assert identity == sha and rebuilt.keys() == state.keys()
    return DeltaWritten(name, base, len(changed), before, info.path.stat().st_size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="shipped model to store as a delta, e.g. default-9745a0c3")
    p.add_argument("--base", required=True, help="shipped model it is stored against, e.g. default")
    args = p.parse_args(argv)
    out = make_delta(args.name, args.base)
    print(f"{out.name}: {out.tensors} tensors against {out.base}, "
          f"{out.bytes_before / 1e6:.1f} MB -> {out.bytes_after / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
