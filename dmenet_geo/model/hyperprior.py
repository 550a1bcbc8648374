"""The hyperprior of Table 2: hyper encoder, hyper decoder, and the head that turns the hyper
decoder's features into the mean and scale of each latent (LSM, or a 1x1 convolution without it).

The layer order fixes the state-dict keys (``h_a.0`` ... ``entropy_parameters.head``) that shipped
weights and :mod:`pipelines.widen` rely on.
"""

from __future__ import annotations

from torch import Tensor, nn

from dmenet_geo.model.layers import LSM

__all__ = ["hyper_encoder", "hyper_decoder", "EntropyParameters"]


def hyper_encoder(n: int, latent: int) -> nn.Sequential:
    """``y`` (``latent`` channels) to ``z`` (n channels) at a quarter of its resolution."""
    return nn.Sequential(
        nn.Conv2d(latent, n, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, n, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, n, 3, stride=2, padding=1),
    )


def hyper_decoder(n: int) -> nn.Sequential:
    """``z_hat`` back to ``y``'s resolution, n feature channels."""
    return nn.Sequential(
        nn.ConvTranspose2d(n, n, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(n, n, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(n, n, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class EntropyParameters(nn.Module):
    """Hyper decoder followed by LSM, or by a 1x1 head when LSM is switched off; the parameters are
    for ``latent`` channels."""

    def __init__(self, n: int, use_lsm: bool, latent: int) -> None:
        super().__init__()
        self.h_s = hyper_decoder(n)
        self.head: nn.Module = LSM(n, 2 * latent) if use_lsm else nn.Conv2d(n, 2 * latent, 1)

    def forward(self, z_hat: Tensor) -> Tensor:
        """The raw parameters, (B, 2 * latent, H, W): scales then means."""
        return self.head(self.h_s(z_hat))
