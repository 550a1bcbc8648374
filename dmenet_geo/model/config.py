"""Architecture and rate configuration of DMENet, validated and JSON round-trippable."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DMENetConfig", "DEFAULT_LAMBDAS", "ConfigError", "CONTEXTS"]

# Eight operating points, geometric from 0.0009 to 0.0483. The scale follows CompressAI's MSE
# convention: loss = bpp + lambda * 255**2 * (MSE + psi * Loss_MDSE) on images in [0, 1]; 0.0483 is
# CompressAI's own quality-6 lambda. The paper's lambdas (0.007..0.660) do not state their scale.
# A wider range is one ``pipelines/train.py --lambdas`` away (it re-targets trained gain tables), but
# at N = 64 the latent (64 channels at 1/16 resolution) saturates near 28-29 dB on aerial RGB, so
# higher lambdas buy bits without quality; see dmenet_geo/weights/default-ecbb8582.md.
DEFAULT_LAMBDAS: tuple[float, ...] = tuple(round(0.0009 * (0.0483 / 0.0009) ** (k / 7), 6) for k in range(8))

CONFIG_ID = "dmenet-model"

# How the latent's entropy parameters are found: the hyperprior alone (the paper), or with a
# checkerboard spatial context (dmenet_geo.model.context).
CONTEXTS: tuple[str, ...] = ("none", "checkerboard")


class ConfigError(ValueError):
    """A model configuration that cannot be built."""


@dataclass(frozen=True)
class DMENetConfig:
    """What a DMENet instance is made of.

    ``n`` is the channel width N of Tables 1-2 (the paper uses 256). ``m``, beyond the paper, is the
    number of latent channels (of ``y``; the paper ties it to N, and ``None`` keeps it so): at
    1/16 of the resolution, ``m`` values stand for the 768 of a 16x16 RGB block, which caps the
    quality the transforms can reach (``pipelines/ceiling.py --klt``). ``lambdas`` holds one
    rate-distortion trade-off per operating point: quality ``q`` in ``[1, len(lambdas)]`` selects
    (and between integers interpolates) the gain vectors trained at those lambdas. A single lambda
    gives a fixed-rate model. ``use_mdei``, ``use_sdpm`` and ``use_lsm`` are the ablation switches.
    ``context`` is ``"none"`` (the paper: the hyperprior alone) or ``"checkerboard"`` (the latent
    coded in stages, each seeing the earlier ones: checkerboard halves of ``context_groups`` channel
    groups, :mod:`dmenet_geo.model.context`). ``post_filter`` > 0 adds a residual filter with that
    many channels after the synthesis (:mod:`dmenet_geo.model.postfilter`); 0 leaves it out.
    """

    n: int = 64
    m: int | None = None
    use_mdei: bool = True
    use_sdpm: bool = True
    use_lsm: bool = True
    lambdas: tuple[float, ...] = field(default=DEFAULT_LAMBDAS)
    psi: float = 0.0185
    context: str = "none"
    context_groups: int = 1
    post_filter: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 8 or self.n % 4:
            raise ConfigError(f"n must be an integer >= 8 divisible by 4, got {self.n!r}")
        if self.m is not None and (not isinstance(self.m, int) or isinstance(self.m, bool) or self.m < 8):
            raise ConfigError(f"m must be an integer >= 8 (or None: m = n), got {self.m!r}")
        try:
            lambdas = tuple(float(v) for v in self.lambdas)
        except (TypeError, ValueError):
            raise ConfigError(f"lambdas must be a list of numbers, got {self.lambdas!r}") from None
        if not lambdas or any(not math.isfinite(v) or v <= 0 for v in lambdas):
            raise ConfigError(f"lambdas must be a non-empty list of positive numbers, got {lambdas}")
        if any(b <= a for a, b in zip(lambdas, lambdas[1:], strict=False)):
            raise ConfigError(f"lambdas must increase strictly, got {lambdas}")
        object.__setattr__(self, "lambdas", lambdas)
        if (
            isinstance(self.psi, bool)
            or not isinstance(self.psi, (int, float))
            or not math.isfinite(self.psi)
        ):
            raise ConfigError(f"psi must be a finite number, got {self.psi!r}")
        if self.psi < 0:
            raise ConfigError(f"psi must be >= 0, got {self.psi}")
        if self.context not in CONTEXTS:
            raise ConfigError(f"context must be one of {', '.join(CONTEXTS)}, got {self.context!r}")
        groups = self.context_groups
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or self.latent % groups:
            raise ConfigError(
                f"context_groups must be a positive divisor of the {self.latent} latent channels, "
                f"got {groups!r}"
            )
        if groups > 1 and self.context == "none":
            raise ConfigError("context_groups > 1 needs context 'checkerboard'")
        pf = self.post_filter
        if not isinstance(pf, int) or isinstance(pf, bool) or not (pf == 0 or 4 <= pf <= 256):
            raise ConfigError(f"post_filter must be 0 (none) or a channel count in 4..256, got {pf!r}")
        for name in ("use_mdei", "use_sdpm", "use_lsm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a boolean")

    @property
    def latent(self) -> int:
        """The number of latent channels: ``m``, or ``n`` when ``m`` is not set."""
        return self.n if self.m is None else self.m

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def check_quality(self, quality: float) -> float:
        """Return ``quality`` as a float, or raise if it is outside ``[1, levels]``."""
        q = float(quality)
        if not (1.0 <= q <= self.levels):
            raise ConfigError(f"quality must be in [1, {self.levels}], got {quality!r}")
        return q

    def lambda_for(self, quality: float) -> float:
        """The lambda a quality stands for (log-linear between operating points)."""
        q = self.check_quality(quality)
        if self.levels == 1:
            return self.lambdas[0]
        lo = min(int(q) - 1, self.levels - 2)
        t = q - 1 - lo
        a, b = self.lambdas[lo], self.lambdas[lo + 1]
        return float(a ** (1 - t) * b**t)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lambdas"] = list(self.lambdas)
        if self.context == "none":  # configs without a context read and write as before
            del data["context"], data["context_groups"]
        if self.m is None:  # nor do those whose latent is N channels wide
            del data["m"]
        if not self.post_filter:  # nor those without a post-filter
            del data["post_filter"]
        return {"id": CONFIG_ID, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DMENetConfig:
        data = dict(data)
        if data.pop("id", None) != CONFIG_ID:
            raise ConfigError(f"not a DMENet model config (id must be {CONFIG_ID!r})")
        unknown = set(data) - {"n", "m", "use_mdei", "use_sdpm", "use_lsm", "lambdas", "psi", "context",
                                 "context_groups", "post_filter"}
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        if "lambdas" in data:
            data["lambdas"] = tuple(data["lambdas"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> DMENetConfig:
        return cls.from_dict(json.loads(text))
