"""What ``pipelines/complexity.py`` counts in a model: parameters and FLOPs by part, and the MACs of the
deformable convolutions that ``torch.utils.flop_counter`` does not see."""

from __future__ import annotations

from typing import Any


def deform_conv_macs(model: Any, x: Any) -> int:
    """MACs of every SEB deformable convolution for input ``x`` (kernel + bilinear sampling)."""
    import torch

    from dmenet_geo.model.layers import SEB

    shapes: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda _m, inp, _out: shapes.append(tuple(inp[0].shape)))
        for m in model.modules()
        if isinstance(m, SEB)
    ]
    try:
        with torch.no_grad():
            _forward_for_flops(model, x)
    finally:
        for hook in hooks:
            hook.remove()
    macs = 0
    for b, c, h, w in shapes:
        macs += b * h * w * c * c * 9  # the 3x3 kernel (C_out = C_in = c)
        macs += b * h * w * c * 9 * 4  # bilinear interpolation of each sampled input value
    return macs


def _forward_for_flops(model: Any, x: Any) -> Any:
    """g_a -> h_a -> entropy parameters (from rounded z) -> g_s (from rounded y), float32."""
    import torch

    y = model.g_a(x)
    z = model.h_a(y)
    _scales, means = model.entropy_parameters(torch.round(z)).chunk(2, dim=1)
    return model.g_s(torch.round(y - means) + means)


def count_flops(model: Any, x: Any) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of each part's forward for input ``x``, as FlopCounterMode counts them."""
    from dmenet_geo.model.layers import SEB

    # SEB through torchvision's deform_conv2d, which FlopCounterMode does not see (its MACs are added
    # analytically): the CPU gathered path would be counted as a matrix product on top
    gathered, SEB.gathered_on_cpu = SEB.gathered_on_cpu, False
    try:
        return _count_parts(model, x)
    finally:
        SEB.gathered_on_cpu = gathered


def _count_parts(model: Any, x: Any) -> dict[str, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    parts: dict[str, int] = {}
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y)
        z_hat = torch.round(z)
        _scales, means = model.entropy_parameters(z_hat).chunk(2, dim=1)
        y_hat = torch.round(y - means) + means
        for name, fn, arg in [
            ("g_a", model.g_a, x),
            ("h_a", model.h_a, y),
            ("entropy_parameters", model.entropy_parameters, z_hat),
            ("g_s", model.g_s, y_hat),
        ]:
            with FlopCounterMode(display=False) as counter:
                fn(arg)
            parts[name] = int(counter.get_total_flops())
        if getattr(model, "context", None) is not None:  # both checkerboard passes (or all stages)
            params = model.entropy_parameters(z_hat)
            with FlopCounterMode(display=False) as counter:
                model.context.staged(params, y)
            parts["context"] = int(counter.get_total_flops())
        if getattr(model, "post_filter", None) is not None:  # on the clamped synthesis, as decoded
            x_hat = model.g_s(y_hat).clamp(0, 1)
            quality = torch.full((x.shape[0],), float(model.config.levels))
            with FlopCounterMode(display=False) as counter:
                model.post_filter(x_hat, quality)
            parts["post_filter"] = int(counter.get_total_flops())
    return parts


def params_by_part(model: Any) -> dict[str, int]:
    """Parameters of each part of the model; ``gains_and_other`` is the rest."""
    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    ep = model.entropy_parameters
    total = count(model)
    parts = {
        "g_a": count(model.g_a),
        "g_s": count(model.g_s),
        "h_a": count(model.h_a),
        "h_s": count(ep.h_s),
        "lsm_or_head": count(ep.head),
        "entropy_bottleneck": count(model.entropy_bottleneck),
    }
    if getattr(model, "context", None) is not None:
        parts["context"] = count(model.context)
    if getattr(model, "post_filter", None) is not None:
        parts["post_filter"] = count(model.post_filter)
    parts["gains_and_other"] = total - sum(parts.values())
    return parts
