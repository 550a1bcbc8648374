"""A training run's files: ``checkpoint.pt`` (everything a resume needs) and the exportable
``weights.pt`` (fp32 state dict with the entropy coder's tables) with its ``weights.json`` sidecar."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.trainer.runtime import atomic_save, fp32_state
from pipelines.trainer.start import RunStart, build_model


@dataclass(frozen=True)
class RunSettings:
    """The options recorded in the sidecar (provenance), in the sidecar's order."""

    device: str
    batch: int
    crop: int
    lr: float
    schedule: str
    quality_balance: float
    train: list[str]
    seed: int


def save_run(
    out: Path, run: RunStart, step: int, elapsed: float, settings: RunSettings, cosine: dict[str, Any] | None
) -> None:
    """Write the checkpoint, then the weights and their sidecar, each atomically."""
    atomic_save(
        {
            "model": run.model.state_dict(),
            "opt_main": run.opt.main.state_dict(),
            "opt_aux": run.opt.aux.state_dict(),
            "scheduler": run.sched.state_dict(),
            "step": step,
            "elapsed_s": elapsed,
            "config": run.config.to_json(),
            "arch": run.arch,
            "lineage": run.lineage,
            **({"cosine": cosine} if cosine is not None else {}),
        },
        out / "checkpoint.pt",
    )
    export = build_model(run.arch, run.config)
    export.load_state_dict({k: v.detach().cpu() for k, v in run.model.state_dict().items()}, strict=False)
    export.update(force=True)
    atomic_save(fp32_state(export), out / "weights.pt")
    meta = {
        "arch": run.arch,
        "config": run.config.to_dict(),
        "steps": step,
        "train_hours": round(elapsed / 3600, 3),
        **dataclasses.asdict(settings),
        **run.lineage,
    }
    (out / "weights.json").write_text(json.dumps(meta, indent=2))
