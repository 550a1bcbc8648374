"""The reproducible half of DMENet's coder: what encoder and decoder must compute bit for bit alike.

The entropy parameters of ``y`` come from ``z_hat`` through a float64 copy of the hyper decoder and
LSM on the CPU, whatever the model's device; the means are rounded to a 1/:data:`MEAN_GRID` grid and
the scale indexes found in float64. The synthesis runs in float64 when decoding. The float64 copies
and the rANS coder are built once and cached; :meth:`ExactPath.invalidate_exact_cache` drops them
after the weights change, and copies of the model leave them behind.
"""

from __future__ import annotations

import copy

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from dmenet_geo.model.gains import interpolate_gains
from dmenet_geo.model.latent_coding import SymbolCoder

__all__ = ["ExactPath", "MEAN_GRID"]

MEAN_GRID = 64.0


class ExactPath:
    """Mixed into :class:`dmenet_geo.model.dmenet.DMENet` (an ``nn.Module`` with these attributes)."""

    gaussian_conditional: GaussianConditional
    log_hyper_inv_gain: nn.Parameter
    _copies64: dict[tuple[str, str], nn.Module]
    _symbol_coder: SymbolCoder | None

    def invalidate_exact_cache(self) -> None:
        """Call after changing weights in place (the float64 copies are rebuilt on next use)."""
        self._copies64 = {}
        self._symbol_coder = None

    def __getstate__(self) -> dict[str, object]:
        """Copies (``copy.deepcopy``) leave the caches behind: the rANS coder cannot be copied."""
        return {**self.__dict__, "_copies64": {}, "_symbol_coder": None}

    def _float64(self, name: str, device: torch.device | str) -> nn.Module:
        """A frozen float64 copy of the submodule ``name`` on ``device``, built once."""
        key = (name, str(torch.device(device)))
        module = self._copies64.get(key)
        if module is None:
            module = copy.deepcopy(getattr(self, name)).to(device, torch.float64).eval()
            for p in module.parameters():
                p.requires_grad_(False)
            self._copies64[key] = module
        return module

    def _coder(self) -> SymbolCoder:
        if self._symbol_coder is None:
            self._symbol_coder = SymbolCoder(self.gaussian_conditional)
        return self._symbol_coder

    def _one_at_a_time64(self, name: str, x: Tensor, *per_item: Tensor) -> Tensor:
        """The float64 copy of submodule ``name`` on ``x`` (and ``per_item``, batched alike), one image
        at a time on the CPU: float64 convolutions allocate column buffers for the whole batch (151 MB
        for one layer of ``g_s`` for a batch of 8 at N = 128), which made a chunk decode 10-20 %
        slower in a batch than alone."""
        module = self._float64(name, x.device)
        if x.device.type != "cpu":
            return module(x, *per_item)
        return torch.cat([module(x[i : i + 1], *(t[i : i + 1] for t in per_item)) for i in range(x.shape[0])])

    def _synthesise64(self, y_hat: Tensor, device: torch.device) -> Tensor:
        """``g_s`` in float64 on ``device`` (see :meth:`_one_at_a_time64`)."""
        return self._one_at_a_time64("g_s", y_hat.to(device))

    def _post_filter64(self, x_hat: Tensor, q: Tensor) -> Tensor:
        """The post-filter in float64 (see :meth:`_one_at_a_time64`)."""
        return self._one_at_a_time64("post_filter", x_hat, q.to(x_hat.device))

    def _table64(self, table: Tensor, q: Tensor) -> Tensor:
        """Interpolated log-gains computed in float64 on the CPU (reproducible)."""
        return torch.log(interpolate_gains(table.detach().to("cpu", torch.float64), q))

    def _hyper_params64(self, z_hat: Tensor, q: Tensor) -> Tensor:
        """The hyperprior's raw (scales, means), float64 on the CPU."""
        inv = torch.exp(self._table64(self.log_hyper_inv_gain, q))
        return self._float64("entropy_parameters", "cpu")(z_hat.detach().to("cpu", torch.float64) * inv)

    def _quantise(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Scale indexes (int32) and grid-rounded means (float32) from float64 raw parameters."""
        scales, means = params.chunk(2, dim=1)
        means = torch.round(means * MEAN_GRID) / MEAN_GRID
        table = self.gaussian_conditional.scale_table.detach().to("cpu", torch.float64)
        scales = torch.clamp(scales, min=float(table[0]))
        indexes = torch.searchsorted(table[:-1].contiguous(), scales.contiguous(), side="left")
        return indexes.int(), means.float()

    def _indexes_and_means(self, z_hat: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """Scale indexes and means from the hyperprior alone (every position without a context,
        the anchors' hyperprior part with one)."""
        return self._quantise(self._hyper_params64(z_hat, q))
