"""The text table of ``pipelines/complexity.py``: the paper's Table 3 next to the measured rows."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["PAPER", "format_table"]

# Table 3 of Shi et al. (DMENet), N = 256, input 3 x 256 x 256, NVIDIA GeForce RTX 3090.
PAPER = {
    "params_m": 5.30,
    "flops_g": 5.51,
    "memory_gb": 3.1,
    "compress_s": 0.166,
    "decompress_s": 0.083,
}


def _m(row: dict[str, Any], *parts: str) -> str:
    return f"{sum(row['params_by_part'][p] for p in parts) / 1e6:.2f} M"


def _fmt_mem(num_bytes: int) -> str:
    if num_bytes >= 1 << 30:
        return f"{num_bytes / (1 << 30):.2f} GB"
    return f"{num_bytes / (1 << 20):.0f} MB"


def _pair(row: dict[str, Any], first: str, second: str) -> str:
    """``first / second`` in seconds, or "-" where the row has no such times (an older JSON, no filter)."""
    if row.get(first) is None or row.get(second) is None:
        return "-"
    return f"{row[first]:.3f} s / {row[second]:.3f} s"


def format_table(rows: list[dict[str, Any]], device: str, threads: int, repeats: int) -> str:
    """The Table 3 comparison as fixed-width text (``repeats``: timed runs per median)."""
    headers = ["", "paper DMENet (N=256, RTX 3090)"]
    headers += [f"this, N={r['n']} ({r['weights']})" for r in rows]
    lines_data = [
        ["Parameters", f"{PAPER['params_m']:.2f} M"] + [f"{r['params'] / 1e6:.2f} M" for r in rows],
        ["  g_a + g_s", "-"] + [_m(r, "g_a", "g_s") for r in rows],
        ["  h_a + h_s (hyperprior)", "-"] + [_m(r, "h_a", "h_s") for r in rows],
        ["  LSM (entropy-parameter head)", "-"] + [_m(r, "lsm_or_head") for r in rows],
        ["FLOPs (2 x MAC)", f"{PAPER['flops_g']:.2f} G (unit not stated)"]
        + [f"{r['flops_total'] / 1e9:.2f} G" for r in rows],
        ["MACs", "-"] + [f"{r['macs_total'] / 1e9:.2f} G" for r in rows],
        ["  of which SEB deform_conv2d (analytic)", "-"]
        + [f"{r['deform_conv_macs'] / 1e9:.3f} G" for r in rows],
        ["Peak memory", f"{PAPER['memory_gb']:.1f} GB (GPU)"]
        + [_fmt_mem(r["peak_memory_bytes"]) for r in rows],
        ["Compression time", f"{PAPER['compress_s']:.3f} s"] + [f"{r['compress_s']:.3f} s" for r in rows],
        ["Reconstruction time", f"{PAPER['decompress_s']:.3f} s"]
        + [f"{r['decompress_s']:.3f} s" for r in rows],
        ["  g_s alone, float32 / float64", "-"]
        + [f"{r['g_s_float32_s']:.3f} s / {r['g_s_float64_s']:.3f} s" for r in rows],
        ["  post-filter alone, float32 / float64", "-"]
        + [_pair(r, "post_filter_float32_s", "post_filter_float64_s") for r in rows],
        ["Compressed size (quality q)", "-"]
        + [f"{r['bytes']} B, {r['bpp']:.3f} bpp (q={r['quality']:g})" for r in rows],
    ]
    widths = [max(len(str(row[i])) for row in [headers, *lines_data]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in lines_data]
    cpu = _cpu_name()
    where = f"{device}, {threads} thread(s), {cpu}, torch {_torch_version()}"
    try:
        load = ", load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = ""
    out += [
        "",
        f"Input 3x256x256; measured on {where}{load}. Times: median of {repeats} after a warm-up.",
        "FLOPs: FlopCounterMode over g_a + h_a + entropy parameters + g_s and, where the model has them,",
        "the latent context and the post-filter (convolutions only), plus",
        "SEB's deform_conv2d added analytically (FlopCounterMode does not count it).",
        f"Memory: {rows[0]['memory_kind']}; the paper's figure is GPU memory and not comparable.",
        "Parameters: the whole model (transforms, hyperprior, LSM, entropy bottleneck, gain vectors).",
        "Times: model.compress / model.decompress at the highest quality, including the float64 CPU",
        "entropy-parameter pass and the rANS coder; untrained weights code few non-zero symbols.",
        "'g_s alone' times the synthesis transform in float32 and in a float64 copy; 'post-filter alone'",
        "likewise the post-filter on the input picture.",
    ]
    return "\n".join(out)


def _cpu_name() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_version() -> str:
    import torch

    return torch.__version__
