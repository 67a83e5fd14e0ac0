"""Turning a router's class probabilities into a long side in pixels."""

from __future__ import annotations

import math
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_BINS: tuple[int, ...] = (384, 768, 1024)
"""The CARES resolution set R (long side in pixels)."""


class ResolutionPolicy(BaseModel):
    """Bins, discrete or continuous selection, and clamps.

    ``continuous`` (the default) takes the expectation sum_k p_k * r_k over the bins, as in the
    CARES paper; ``discrete`` takes the most probable bin. ``min_long_side``/``max_long_side``
    clamp the result; the image's own long side always caps it (we never upscale).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bins: tuple[int, ...] = Field(default=DEFAULT_BINS, description="Long sides (pixels) the classes stand for.")
    mode: Literal["continuous", "discrete"] = Field(default="continuous", description="How to pick a long side.")
    min_long_side: int | None = Field(default=None, description="Never ask for less than this.")
    max_long_side: int | None = Field(default=None, description="Never ask for more than this.")

    @field_validator("bins")
    @classmethod
    def _bins_sorted_positive(cls, bins: tuple[int, ...]) -> tuple[int, ...]:
        if not bins:
            raise ValueError("bins must hold at least one long side")
        if any(int(b) <= 0 for b in bins):
            raise ValueError(f"bins must be positive pixel sizes, got {bins}")
        if list(bins) != sorted(bins) or len(set(bins)) != len(bins):
            raise ValueError(f"bins must be strictly increasing, got {bins}")
        return tuple(int(b) for b in bins)

    @model_validator(mode="after")
    def _clamps_ordered(self) -> "ResolutionPolicy":
        if self.min_long_side is not None and self.max_long_side is not None:
            if self.min_long_side > self.max_long_side:
                raise ValueError(
                    f"min_long_side ({self.min_long_side}) is above max_long_side ({self.max_long_side})"
                )
        return self

    def raw_long_side(self, probabilities: Sequence[float]) -> float:
        """The long side before clamps: argmax bin (discrete) or expectation (continuous)."""
        probs = [float(p) for p in probabilities]
        if len(probs) != len(self.bins):
            raise ValueError(f"got {len(probs)} probabilities for {len(self.bins)} bins {self.bins}")
        if any(not math.isfinite(p) or p < 0 for p in probs) or sum(probs) <= 0:
            raise ValueError(f"probabilities must be finite, non-negative and not all zero: {probs}")
        total = sum(probs)
        probs = [p / total for p in probs]
        if self.mode == "discrete":
            return float(self.bins[max(range(len(probs)), key=probs.__getitem__)])
        return float(sum(p * r for p, r in zip(probs, self.bins)))

    def clamp(self, long_side: float, image_long_side: int) -> int:
        """Round up to whole pixels, apply the clamps, and cap at the image's own long side."""
        value = int(math.ceil(long_side - 1e-9))
        if self.min_long_side is not None:
            value = max(value, self.min_long_side)
        if self.max_long_side is not None:
            value = min(value, self.max_long_side)
        return max(1, min(value, int(image_long_side)))

    def long_side(self, probabilities: Sequence[float], image_long_side: int) -> int:
        """The long side to ask for, given class probabilities and the image's long side."""
        return self.clamp(self.raw_long_side(probabilities), image_long_side)
