"""Long-side fitting: the one place an image size is scaled with its aspect ratio kept.

Resizing (:mod:`.resize`), provider-aware sizing (:mod:`.sizing`) and the token models
(:mod:`.tokens`) all scale sizes through :func:`fit_long_side`, so a size the router decides, the
size the resizer writes and the size a cost model assumes a provider processes are the same
integers. One rounding rule everywhere: the exact ratio rounded to the nearest pixel, halves up,
in integer arithmetic (no float error at a tie). Standard library only.
"""

from __future__ import annotations

import bisect
import operator
from typing import Sequence

__all__ = ["fit_long_side", "round_ratio", "snap_long_side"]


def _positive_int(label: str, value: object) -> int:
    """``value`` as an int, or ValueError naming it unless it is a positive whole number."""
    if isinstance(value, bool):
        raise ValueError(f"{label} must be a positive int, got {value!r}")
    try:
        number = operator.index(value)  # ints and numpy integers; floats are refused
    except TypeError:
        raise ValueError(f"{label} must be a positive int, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{label} must be a positive int, got {value!r}")
    return number


def round_ratio(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest int, halves up, exactly."""
    return (2 * numerator + denominator) // (2 * denominator)


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is ``long_side``, aspect kept, never upscaled.

    The short side is ``short * long_side / long`` rounded halves up, and at least 1. Raises
    ValueError naming the value unless all three are positive ints.
    """
    width = _positive_int("width", width)
    height = _positive_int("height", height)
    long_side = _positive_int("long_side", long_side)
    long_ = max(width, height)
    if long_side >= long_:
        return width, height
    if width >= height:
        return long_side, max(1, round_ratio(height * long_side, long_))
    return max(1, round_ratio(width * long_side, long_)), long_side


def snap_long_side(requested: float, grid: Sequence[int], native_long: int) -> int:
    """The long side actually sent for a request on a size ladder: the smallest ``grid`` size
    >= ``requested``; the page's own long side when no grid size is that large or the chosen size
    is not below the page. ``grid`` is sorted ascending. Used by every router that sends only
    ladder sizes (the calibrated router, the text-scale default)."""
    j = bisect.bisect_left(list(grid), requested - 1e-9)
    if j >= len(grid) or grid[j] >= native_long:
        return int(native_long)
    return int(grid[j])
