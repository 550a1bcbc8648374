"""DMENet (Shi et al.) as a variable-rate CompressAI model with exact entropy decoding.

Encoder ``g_a``: C blocks 1-2, SDPM, C blocks 3-4 (Table 1). Decoder ``g_s``: R blocks 4-3, SDPM,
R blocks 2-1. Hyper encoder / decoder per Table 2, then LSM turns the hyper decoder's features into
the mean and scale of a conditional Gaussian for ``y``; ``z`` goes through a factorised entropy
bottleneck. See :mod:`dmenet_geo.model.layers` for the choices the paper leaves open.

Beyond the paper:

* **Variable rate** with gain units (Cui et al., CVPR 2021), see :mod:`dmenet_geo.model.gains`.
* **Checkerboard context** (``config.context``, He et al., CVPR 2021): half of the latent is coded
  with parameters that also see the other, already decoded half; see
  :mod:`dmenet_geo.model.context` and :mod:`dmenet_geo.model.latent_coding`.
* **Exact decoding** (:mod:`dmenet_geo.model.exact`). The entropy parameters are computed from
  ``z_hat`` by a float64 copy of the hyper decoder and LSM on the CPU, whatever the model's device;
  the means are rounded to a 1/64 grid and the scale indexes are found in float64. Encoder and
  decoder therefore derive the same CDF indexes and the same ``y_hat`` on any thread count, batch
  size or device, and
  :attr:`CompressedLatents.digests` (a CRC32 of each item's integer symbols) lets a container check
  that the latents decoded exactly. The synthesis transform also runs in float64 when decoding:
  float32 convolutions on the CPU give different low bits for different batch sizes and thread
  counts (measured here: the same latents decoded alone and in a batch of 16 rounded to different
  uint8 pixels), while float64 differences (~1e-16) practically never cross a rounding boundary.
* **Post-filter** (``config.post_filter``): a small residual network on the decoded picture, run
  in float64 when decoding; see :mod:`dmenet_geo.model.postfilter`.
* **Batch-independent encoding** on the CPU: the analysis runs one image at a time, so a chunk's
  bytes do not depend on the chunks batched with it; they can still change with the thread count.
* Training uses additive noise for the rate and straight-through rounding for the decoder input;
  ``forward(..., hard=True)`` counts the rounded symbols' bits instead (encoder fine-tuning).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models.base import CompressionModel, get_scale_table
from torch import Tensor, nn

from dmenet_geo.model.config import DMENetConfig
from dmenet_geo.model.context import CheckerboardContext
from dmenet_geo.model.exact import ExactPath
from dmenet_geo.model.gains import initial_log_gains, interpolate_gains, quality_tensor
from dmenet_geo.model.hyperprior import EntropyParameters, hyper_encoder
from dmenet_geo.model.latent_coding import decode_staged, encode_staged
from dmenet_geo.model.layers import SDPM, CBlock, RBlock
from dmenet_geo.model.postfilter import PostFilter
from dmenet_geo.model.refine import refine_latents
from dmenet_geo.model.rounding import ste_round

__all__ = ["DMENet", "ForwardResult", "CompressedLatents", "STRIDE"]

STRIDE = 64


@dataclass
class ForwardResult:
    """Training-time output: reconstruction and the likelihoods of ``y`` and ``z``."""

    x_hat: Tensor
    likelihoods_y: Tensor
    likelihoods_z: Tensor


@dataclass
class CompressedLatents:
    """Entropy-coded tiles of one batch (all of the same size)."""

    y_strings: list[bytes]
    z_strings: list[bytes]
    z_shape: tuple[int, int]
    image_shape: tuple[int, int]
    qualities: list[float]
    digests: list[int]


class DMENet(ExactPath, CompressionModel):
    """DMENet with gain units. ``quality`` is a float in ``[1, config.levels]``."""

    def __init__(self, config: DMENetConfig | None = None) -> None:
        super().__init__()
        self.config = config or DMENetConfig()
        n, m = self.config.n, self.config.latent
        q, h, t = n // 4, n // 2, 3 * n // 4
        sdpm_enc: nn.Module = SDPM(h) if self.config.use_sdpm else nn.Identity()
        sdpm_dec: nn.Module = SDPM(h) if self.config.use_sdpm else nn.Identity()
        self.g_a = nn.Sequential(CBlock(3, q, 7), CBlock(q, h, 3), sdpm_enc, CBlock(h, t, 3), CBlock(t, m, 3))
        self.g_s = nn.Sequential(RBlock(m, t), RBlock(t, h), sdpm_dec, RBlock(h, q), RBlock(q, 3))
        self.h_a = hyper_encoder(n, m)
        self.entropy_parameters = EntropyParameters(n, self.config.use_lsm, m)
        with_context = self.config.context == "checkerboard"
        self.context = CheckerboardContext(m, self.config.context_groups) if with_context else None
        pf = self.config.post_filter
        self.post_filter = PostFilter(pf, self.config.levels) if pf else None
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.gaussian_conditional = GaussianConditional(None)
        # Gain units, stored as log-gains; initial spread follows sqrt(lambda) (step ~ 1/gain).
        init = initial_log_gains(self.config.lambdas, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self.log_hyper_gain = nn.Parameter(torch.zeros(self.config.levels, n))
        self.log_hyper_inv_gain = nn.Parameter(torch.zeros(self.config.levels, n))
        self.weights_sha256: str | None = None  # set by dmenet_geo.model.zoo.load_model
        self.invalidate_exact_cache()  # no float64 copies or rANS coder yet (dmenet_geo.model.exact)

    # ----------------------------------------------------------------- gains
    def _gain(self, table: Tensor, quality: Tensor) -> Tensor:
        return interpolate_gains(table, quality)

    def _qualities(self, quality: float | Sequence[float] | Tensor, batch: int) -> Tensor:
        return quality_tensor(self.config, quality, batch)

    # --------------------------------------------------------------- training
    def forward(
        self, x: Tensor, quality: float | Sequence[float] | Tensor, hard: bool = False
    ) -> ForwardResult:
        """Training pass; ``x`` in [0, 1], size a multiple of 64.

        Rates come from the uniform-noise relaxation, or with ``hard`` from the likelihoods of the
        symbols the coder writes (``y`` and ``z`` rounded around their means and medians, gradients
        straight through), the objective of an encoder fine-tuned for a frozen decoder."""
        q = self._qualities(quality, x.shape[0])
        y = self.g_a(x) * self._gain(self.log_gain, q)
        z = self.h_a(y) * self._gain(self.log_hyper_gain, q)
        z_hat, z_likelihoods = self._hard_z(z) if hard else self.entropy_bottleneck(z)
        params = self.entropy_parameters(z_hat * self._gain(self.log_hyper_inv_gain, q))
        if self.context is not None:
            params = self.context.staged(params, y, straight_through=hard)
        scales, means = params.chunk(2, dim=1)
        y_hat = ste_round(y, means)
        if hard:
            gc = self.gaussian_conditional
            y_likelihoods = gc.likelihood_lower_bound(gc._likelihood(y_hat, scales, means))
        else:
            _, y_likelihoods = self.gaussian_conditional(y, scales, means=means)
        x_hat = self.reconstruct(y_hat * self._gain(self.log_inv_gain, q), q)
        return ForwardResult(x_hat, y_likelihoods, z_likelihoods)

    def reconstruct(self, y_scaled: Tensor, q: Tensor) -> Tensor:
        """The picture from the gain-scaled latent (training precision): the synthesis and, when the
        model has one, the post-filter on the clamped synthesis, as :meth:`decompress` does."""
        x_hat = self.g_s(y_scaled)
        return x_hat if self.post_filter is None else self.post_filter(x_hat.clamp(0, 1), q)

    def _hard_z(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` rounded around the factorised prior's medians (straight through) and its likelihoods."""
        eb = self.entropy_bottleneck
        z_hat = ste_round(z, eb._get_medians().reshape(1, -1, 1, 1))
        flat = z_hat.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1)
        lik = eb.likelihood_lower_bound(eb._likelihood(flat)[0])
        return z_hat, lik.reshape(z.shape[1], z.shape[0], *z.shape[2:]).permute(1, 0, 2, 3)

    def train(self, mode: bool = True) -> DMENet:
        self.invalidate_exact_cache()
        return super().train(mode)

    def _ensure_ready(self) -> None:
        if self.gaussian_conditional._offset.numel() == 0:
            raise RuntimeError("entropy tables are not built: call model.update() first")

    @torch.inference_mode()
    def compress(  # type: ignore[override]
        self, x: Tensor, quality: float | Sequence[float] | Tensor, refine_steps: int = 0
    ) -> CompressedLatents:
        """Entropy-code a batch of images ``x`` (B, 3, H, W) in [0, 1]; any H and W.

        ``refine_steps`` > 0 optimises each latent for its image before coding
        (:mod:`dmenet_geo.model.refine`): slower encoding, fewer bits, same decoder."""
        self._ensure_ready()
        b, _, h, w = x.shape
        q = self._qualities(quality, b)
        pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        device = next(self.parameters()).device
        gain = torch.exp(self._table64(self.log_gain, q)).float().to(device)
        hgain = torch.exp(self._table64(self.log_hyper_gain, q)).float().to(device)
        padded = padded.to(device)
        y, z = self._analysis(padded, gain, hgain)
        if refine_steps:
            y = refine_latents(self, padded, y, q.to(device), refine_steps)
            z = self._hyper_analysis(y, hgain)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        symbols, y_strings = self._code_y(y.float().cpu(), z_hat, q)
        return CompressedLatents(
            y_strings=list(y_strings),
            z_strings=list(z_strings),
            z_shape=(int(z.shape[-2]), int(z.shape[-1])),
            image_shape=(h, w),
            qualities=[float(v) for v in q.tolist()],
            digests=[_digest(s) for s in symbols],
        )

    def _analysis(self, x: Tensor, gain: Tensor, hgain: Tensor) -> tuple[Tensor, Tensor]:
        """``y`` and ``z``; on the CPU one image at a time. Float32 CPU convolutions give other low
        bits for other batch sizes, which can flip a rounded latent: a chunk's bytes would depend on
        the chunks batched with it (1 of 48 tiles differed between batches of 16 and of 1). One at
        a time costs the CPU no speed (48 tiles: 1.4 s against 1.8 s in batches of 16, one thread);
        other devices keep the batch."""
        if x.device.type != "cpu":
            y = self.g_a(x) * gain
        else:
            y = torch.cat([self.g_a(x[i : i + 1]) * gain[i : i + 1] for i in range(x.shape[0])])
        return y, self._hyper_analysis(y, hgain)

    def _hyper_analysis(self, y: Tensor, hgain: Tensor) -> Tensor:
        """``z`` from ``y``, one image at a time on the CPU (see :meth:`_analysis`)."""
        if y.device.type != "cpu":
            return self.h_a(y) * hgain
        return torch.cat([self.h_a(y[i : i + 1]) * hgain[i : i + 1] for i in range(y.shape[0])])

    @torch.inference_mode()
    def decompress(self, latents: CompressedLatents) -> tuple[Tensor, list[int]]:  # type: ignore[override]
        """Decode to float64 images (B, 3, H, W) in [0, 1] and the CRC32 digests of the symbols."""
        self._ensure_ready()
        q = self._qualities(latents.qualities, len(latents.y_strings))
        device = next(self.parameters()).device
        z_hat = self.entropy_bottleneck.decompress(latents.z_strings, latents.z_shape)
        symbols, means = self._decode_y(latents.y_strings, z_hat, q)
        digests = [_digest(s) for s in symbols]
        inv = torch.exp(self._table64(self.log_inv_gain, q))
        y_hat = ((symbols.double() + means.double()) * inv).to(device)
        x_hat = self._synthesise64(y_hat, device).clamp_(0, 1)
        if self.post_filter is not None:
            x_hat = self._post_filter64(x_hat, q).clamp_(0, 1)
        h, w = latents.image_shape
        return x_hat[..., :h, :w].cpu(), digests

    # ------------------------------------------------ y entropy coding (rANS)
    def _code_y(self, y: Tensor, z_hat: Tensor, q: Tensor) -> tuple[Tensor, list[bytes]]:
        """Symbols and strings of ``y`` (float32, CPU), with the checkerboard when the model has one."""
        params = self._hyper_params64(z_hat, q)
        if self.context is not None:
            context = cast(CheckerboardContext, self._float64("context", "cpu"))
            return encode_staged(context, self._quantise, self._coder(), y, params)
        indexes, means = self._quantise(params)
        symbols = torch.round(y - means)
        return symbols, [self._coder().encode(symbols[i], indexes[i]) for i in range(symbols.shape[0])]

    def _decode_y(self, strings: Sequence[bytes], z_hat: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """The symbols (float32) of ``strings`` and the means they are centred on."""
        params = self._hyper_params64(z_hat, q)
        if self.context is not None:
            context = cast(CheckerboardContext, self._float64("context", "cpu"))
            return decode_staged(context, self._quantise, self._coder(), strings, params)
        indexes, means = self._quantise(params)
        return self._coder().decode(strings, indexes), means

    def update(
        self, scale_table: Tensor | None = None, force: bool = False, update_quantiles: bool = False
    ) -> bool:
        """Build the entropy coder's CDF tables (they are saved with the weights). Without
        ``scale_table``, the table the weights carry is kept (CompressAI's 64 levels for new ones):
        which table codes the latent is part of the bitstream, so re-exporting must not change it."""
        self.invalidate_exact_cache()
        if scale_table is None:
            carried = self.gaussian_conditional.scale_table
            scale_table = carried.detach().cpu().clone() if carried.numel() else get_scale_table()
        return super().update(
            scale_table=scale_table,
            force=force,
            update_quantiles=update_quantiles,
        )

    def load_state_dict(self, state_dict, strict=True):  # type: ignore[no-untyped-def, override]
        self.invalidate_exact_cache()
        return super().load_state_dict(state_dict, strict=strict)


def _digest(symbols: Tensor) -> int:
    return zlib.crc32(symbols.to(torch.int32).contiguous().numpy().tobytes())
