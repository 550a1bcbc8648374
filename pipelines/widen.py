"""Widen trained DMENet weights to a larger N and/or more latent channels M, decoding (nearly) as
before, to train on from there.

    python pipelines/widen.py dmenet_geo/weights/default.pt --n 128 --out runs/wide/init/weights.pt \
        --latent-scale 1 --read-scale 0.3 --new-scale 0.5
    python pipelines/train.py --init-weights runs/wide/init/weights.pt --rate-warmup 64,3000 ...

``--m 192`` alone widens only the latent (and what reads or predicts it: the hyper encoder's input,
the entropy parameters, the context, the latent gains), keeping every hidden layer at N.

At N = 64 the transforms cap the quality (``pipelines/ceiling.py``), and a wider model trained from
scratch on a CPU needs many hours to catch up with the narrow one. Widening instead starts from the
narrow model's function (Net2Net-style, Chen et al., ICLR 2016): every layer keeps its trained
weights in the leading channels of each channel space and the new channels start fresh, with the
links that would let a new channel reach an old one set to zero. So the old channels compute
exactly what they did, and training only has to learn what the new channels add.

The new latent channels start as zero for every input that matters: the analysis gives them tiny
values (which the coder rounds to 0), their hyperprior predicts a mean of 0 and the smallest scale
(coding a 0 costs almost nothing), and the new hyper-latent channels are exactly 0 with a density
concentrated there. The synthesis and hyper decoder read them through small random weights (the
only links from new to old), which keeps them trainable and cannot matter while they are 0.

Started that way, the new latent channels stay at 0 under training: the rate term pushes them down
before the synthesis learns to use them (3,437 steps in session 6). ``--latent-scale``,
``--read-scale`` and ``--new-scale`` start them live instead (analysis weights at full size, larger
weights reading them, a hyperprior scale of ``--new-scale``), and ``train.py --rate-warmup`` leaves
their rate out of the loss at first: so trained, they carry information (session 7, see the model
card). The first decodes then differ slightly from the narrow model's.

Channel order: SDPM splits its channels in two halves and its pyramid block adds four branches of
``ch / 4`` channels back onto its input channel by channel, so in that space old channel ``i`` is
placed in the same half and the same branch block as before (for N = 64 -> 128: 0-7 -> 0-7,
8-15 -> 16-23, 16-23 -> 32-39, 24-31 -> 48-55). The hyperprior's and the context's (scales, means)
outputs keep scales before means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.dmenet import DMENet
from dmenet_geo.model.zoo import read_state

__all__ = ["widen", "widened_config"]

_SMALL_LATENT = 0.01  # scale of the analysis weights into new latent channels
_SMALL_READ = 0.1  # scale of the weights reading new (initially zero) latent channels
_READS_NEW_LATENT = ("g_s.0.conv.weight", "entropy_parameters.h_s.0.weight")
# new hyper-latent channels exactly 0; new latent channels' raw scale (floored) and mean 0
_ZEROED = ("h_a.4.weight", "h_a.4.bias", "entropy_parameters.head.point.weight",
           "entropy_parameters.head.point.bias", "entropy_parameters.head.weight",
           "entropy_parameters.head.bias", "context.fuse.4.weight", "context.fuse.4.bias")
_SCALE_BIAS = ("entropy_parameters.head.point.bias", "entropy_parameters.head.bias")
_DENSITY = ("quantiles", "matrices", "biases", "factors")  # the hyper-latent density, per channel
_TRANSPOSED = frozenset({"g_s.0.conv.weight", "g_s.1.conv.weight", "g_s.3.conv.weight", "g_s.4.conv.weight",
                        "entropy_parameters.h_s.0.weight", "entropy_parameters.h_s.2.weight"})


def _spaces(old: int, new: int, old_m: int, new_m: int) -> dict[str, Tensor]:
    """For each channel space, the new index of every old channel (hidden width ``old`` -> ``new``,
    latent channels ``old_m`` -> ``new_m``)."""
    fixed = {"q": old // 4, "t": 3 * old // 4, "n": old, "m": old_m, "2mf": 2 * old_m, "3m": 3 * old_m,
             "3": 3, "18": 18, "1": 1}
    h_old, h_new = old // 2, new // 2
    b_old, b_new = h_old // 4, h_new // 4
    hmap = torch.tensor([(i // b_old) * b_new + i % b_old if i < 3 * b_old else 3 * b_new + i - 3 * b_old
                         for i in range(h_old)])
    keep_old, keep_new = h_old // 2, h_new // 2
    if not (hmap[:keep_old] < keep_new).all() or not (hmap[keep_old:] >= keep_new).all():
        raise ValueError(f"cannot place SDPM's halves from N = {old} into N = {new}")
    two_m = torch.cat([torch.arange(old_m), new_m + torch.arange(old_m)])
    return {
        **{space: torch.arange(size) for space, size in fixed.items()},  # leading channels, in order
        "h": hmap,
        "hr": hmap[keep_old:] - keep_new,  # SDPM's sliced half, indexed within the half
        "hb": torch.arange(b_old),  # one pyramid branch, indexed within the branch
        "hd": torch.arange(h_old - 3 * b_old),  # the last branch
        "2m": two_m,  # (scales, means) of the latent
        "4m": torch.cat([two_m, 2 * new_m + torch.arange(2 * old_m)]),  # the context's fuse input
    }


# channel spaces of the tensors whose layout is fixed by their name (see _layout)
_SDPM = {"slice_conv.weight": ("hr", "hr"), "slice_conv.bias": ("hr",), "seb.weight": ("h", "h"),
         "seb.bias": ("h",), "seb.offset.weight": ("18", "h"), "seb.offset.bias": ("18",),
         "peb.branch_d.weight": ("hd", "h"), "peb.branch_d.bias": ("hd",), "peb.fuse.weight": ("h", "h"),
         "peb.fuse.bias": ("h",)}
_SDPM.update({f"peb.branch_{b}.{p}": ("hb", "h") if p == "weight" else ("hb",)
             for b in "abc" for p in ("weight", "bias")})
_BLOCKS = {"g_a.0": ("q", "3"), "g_a.1": ("h", "q"), "g_a.3": ("t", "h"), "g_a.4": ("m", "t"),
           "g_s.0": ("m", "t"), "g_s.1": ("t", "h"), "g_s.3": ("h", "q"), "g_s.4": ("q", "3")}
_CONTEXT = {"context.spatial.weight": ("2mf", "m"), "context.spatial.bias": ("2mf",),
            "context.fuse.0.weight": ("3m", "4m"), "context.fuse.0.bias": ("3m",),
            "context.fuse.2.weight": ("3m", "3m"), "context.fuse.2.bias": ("3m",),
            "context.fuse.4.weight": ("2m", "3m"), "context.fuse.4.bias": ("2m",)}


def _layout(key: str) -> tuple[str, ...] | None:
    """The channel space of each leading dimension of a tensor (out first for convolutions, in
    first for transposed ones), or None for tensors that do not depend on N."""
    for prefix in ("g_a.2.", "g_s.2."):
        if key.startswith(prefix):
            return _SDPM.get(key[len(prefix):])
    for prefix, (a, b) in _BLOCKS.items():
        if key.startswith(prefix + "."):
            out = b if prefix.startswith("g_s") else a  # transposed convolutions: (in, out)
            rest = key[len(prefix) + 1:]
            return {"conv.weight": (a, b), "conv.bias": (out,), "gdn.beta": (out,), "gdn.gamma": (out, out),
                    "igdn.beta": (out,), "igdn.gamma": (out, out)}.get(rest)
    if key.startswith(("h_a.", "entropy_parameters.h_s.")) and key.endswith((".weight", ".bias")):
        if key == "h_a.0.weight":  # the hyper encoder reads the latent
            return ("n", "m")
        return ("n", "n") if key.endswith(".weight") else ("n",)
    if key.startswith("entropy_parameters.head."):
        if ".point." in key or key.count(".") == 2:  # LSM's last 1x1 convolution, or the plain head
            return ("2m", "n") if key.endswith("weight") else ("2m",)
        return ("n", "1") if key.endswith("weight") else ("n",)
    if key in _CONTEXT:
        return _CONTEXT[key]
    if key in ("log_gain", "log_inv_gain"):
        return ("levels", "m")
    if key.startswith("log_"):
        return ("levels", "n")
    if key.startswith("entropy_bottleneck.") and key.split(".")[1] in _DENSITY:
        return ("n",)
    return None


def widened_config(config: DMENetConfig, n: int | None = None, m: int | None = None) -> DMENetConfig:
    """``config`` with the hidden width ``n`` and/or the latent channels ``m`` raised. A latent tied
    to N (``m`` unset) follows a new N unless ``m`` is given."""
    new_n = config.n if n is None else n
    wide = dataclasses.replace(config, n=new_n, m=m if m is not None else config.m)
    if wide.n < config.n or wide.latent < config.latent or (wide.n, wide.latent) == (config.n, config.latent):
        raise ValueError(f"widening must raise N ({config.n}) or the latent channels ({config.latent}) and "
                         f"lower neither, got N = {wide.n}, {wide.latent} latent channels")
    return wide


def widen(
    state: dict[str, Tensor],
    config: DMENetConfig,
    n: int | None = None,
    seed: int = 0,
    latent_scale: float = _SMALL_LATENT,
    read_scale: float = _SMALL_READ,
    new_scale: float = 0.0,
    m: int | None = None,
) -> dict[str, Tensor]:
    """``state`` (weights of a model with ``config``) widened to ``n`` hidden channels and ``m``
    latent channels (:func:`widened_config`); see the module doc.

    ``latent_scale`` multiplies the fresh analysis weights into the new latent channels,
    ``read_scale`` the fresh weights that read them, and ``new_scale`` is the hyperprior's initial
    scale for them (0: the smallest). The defaults keep the decoded pixels; larger values start the
    new channels live (coded as non-zero), at the cost of a perturbed start.
    """
    if latent_scale < 0 or read_scale < 0 or new_scale < 0:
        raise ValueError("the scales of the new channels must be >= 0")
    target = widened_config(config, n, m)
    if config.context_groups > 1:
        raise ValueError("widening a context with channel groups is not supported")
    torch.manual_seed(seed)
    wide = DMENet(target)
    fresh = wide.state_dict()
    narrow_eb = EntropyBottleneck(target.n, init_scale=0.1)  # new hyper-latent channels: mass at 0
    for b in narrow_eb.biases:
        b.data.zero_()
    spaces = _spaces(config.n, target.n, config.latent, target.latent)
    spaces["levels"] = torch.arange(config.levels)
    out: dict[str, Tensor] = {}
    for key, new in fresh.items():
        layout = _layout(key)
        if layout is None or key not in state:
            out[key] = new.clone()
            continue
        old = state[key]
        value = new.clone()
        if key.startswith("entropy_bottleneck."):
            value = dict(narrow_eb.named_parameters())[key.split(".", 1)[1]].detach().clone()
        maps = [spaces[s] for s in layout]
        if len(maps) == 2 and key.endswith("weight"):  # (a fresh GDN's gamma is 0 off its diagonal)
            # old outputs read new inputs through 0, or through small weights where the new inputs
            # are the (initially zero) latents
            o, i = (1, 0) if key in _TRANSPOSED else (0, 1)
            new_in = torch.ones(value.shape[i], dtype=torch.bool)
            new_in[maps[i]] = False
            cut = read_scale if key in _READS_NEW_LATENT else 0.0
            scale = torch.where(new_in, cut, 1.0).view([-1 if d == i else 1 for d in range(value.dim())])
            value.index_copy_(o, maps[o], value.index_select(o, maps[o]) * scale)
        if key in ("g_a.4.conv.weight", "g_a.4.conv.bias"):  # new latents: tiny, rounded to 0 when coded
            fresh_rows = torch.ones(value.shape[0], dtype=torch.bool)
            fresh_rows[maps[0]] = False
            value[fresh_rows] *= latent_scale
        if key in _ZEROED:
            value.zero_()
        if key in _SCALE_BIAS:  # scales come first: rows [0, m) of a (scales, means) output
            value[: target.latent] = new_scale
        if key in ("log_gain", "log_inv_gain"):  # new latent channels: the mean step of each quality
            value = old.mean(dim=1, keepdim=True).expand(-1, value.shape[1]).clone()
        index = torch.meshgrid(*maps, indexing="ij")
        value[index] = old.reshape(*[len(m) for m in maps], *old.shape[len(maps):])
        out[key] = value
    wide.load_state_dict(out)
    wide.update(force=True)
    return {k: v.detach().float() if v.is_floating_point() else v for k, v in wide.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, help="weights.pt with its .json sidecar")
    p.add_argument("--n", type=int, help="the new hidden channel width N")
    p.add_argument("--m", type=int, help="the new number of latent channels (default: tied to N)")
    p.add_argument("--out", type=Path, required=True, help="the widened weights.pt (sidecar beside it)")
    p.add_argument("--latent-scale", type=float, default=_SMALL_LATENT,
                   help="scale of the analysis weights into new latent channels")
    p.add_argument("--read-scale", type=float, default=_SMALL_READ,
                   help="scale of the weights reading new latent channels")
    p.add_argument("--new-scale", type=float, default=0.0,
                   help="initial hyperprior scale of new latent channels (0: the smallest)")
    args = p.parse_args(argv)
    if args.n is None and args.m is None:
        p.error("give --n, --m or both")
    meta = json.loads(args.weights.with_suffix(".json").read_text())
    config = DMENetConfig.from_dict(meta["config"])
    try:
        target = widened_config(config, args.n, args.m)
    except ValueError as exc:
        p.error(str(exc))
    state, sha = read_state(args.weights)
    wide = widen(state, config, target.n, m=target.m, latent_scale=args.latent_scale,
                 read_scale=args.read_scale, new_scale=args.new_scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wide, args.out)
    meta = dict(meta, config=target.to_dict(), widened_from_sha256=sha, widened_from_n=config.n,
                widened_from_latent=config.latent,
                widen_scales={"latent": args.latent_scale, "read": args.read_scale,
                              "new_scale": args.new_scale})
    meta.pop("sha256", None)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    print(f"wrote {args.out}: N = {config.n} -> {target.n}, latent {config.latent} -> {target.latent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
