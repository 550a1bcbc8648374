"""The one exception type the geo layer raises for bad input or a failed write."""

from __future__ import annotations

__all__ = ["GeoError"]


class GeoError(ValueError):
    """A problem with a raster, a store, an area of interest or an option (message is one line)."""
