"""Provider-aware sizing: the exact (width, height) to send for a router's requested long side.

A router asks for at least ``min_long_side`` pixels on the long side. Without a target the image
is scaled to that (never up). With a target, :func:`send_size` also

1. sends no pixel the provider would throw away: if the provider downscales the requested size
   (or rounds it down to its grid), the provider's own processed size is sent instead, and no
   growth goes past what the provider keeps of the original image;
2. snaps to the target's grid when the token count stays the same: to exactly the size a
   rounding provider processes (Qwen), and sides up to the grid where a provider pads (a Claude
   side padded from 1000 to 1008 px costs the same as 1008 real pixels), changing the aspect
   ratio by at most :data:`MAX_DISTORTION`;
3. with ``free_detail``, grows the image (aspect kept, never above the original) to the largest
   size whose token count is no more than that of the requested size.

Steps run in the order 1, 3, 2, so the snap applies to the grown size.

The result never costs more tokens than the plain requested size, never exceeds the original,
and keeps the long side at the requested minimum unless the original or the provider's own
processing is smaller.
"""

from __future__ import annotations

import math

from .geometry import fit_long_side
from .tokens import CostModel, get_target

__all__ = ["MAX_DISTORTION", "send_size"]

MAX_DISTORTION = 0.02
"""Largest change of aspect ratio (relative) a snap may make: 2% stretches nothing a reader or a
model notices, and keeps returned coordinates within 2% per axis of the aspect-true image."""


def _distortion(size: tuple[int, int], width: int, height: int) -> float:
    """Relative change of aspect ratio of ``size`` against width:height."""
    return abs(math.log((size[0] * height) / (size[1] * width)))


def _fits(size: tuple[int, int], bound: tuple[int, int]) -> bool:
    return size[0] <= bound[0] and size[1] <= bound[1]


def _cap_long_side(model: CostModel, width: int, height: int) -> int:
    """The long side beyond which the provider discards what we send (never above the original).

    It is the largest aspect-kept size that fits inside what the provider makes of the original.
    """
    processed = model.processed_size(width, height)
    long_ = max(width, height)
    cap = max(1, min(long_, math.floor(min(processed[0] / width, processed[1] / height) * long_ + 1e-9)))
    while cap < long_ and _fits(fit_long_side(width, height, cap + 1), processed):
        cap += 1
    return cap


def _same_view(processed: tuple[int, int], size: tuple[int, int], grid: int | None) -> bool:
    """True when the provider's processed size is ``size`` scaled (aspect kept within
    :data:`MAX_DISTORTION`) or each side rounded to the nearest multiple of its grid."""
    if _distortion(processed, *size) <= MAX_DISTORTION:
        return True
    return bool(grid) and all(abs(p - s) <= grid // 2 for p, s in zip(processed, size))


def _ceil_to(value: int, grid: int) -> int:
    return -(-value // grid) * grid


def send_size(
    width: int,
    height: int,
    min_long_side: int,
    target: str | CostModel | None = None,
    *,
    free_detail: bool = True,
) -> tuple[int, int]:
    """The (width, height) to send for an image when a router asks for ``min_long_side``.

    ``target`` is a registered target name or a :class:`~cares_integrations.tokens.CostModel`;
    None returns :func:`~cares_integrations.core.geometry.fit_long_side`. With a target the result never costs more visual tokens than
    the base size, never exceeds the original, and keeps its long side at least
    ``min(min_long_side, max(width, height))`` unless the provider itself processes the base size
    smaller (then at least the provider's processed long side).
    """
    base = fit_long_side(width, height, min_long_side)
    if target is None:
        return base
    model = get_target(target)
    budget = model.tokens(*base)

    def ok(size: tuple[int, int]) -> bool:
        return _fits(size, (width, height)) and model.tokens(*size) <= budget

    # (1) Never above what the provider processes: if it shrinks the base (aspect kept, or only
    # rounded to its grid), send its processed size.
    grid = model.grid
    start = base
    processed = model.processed_size(*base)
    if processed != base and _fits(processed, base) and _same_view(processed, base, grid) and ok(processed):
        start = processed
    floor_long = max(start)  # the long side no later step may go below

    # (3) Free detail: the largest aspect-kept size up to what the provider keeps of the original
    # whose token count stays within the budget. Binary search keeps "lo fits" as its invariant,
    # so the result is always valid; it is the largest such size when the model is monotone.
    size = start
    if free_detail:
        lo = max(start)
        hi = max(lo, _cap_long_side(model, width, height))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(fit_long_side(width, height, mid)):
                lo = mid
            else:
                hi = mid - 1
        grown = fit_long_side(width, height, lo)
        if grown != size and _fits(size, grown) and ok(grown):  # only ever adds pixels
            size = grown

    # (2) Snap to the grid. First to exactly what a rounding provider will process (Qwen rounds each
    # side to the nearest multiple of 28): no resampling on its side, same tokens. Then sides up to
    # the grid where the provider pads (Claude, OpenAI patches): real pixels instead of padding.
    if grid:
        processed = model.processed_size(*size)
        if (
            processed != size
            and _same_view(processed, size, grid)
            and max(processed) >= floor_long
            and ok(processed)
        ):
            size = processed
        w, h = size
        candidates = {(_ceil_to(w, grid), _ceil_to(h, grid)), (_ceil_to(w, grid), h), (w, _ceil_to(h, grid))}
        for cand in sorted(candidates, key=lambda c: -(c[0] * c[1])):
            if (
                cand != size
                and ok(cand)
                and _distortion(cand, width, height) <= MAX_DISTORTION
                and model.processed_size(*cand) == cand
            ):
                size = cand
                break

    if model.tokens(*size) > budget or not _fits(size, (width, height)):  # defensive: never worse than base
        return base
    return size
