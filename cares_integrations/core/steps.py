"""Cost steps: decide in each target's own price steps, and say when routing cannot save.

A target charges in steps: OpenAI's low detail (85 tokens for gpt-4o), then 1, 2, 4 ... tiles;
Gemini 3's four media-resolution levels; Claude's and Qwen's patch grids; InternVL's tile counts
per ``max_num``. :func:`plan` turns a router's requested long side into the cheapest step whose
*legible* long side (what the provider keeps of the image, :func:`legible_long_side`) meets the
request, and returns the size to send, the knobs that select the step (OpenAI ``detail``,
Gemini ``media_resolution``, processor arguments), and, when nothing cheaper than the
provider's own processing of the original meets the request, why routing cannot save here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .geometry import fit_long_side
from .sizing import send_size
from .tokens import CostModel, get_target

__all__ = ["CostStep", "SizingPlan", "cost_steps", "legible_long_side", "plan"]


def legible_long_side(model: CostModel, width: int, height: int) -> int:
    """The long side, in image pixels, of what ``model`` keeps of an image sent at (width, height).

    The provider's processed size divided back into the aspect-kept image: a 1700x2200 page that
    OpenAI processes at 768x994 keeps 994 px; any size at low detail keeps at most 512.
    """
    pw, ph = model.processed_size(width, height)
    scale = min(pw / width, ph / height, 1.0)
    return max(1, math.floor(scale * max(width, height) + 1e-6))


@dataclass(frozen=True)
class CostStep:
    """One price step of a target for one image: its tokens, what it keeps, and how to ask for it."""

    label: str
    tokens: int
    legible_long_side: int
    knobs: dict[str, Any] = field(default_factory=dict)
    knob_kind: str | None = None


@dataclass(frozen=True)
class SizingPlan:
    """What :func:`plan` decided: the size to send, its step and knobs, and why nothing was saved."""

    send_size: tuple[int, int]
    tokens_before: int
    tokens_after: int
    step: CostStep
    cannot_save: str | None = None

    @property
    def request_knobs(self) -> dict[str, Any]:
        """Provider request fields to write into the image block (``detail``, ``media_resolution``)."""
        return dict(self.step.knobs) if self.step.knob_kind == "request" else {}

    @property
    def processor_kwargs(self) -> dict[str, Any]:
        """Local processor arguments that realise the step (``max_num``, ``longest_edge``, pixels)."""
        return dict(self.step.knobs) if self.step.knob_kind == "processor" else {}


def _step(model: CostModel, size: tuple[int, int]) -> CostStep:
    return CostStep(
        label=model.step_label(*size),
        tokens=model.tokens(*size),
        legible_long_side=legible_long_side(model, *size),
        knobs=model.knobs_for(*size),
        knob_kind=model.knob_kind,
    )


def cost_steps(width: int, height: int, target: str | CostModel, *, samples: int = 192) -> list[CostStep]:
    """The distinct prices ``target`` offers for this image, cheapest first, each with the most it keeps.

    Scans each knob setting over long sides from small to the original (``samples`` sizes per
    setting, plus the exact original) and keeps the Pareto front: every step costs more than the
    one before and keeps more pixels.
    """
    model = get_target(target)
    long_ = max(width, height)
    stride = max(1, long_ // samples)
    found: dict[int, CostStep] = {}
    for variant in model.variants():
        for side in (*range(stride, long_, stride), long_):
            step = _step(variant, fit_long_side(width, height, side))
            old = found.get(step.tokens)
            if old is None or step.legible_long_side > old.legible_long_side:
                found[step.tokens] = step
    front: list[CostStep] = []
    for step in sorted(found.values(), key=lambda s: (s.tokens, -s.legible_long_side)):
        if not front or step.legible_long_side > front[-1].legible_long_side:
            front.append(step)
    return front


def _why_no_saving(model: CostModel, width: int, height: int, long_side: int, chosen: CostStep) -> str:
    name = model.name
    steps = cost_steps(width, height, model)
    if len(steps) <= 1 and len({s.tokens for s in steps}) <= 1:
        return (
            f"cannot save on {name}: it charges {chosen.tokens} tokens for this image at every size"
            + (" and knob setting" if len(model.variants()) > 1 else "")
            + "; only a different target or knob changes the price"
        )
    cheaper = [s for s in steps if s.tokens < chosen.tokens]
    if not cheaper:
        return f"cannot save on {name}: the image already costs its cheapest step ({chosen.label}, {chosen.tokens} tokens)"
    below = cheaper[-1]
    pw, ph = model.processed_size(width, height)
    return (
        f"cannot save on {name}: the router asks for {long_side} px and {model.provider} processes this "
        f"image at {pw}x{ph} ({chosen.tokens} tokens) anyway; the next cheaper step ({below.label}, "
        f"{below.tokens} tokens) keeps only {below.legible_long_side} px"
    )


def plan(
    width: int,
    height: int,
    long_side: int,
    target: str | CostModel,
    *,
    free_detail: bool = True,
) -> SizingPlan:
    """The cheapest step of ``target`` that keeps at least ``long_side`` px of a (width, height) image.

    For each knob setting up to the target's cap, sizing (:func:`~.sizing.send_size`) gives the
    size to send; the setting whose legible long side reaches the request (or the most the
    target keeps of the original, when that is less) and costs the fewest tokens wins, ties going
    to the one that keeps more. The price without routing, ``tokens_before``, is the target's
    own processing of the original at its cap.
    """
    model = get_target(target)
    tokens_before = model.tokens(width, height)
    need = min(long_side, legible_long_side(model, width, height))
    best: tuple[int, int, int] | None = None
    chosen: tuple[CostModel, tuple[int, int], CostStep] | None = None
    variants = model.variants()
    for i, variant in enumerate(variants):
        # the requested size, and the largest one (a tile grid chosen by aspect may only keep
        # enough of the page when it is sent larger)
        first = send_size(width, height, long_side, variant, free_detail=free_detail)
        sizes = {first}
        if len(variants) > 1 and (free_detail or legible_long_side(variant, *first) + 1 < need):
            kept = legible_long_side(variant, width, height)  # no more than the provider keeps of the original
            sizes.add(send_size(width, height, kept, variant, free_detail=free_detail))
        for size in sorted(sizes):
            step = _step(variant, size)
            short = step.legible_long_side + 1 < need
            if short and variant is not variants[-1]:
                continue
            # the cap falling short is still the answer when nothing else meets the request
            key = (10**12, -step.legible_long_side, i) if short else (step.tokens, -step.legible_long_side, i)
            if best is None or key < best:
                best, chosen = key, (variant, size, step)
    assert chosen is not None
    _, size, step = chosen
    reason = None
    if step.tokens >= tokens_before:
        reason = _why_no_saving(model, width, height, long_side, step)
    return SizingPlan(send_size=tuple(size), tokens_before=tokens_before, tokens_after=step.tokens, step=step,
                      cannot_save=reason)
