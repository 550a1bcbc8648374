"""Where a training run starts: fresh, from weights alone (``--init-weights``), or resumed from a
checkpoint (``--resume``); the model, loss, optimisers and plateau scheduler of the run."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.losses import RateDistortionLoss
from dmenet_geo.model.training import Optimisers, retarget_gains
from dmenet_geo.model.zoo import read_state


def build_model(arch: str, config: DMENetConfig) -> DMENet:
    """DMENet, or the learned baseline (same call signature) for ``arch="mbt2018-mean"``."""
    if arch == "dmenet":
        return DMENet(config)
    from pipelines.rd.gain_mbt import GainMeanScaleHyperprior

    return GainMeanScaleHyperprior(config)  # type: ignore[return-value]


@dataclass
class RunStart:
    """Everything a run continues from. ``step`` and ``elapsed_before`` count on from the initial
    weights or the checkpoint; ``saved_cosine`` is the checkpoint's cosine schedule, if it had one."""

    arch: str
    config: DMENetConfig
    model: DMENet
    criterion: RateDistortionLoss
    opt: Optimisers
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau
    step: int
    elapsed_before: float
    lineage: dict[str, Any]
    resumed: bool
    saved_cosine: dict[str, Any] | None


def _fresh_config(args: argparse.Namespace) -> DMENetConfig:
    lambdas = (args.lmbda,) if args.lmbda else args.lambdas or DMENetConfig().lambdas
    return DMENetConfig(
        n=args.n,
        m=args.m,
        use_mdei=not args.no_mdei,
        use_sdpm=not args.no_sdpm,
        use_lsm=not args.no_lsm,
        lambdas=lambdas,
        context="checkerboard" if args.context_groups else args.context or "none",
        context_groups=args.context_groups or 1,
    )


def _with_context(config: DMENetConfig, args: argparse.Namespace) -> DMENetConfig:
    """``config`` with the context the options ask for (``--context``, ``--context-groups``)."""
    if args.context_groups is not None:
        return dataclasses.replace(config, context="checkerboard", context_groups=args.context_groups)
    if args.context is not None:
        return dataclasses.replace(config, context=args.context)
    return config


def start_run(args: argparse.Namespace, device: torch.device) -> RunStart:
    """Build the run from the CLI options (see ``pipelines/train.py``); exits with a message when the
    initial weights do not fit the model or an option is out of range."""
    checkpoint = torch.load(args.resume, map_location="cpu", weights_only=True) if args.resume else None
    meta: dict[str, Any] = {}
    retarget_from: tuple[float, ...] | None = None
    init_config: DMENetConfig | None = None  # that of --init-weights, before the options change it
    if checkpoint is not None:
        config = DMENetConfig.from_json(checkpoint["config"])
    elif args.init_weights is not None:
        meta = json.loads(args.init_weights.with_suffix(".json").read_text())
        init_config = config = DMENetConfig.from_dict(meta["config"])
        if args.lambdas and args.lambdas != config.lambdas:
            retarget_from = config.lambdas
            config = dataclasses.replace(config, lambdas=args.lambdas)
        try:
            config = _with_context(config, args)
        except ValueError as err:
            raise SystemExit(f"--context-groups: {err}") from None
    else:
        try:
            config = _fresh_config(args)
        except ValueError as err:
            raise SystemExit(f"model options: {err}") from None
    arch = checkpoint.get("arch", "dmenet") if checkpoint is not None else args.arch
    if arch != "dmenet":
        config = dataclasses.replace(config, use_mdei=False, use_sdpm=False, use_lsm=False, context="none")
    model = build_model(arch, config).to(device)
    try:
        criterion = RateDistortionLoss(config, balance=args.quality_balance).to(device)
    except ValueError as err:
        raise SystemExit(f"--quality-balance: {err}") from None
    opt = Optimisers.build(model, args.lr, args.aux_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt.main, factor=0.5, patience=4, min_lr=args.min_lr)
    step, elapsed_before = 0, 0.0
    lineage: dict[str, Any] = {}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        opt.main.load_state_dict(checkpoint["opt_main"])
        opt.aux.load_state_dict(checkpoint["opt_aux"])
        sched.load_state_dict(checkpoint["scheduler"])
        step, elapsed_before = int(checkpoint["step"]), float(checkpoint["elapsed_s"])
        if args.reset_lr:
            for group in opt.main.param_groups:
                group["lr"] = args.lr
        lineage = dict(checkpoint.get("lineage", {}))
    elif args.init_weights is not None:
        state, init_sha = read_state(args.init_weights)
        if retarget_from is not None:
            state = retarget_gains(state, retarget_from, config.lambdas)
            print(f"gain tables re-targeted from lambdas {retarget_from} to {config.lambdas}", flush=True)
        assert init_config is not None
        if (init_config.context, init_config.context_groups) != (config.context, config.context_groups):
            state = {k: v for k, v in state.items() if not k.startswith("context.")}
            print(f"context: {config.context} ({config.context_groups} group(s)) in place of the initial "
                  f"weights' {init_config.context} ({init_config.context_groups}); its weights start "
                  "afresh", flush=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        fresh = [k for k in missing if not k.startswith("context.")]
        if fresh or unexpected:
            raise SystemExit(
                f"{args.init_weights} does not fit the model: missing {fresh}, unexpected {unexpected}"
            )
        step, elapsed_before = int(meta.get("steps", 0)), float(meta.get("train_hours", 0)) * 3600
        lineage = {"init_weights": str(args.init_weights), "init_step": step,
                   "init_sha256": init_sha,
                   **{k: v for k, v in meta.items() if k.startswith("widen")}}
    return RunStart(
        arch=arch, config=config, model=model, criterion=criterion, opt=opt, sched=sched, step=step,
        elapsed_before=elapsed_before, lineage=lineage, resumed=checkpoint is not None,
        saved_cosine=checkpoint.get("cosine") if checkpoint is not None else None,
    )
