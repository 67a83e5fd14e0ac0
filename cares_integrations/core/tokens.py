"""Visual-token cost models: how many tokens each provider or open model charges for an image.

Every target is a :class:`CostModel` registered under one or more names. A model answers two
questions about an image of a given (width, height): what size the provider actually processes
after its own resizing (:meth:`CostModel.processed_size`) and how many visual tokens it charges
(:meth:`CostModel.tokens`). Sizing (``cares_integrations.sizing``) uses both to send no more
pixels than the provider keeps and as many as the token count already pays for.

The rules follow each provider's documentation or each model's own processor code; the source of
every rule is named in its class docstring and in ``docs/tokens.md``. Only the standard library
is used.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .errors import UnknownTargetError
from .geometry import fit_long_side, round_ratio

__all__ = [
    "ClaudeCostModel",
    "CostModel",
    "GeminiBudgetCostModel",
    "GeminiTileCostModel",
    "Idefics3CostModel",
    "InternVLCostModel",
    "KnobFamily",
    "LlavaOneVisionCostModel",
    "OpenAIPatchBudgetCostModel",
    "OpenAIPatchCostModel",
    "OpenAITileCostModel",
    "ProviderLimits",
    "QwenVLCostModel",
    "get_target",
    "list_targets",
    "processed_size",
    "register_target",
    "resolve_target",
    "smart_resize",
    "visual_tokens",
]

_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# small exact helpers
# --------------------------------------------------------------------------------------------
def _check_size(width: object, height: object) -> None:
    """Raise ValueError naming the bad value unless both sides are positive ints."""
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{label} must be a positive int, got {value!r}")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ProviderLimits:
    """What a provider rejects, checked before the call (sources in docs/tokens.md).

    ``max_image_base64`` is the largest base64-encoded image (bytes of base64 text); ``max_side``
    the largest side in pixels; ``max_images`` images per request; above ``many_images`` images
    in one request each must fit ``many_images_max_side`` on both sides; ``max_patches`` is a
    32-px patch count above which the provider rejects the image instead of resizing it.
    """

    max_image_base64: int | None = None
    max_side: int | None = None
    max_images: int | None = None
    many_images: int | None = None
    many_images_max_side: int | None = None
    max_patches: int | None = None

    def max_side_for(self, n_images: int) -> int | None:
        """The largest side allowed when a request holds ``n_images`` images."""
        sides = [self.max_side] if self.max_side else []
        if self.many_images is not None and n_images > self.many_images and self.many_images_max_side:
            sides.append(self.many_images_max_side)
        return min(sides) if sides else None


_MB = 1024 * 1024
OPENAI_LIMITS = ProviderLimits(max_image_base64=20 * _MB, max_images=500)
ANTHROPIC_LIMITS = ProviderLimits(
    max_image_base64=5 * _MB, max_side=8000, max_images=600, many_images=20, many_images_max_side=2000
)
GEMINI_LIMITS = ProviderLimits(max_image_base64=20 * _MB, max_images=3600)


# --------------------------------------------------------------------------------------------
# the interface
# --------------------------------------------------------------------------------------------
class CostModel(ABC):
    """How one provider or model counts visual tokens for an image of a given size.

    Subclasses implement ``_processed_size`` and ``_tokens``; the public methods validate the
    size first. Attributes say how sizing may treat the target:

    * ``grid``: the side multiple, in processed pixels, that the token count steps on (a side
      rounded up to it costs nothing more), or None where snapping makes no sense;
    * ``max_long_side``: the long side the provider never goes above, or None;
    * ``monotone``: True when the token count never decreases as the image is scaled up with its
      aspect ratio kept. Several real rules are not monotone (a pixel budget that switches from
      rounding to flooring, a tile grid chosen by aspect ratio); sizing stays correct for them but
      may not find the very largest free size.
    """

    name: str = "unnamed"
    grid: int | None = None
    max_long_side: int | None = None
    monotone: bool = True
    limits: "ProviderLimits | None" = None
    """What the provider refuses (bytes, pixels per side, images per request), enforced before the call."""
    knobs: dict[str, Any] = {}
    """The request knobs (``detail``, ``media_resolution``) or processor arguments (``max_num``,
    ``longest_edge``) that select this cost rule; empty when the rule needs none."""
    knob_kind: str | None = None
    """``"request"`` for provider request fields, ``"processor"`` for local processor arguments."""
    provider: str = "model"
    """Who processes the image, for messages ("OpenAI", "Anthropic", "Gemini", a model name)."""

    def variants(self) -> tuple["CostModel", ...]:
        """The cost rules a request may pick for this target, cheapest knob setting first.

        A plain target has one (itself); a :class:`KnobFamily` has one per knob setting up to its cap.
        """
        return (self,)

    def step_label(self, width: int, height: int) -> str:
        """A short name for the cost step an image sent at (width, height) lands in."""
        pw, ph = self.processed_size(width, height)
        return f"{pw}x{ph} px processed"

    def knobs_for(self, width: int, height: int) -> dict[str, Any]:
        """The knobs that realise this rule for an image sent at (width, height)."""
        return dict(self.knobs)

    def processed_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the provider actually processes after its own resizing."""
        _check_size(width, height)
        return self._processed_size(width, height)

    def tokens(self, width: int, height: int) -> int:
        """Visual tokens the provider charges for an image sent at (width, height)."""
        _check_size(width, height)
        return self._tokens(width, height)

    @abstractmethod
    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        """processed_size for an already validated size."""

    @abstractmethod
    def _tokens(self, width: int, height: int) -> int:
        """tokens for an already validated size."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------
class OpenAITileCostModel(CostModel):
    """OpenAI tile models (GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o1, o3, computer-use-preview).

    ``detail="high"``: fit inside 2048x2048, then scale down so the short side is 768, then
    ``base + per_tile * ceil(w/512) * ceil(h/512)``. ``detail="low"``: a flat ``base`` (the model
    sees a 512-px version). Source: platform.openai.com/docs/guides/images-vision, "Calculating
    costs". Sides are rounded to the nearest pixel after each scaling step; a forum measurement
    (2049x513 billed 8 tiles, 2050x513 billed 4) rules out floor and ceil.
    """

    def __init__(self, name: str, *, base_tokens: int, tile_tokens: int, detail: str = "high") -> None:
        if detail not in ("high", "low"):
            raise ValueError(f"detail must be 'high' or 'low', got {detail!r}")
        self.name = name
        self.base_tokens = base_tokens
        self.tile_tokens = tile_tokens
        self.detail = detail
        self.grid = 512 if detail == "high" else None
        self.max_long_side = 2048 if detail == "high" else 512
        self.knobs = {"detail": detail}
        self.knob_kind = "request"
        self.provider = "OpenAI"
        self.limits = OPENAI_LIMITS

    def step_label(self, width: int, height: int) -> str:
        """``detail=low`` or ``detail=high, N tiles``."""
        if self.detail == "low":
            return "detail=low"
        n = self.tiles(width, height)
        return f"detail=high, {n} tile{'s' if n != 1 else ''}"

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        if self.detail == "low":
            return (width, height) if max(width, height) <= 512 else fit_long_side(width, height, 512)
        w, h = width, height
        if max(w, h) > 2048:
            w, h = fit_long_side(w, h, 2048)
        short, long_ = min(w, h), max(w, h)
        if short > 768:
            long_ = max(1, round_ratio(long_ * 768, short))
            w, h = (long_, 768) if w >= h else (768, long_)
        return w, h

    def tiles(self, width: int, height: int) -> int:
        """Number of 512-px tiles billed in high detail (after the provider's resizing)."""
        w, h = self.processed_size(width, height)
        return _ceil_div(w, 512) * _ceil_div(h, 512)

    def _tokens(self, width: int, height: int) -> int:
        if self.detail == "low":
            return self.base_tokens
        return self.base_tokens + self.tile_tokens * self.tiles(width, height)


class OpenAIPatchCostModel(CostModel):
    """OpenAI patch models (gpt-4.1-mini, gpt-4.1-nano, gpt-5-mini, gpt-5-nano, o4-mini).

    Raw count ``ceil(w/32) * ceil(h/32)``; above 1536 the image is shrunk by
    ``r = sqrt(32*32*1536 / (w*h))``, then ``r`` is cut so one side lands on whole patches, and the
    count is ``ceil(w*r/32) * ceil(h*r/32)`` capped at 1536 (:meth:`patches`). The billed count is
    that times the model's multiplier, rounded up (:meth:`tokens`); rounding up matches forum
    measurements (512x512 at 1.2/patch billed 308, not 307). ``detail`` has no effect on these
    models. Source: platform.openai.com/docs/guides/images-vision, "Calculating costs".
    """

    grid = 32
    monotone = False  # the 1536 cap floors the scaled sides: a size just over it can cost less

    def __init__(self, name: str, *, multiplier: float, patch: int = 32, max_patches: int = 1536) -> None:
        self.name = name
        self.multiplier = multiplier
        self.patch = patch
        self.max_patches = max_patches
        self.grid = patch
        self._multiplier = Fraction(str(multiplier))
        self.provider = "OpenAI"
        self.limits = OPENAI_LIMITS

    def step_label(self, width: int, height: int) -> str:
        """``N patches``."""
        return f"{self.patches(width, height)} patches"

    def _scale(self, width: int, height: int) -> float | None:
        """The documented shrink factor r, or None when the raw patch count is within budget."""
        p = self.patch
        if _ceil_div(width, p) * _ceil_div(height, p) <= self.max_patches:
            return None
        r = math.sqrt(p * p * self.max_patches / (width * height))
        fw, fh = width * r / p, height * r / p
        # max(1, ...) only matters for aspect ratios beyond ~1536:1, where the rule would reach 0.
        return r * min(max(1, math.floor(fw + _EPS)) / fw, max(1, math.floor(fh + _EPS)) / fh)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        r = self._scale(width, height)
        if r is None:
            return width, height
        return max(1, round(width * r)), max(1, round(height * r))

    def patches(self, width: int, height: int) -> int:
        """The raw patch count before the model's multiplier (the documented worked examples)."""
        _check_size(width, height)
        p = self.patch
        r = self._scale(width, height)
        if r is None:
            return _ceil_div(width, p) * _ceil_div(height, p)
        count = math.ceil(width * r / p - _EPS) * math.ceil(height * r / p - _EPS)
        return min(count, self.max_patches)

    def _tokens(self, width: int, height: int) -> int:
        return math.ceil(self.patches(width, height) * self._multiplier)


class OpenAIPatchBudgetCostModel(OpenAIPatchCostModel):
    """OpenAI GPT-5.4 and later: 32-px patches within a budget per ``detail`` level.

    The image is first fitted inside ``max_side`` on its long side, then shrunk to at most
    ``max_patches`` patches by the patch rule of :class:`OpenAIPatchCostModel`; one token per
    patch. gpt-5.4 ``high``: 2,500 patches or 2048 px; ``original``: 10,000 patches or 6000 px.
    ``keep_size=True`` models GPT-5.6's ``original``/``auto``: no resize at all, and an image
    over ``reject_over`` patches is refused with a 400 error (enforced before the call through
    :attr:`limits`). Sources: the OpenAI vision guide's patch budgets and openai-python's
    ``ImageDetail`` (``low``, ``high``, ``auto``, ``original``); see docs/tokens.md.
    """

    def __init__(
        self,
        name: str,
        *,
        detail: str,
        max_patches: int,
        max_side: int | None,
        keep_size: bool = False,
        reject_over: int | None = None,
    ) -> None:
        super().__init__(name, multiplier=1.0, max_patches=max_patches)
        self.detail = detail
        self.max_side = max_side
        self.max_long_side = max_side
        self.keep_size = keep_size
        self.knobs = {"detail": detail}
        self.knob_kind = "request"
        if reject_over is not None:
            self.limits = ProviderLimits(
                max_image_base64=OPENAI_LIMITS.max_image_base64, max_images=OPENAI_LIMITS.max_images,
                max_patches=reject_over,
            )

    def _fit_side(self, width: int, height: int) -> tuple[int, int]:
        if self.keep_size or self.max_side is None:
            return width, height
        return fit_long_side(width, height, self.max_side)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        if self.keep_size:
            return width, height
        return super()._processed_size(*self._fit_side(width, height))

    def patches(self, width: int, height: int) -> int:
        """Patches billed after the side cap and the patch budget (all of them when ``keep_size``)."""
        _check_size(width, height)
        if self.keep_size:
            return _ceil_div(width, self.patch) * _ceil_div(height, self.patch)
        return super().patches(*self._fit_side(width, height))

    def step_label(self, width: int, height: int) -> str:
        """``detail=high, N patches``."""
        return f"detail={self.detail}, {self.patches(width, height)} patches"


class KnobFamily(CostModel):
    """A target whose cost the request picks with a knob: one cost rule per knob setting.

    ``levels`` go from the cheapest setting to the dearest; ``cap`` is the dearest setting a
    request may use (the provider's default when the caller names none, or the caller's own
    ``detail``). Counting and processing delegate to the cap's rule: that is what the provider
    does with an image sent without the router's knob. :meth:`variants` lists the settings up to
    the cap, so the decision can pick the cheapest one that meets the router's request.
    """

    def __init__(self, name: str, levels: Sequence[tuple[str, CostModel]], *, cap: str, provider: str) -> None:
        names = [n for n, _ in levels]
        if cap not in names:
            raise ValueError(f"cap {cap!r} is not one of the levels {names}")
        self.name = name
        self.levels = tuple(levels)
        self.cap = cap
        self.provider = provider
        self._cap_model = dict(self.levels)[cap]
        self.grid = self._cap_model.grid
        self.max_long_side = self._cap_model.max_long_side
        self.monotone = self._cap_model.monotone
        self.limits = self._cap_model.limits
        self.knobs = dict(self._cap_model.knobs)
        self.knob_kind = self._cap_model.knob_kind

    @property
    def level_names(self) -> tuple[str, ...]:
        """The knob settings, cheapest first."""
        return tuple(n for n, _ in self.levels)

    def level(self, name: str) -> CostModel:
        """The cost rule of one setting."""
        return dict(self.levels)[name]

    def with_cap(self, cap: str) -> "KnobFamily":
        """The same family capped at ``cap`` (for example the caller's own ``detail``)."""
        if cap == self.cap:
            return self
        return KnobFamily(f"{self.name.rsplit('@', 1)[0]}@{cap}", self.levels, cap=cap, provider=self.provider)

    def variants(self) -> tuple[CostModel, ...]:
        """The settings up to and including the cap, cheapest first."""
        out = []
        for name, model in self.levels:
            out.append(model)
            if name == self.cap:
                break
        return tuple(out)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        return self._cap_model.processed_size(width, height)

    def _tokens(self, width: int, height: int) -> int:
        return self._cap_model.tokens(width, height)

    def step_label(self, width: int, height: int) -> str:
        """The cap's label."""
        return self._cap_model.step_label(width, height)

    def knobs_for(self, width: int, height: int) -> dict[str, Any]:
        """The cap's knobs."""
        return self._cap_model.knobs_for(width, height)

    def __getattr__(self, attr: str) -> Any:
        # rule-specific helpers (tiles(), patches(), base_tokens ...) answer for the cap's rule
        if attr.startswith("_") or attr in ("levels", "cap"):
            raise AttributeError(attr)
        return getattr(self._cap_model, attr)


# --------------------------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------------------------
class ClaudeCostModel(CostModel):
    """Anthropic Claude: ``ceil(w/28) * ceil(h/28)`` tokens, sides padded to multiples of 28.

    An image over the native resolution (``max_long_side`` px on the long edge or ``max_tokens``
    tokens) is first resized to the largest aspect-preserving size within both limits. Standard
    tier: 1568 px / 1568 tokens; the high-resolution tier of the newest models: 2576 px / 4784.
    Source: platform.claude.com/docs/en/build-with-claude/vision and .../vision-coordinates
    ("How Claude resizes and pads images"). The short side of the resized image is rounded to
    the nearest pixel (the docs do not say how it is rounded).
    """

    grid = 28
    monotone = True

    def __init__(self, name: str, *, max_long_side: int = 1568, max_tokens: int = 1568, patch: int = 28) -> None:
        self.name = name
        self.max_long_side = max_long_side
        self.max_tokens = max_tokens
        self.patch = patch
        self.grid = patch
        self.provider = "Anthropic"
        self.limits = ANTHROPIC_LIMITS

    def _raw(self, width: int, height: int) -> int:
        return _ceil_div(width, self.patch) * _ceil_div(height, self.patch)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        if max(width, height) <= self.max_long_side and self._raw(width, height) <= self.max_tokens:
            return width, height
        lo, hi = 1, min(max(width, height), self.max_long_side)
        while lo < hi:  # largest long side whose aspect-kept size fits the token limit
            mid = (lo + hi + 1) // 2
            if self._raw(*fit_long_side(width, height, mid)) <= self.max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return fit_long_side(width, height, lo)

    def _tokens(self, width: int, height: int) -> int:
        return self._raw(*self._processed_size(width, height))


# --------------------------------------------------------------------------------------------
# Google
# --------------------------------------------------------------------------------------------
class GeminiTileCostModel(CostModel):
    """Gemini 2.x: 258 tokens when both sides are <= 384 px, else 258 per tile.

    Tiles: crop unit ``floor(min(w, h) / 1.5)`` clamped to [256, 768], tiles
    ``ceil(w/unit) * ceil(h/unit)``; each tile is scaled to 768x768. Source: ai.google.dev
    "Understand and count tokens" (the 384/258/768 facts); the crop-unit rule as quoted by
    several open implementations of that page. Gemini does not document a resize it applies
    before tiling, so the processed size is the size sent.
    """

    grid = None
    monotone = False  # the crop unit follows the short side, so ceil(w/unit) can drop as it grows

    def __init__(self, name: str, *, tile_tokens: int = 258, small_side: int = 384) -> None:
        self.name = name
        self.tile_tokens = tile_tokens
        self.small_side = small_side
        self.provider = "Gemini"
        self.limits = GEMINI_LIMITS

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def tiles(self, width: int, height: int) -> int:
        """Tiles billed (1 for a small image)."""
        _check_size(width, height)
        if width <= self.small_side and height <= self.small_side:
            return 1
        unit = min(768, max(256, (2 * min(width, height)) // 3))
        return _ceil_div(width, unit) * _ceil_div(height, unit)

    def _tokens(self, width: int, height: int) -> int:
        return self.tile_tokens * self.tiles(width, height)


GEMINI_PIXELS_PER_TOKEN = Fraction(768 * 768, 258)
"""Pixels one Gemini token stands for: a Gemini 2.x tile, 768x768 px for 258 tokens."""


class GeminiBudgetCostModel(CostModel):
    """Gemini 3 ``media_resolution``: a fixed token budget per image whatever its size.

    LOW 280, MEDIUM 560, HIGH 1120, ULTRA_HIGH 2240 (ai.google.dev, "Media resolution"). Google
    does not document the size Gemini 3 resizes to inside a level; this model assumes each level
    keeps about as many pixels as Gemini 2.x tiles give for the same tokens
    (:data:`GEMINI_PIXELS_PER_TOKEN`, 768x768 per 258), so LOW keeps about 800x800 px of area.
    That estimate decides which level meets a router's request; the token count is exact.
    """

    grid = None
    monotone = True

    def __init__(self, name: str, *, tokens_per_image: int, level: str | None = None) -> None:
        self.name = name
        self.tokens_per_image = tokens_per_image
        self.level = level
        self.provider = "Gemini"
        self.limits = GEMINI_LIMITS
        if level is not None:
            self.knobs = {"media_resolution": f"MEDIA_RESOLUTION_{level.upper()}"}
            self.knob_kind = "request"

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        area = self.tokens_per_image * GEMINI_PIXELS_PER_TOKEN
        if width * height <= area:
            return width, height
        # the largest long side whose aspect-kept size stays within the area (exact)
        long_ = max(width, height)
        side = math.isqrt(int(area * long_ * long_ / (width * height)))
        while side > 1 and math.prod(fit_long_side(width, height, side)) > area:
            side -= 1
        return fit_long_side(width, height, max(1, side))

    def step_label(self, width: int, height: int) -> str:
        """``media_resolution=MEDIA_RESOLUTION_LOW`` (or the budget when no level is named)."""
        if self.knobs:
            return f"media_resolution={self.knobs['media_resolution']}"
        return f"{self.tokens_per_image} tokens per image"

    def _tokens(self, width: int, height: int) -> int:
        return self.tokens_per_image


# --------------------------------------------------------------------------------------------
# Qwen-VL
# --------------------------------------------------------------------------------------------
def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen-VL's resize rule, returning (height, width) like transformers' ``smart_resize``.

    Each side is rounded to a multiple of ``factor``; if the area leaves [min_pixels, max_pixels]
    both sides are scaled by one factor (flooring above the budget, ceiling below it). Raises
    ValueError for an aspect ratio over 200, as the processor does.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class QwenVLCostModel(CostModel):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: ``smart_resize`` then one token per factor x factor block.

    ``factor = patch_size * merge_size``: 14*2 = 28 for Qwen2/2.5-VL, 16*2 = 32 for Qwen3-VL.
    Defaults are what the released checkpoints' preprocessor_config.json load into transformers:
    Qwen2/2.5-VL min 3136 / max 12845056 pixels (4..16384 tokens), Qwen3-VL min 65536 / max
    16777216. (The Qwen2VLImageProcessor class default max is 28*28*1280 = 1003520; pass it to
    model a deployment that keeps it.) Source: transformers
    ``models/qwen2_vl/image_processing_qwen2_vl.py``.
    """

    monotone = False  # above max_pixels the sides are floored, so a larger image can cost less

    def __init__(
        self,
        name: str,
        *,
        patch_size: int = 14,
        merge_size: int = 2,
        min_pixels: int = 3136,
        max_pixels: int = 12845056,
    ) -> None:
        if min_pixels <= 0 or max_pixels < min_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
        self.name = name
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.grid = patch_size * merge_size
        self.knob_kind = "processor"
        self.provider = name

    def knobs_for(self, width: int, height: int) -> dict[str, Any]:
        """``min_pixels``/``max_pixels`` that make the processor keep the size sent as it is."""
        pw, ph = self.processed_size(width, height)
        return {"min_pixels": min(self.min_pixels, pw * ph), "max_pixels": max(pw * ph, self.min_pixels)}

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        h, w = smart_resize(height, width, self.grid, self.min_pixels, self.max_pixels)  # type: ignore[arg-type]
        return w, h

    def _tokens(self, width: int, height: int) -> int:
        w, h = self._processed_size(width, height)
        f = self.grid
        assert f is not None
        return (w // f) * (h // f)


# --------------------------------------------------------------------------------------------
# InternVL
# --------------------------------------------------------------------------------------------
class InternVLCostModel(CostModel):
    """InternVL 2.5 / 3: ``dynamic_preprocess`` into 448-px tiles, 256 tokens each, plus a thumbnail.

    The grid (cols x rows, min_num <= cols*rows <= max_num) is the one whose aspect ratio is
    closest to the image's; on a tie a later (larger) grid wins when the image area exceeds half
    the grid's pixel area. A 448x448 thumbnail is added when more than one tile is used. The
    candidate list is built exactly as the model's own code builds it, so ties break the same
    way. Source: the InternVL model cards' ``dynamic_preprocess`` / ``find_closest_aspect_ratio``
    (``load_image(..., input_size=448, max_num=12)`` with ``use_thumbnail=True``).
    """

    grid = None
    monotone = True

    def __init__(
        self,
        name: str,
        *,
        image_size: int = 448,
        tokens_per_tile: int = 256,
        min_num: int = 1,
        max_num: int = 12,
        use_thumbnail: bool = True,
    ) -> None:
        self.name = name
        self.image_size = image_size
        self.tokens_per_tile = tokens_per_tile
        self.min_num = min_num
        self.max_num = max_num
        self.use_thumbnail = use_thumbnail
        self.knobs = {"max_num": max_num}
        self.knob_kind = "processor"
        self.provider = name
        target_ratios = set(
            (i, j)
            for n in range(min_num, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= max_num and i * j >= min_num
        )
        self._ratios = sorted(target_ratios, key=lambda x: x[0] * x[1])

    def tile_grid(self, width: int, height: int) -> tuple[int, int]:
        """(cols, rows) of 448-px tiles the model cuts the image into."""
        _check_size(width, height)
        aspect_ratio = width / height
        best_diff = float("inf")
        best = (1, 1)
        area = width * height
        for ratio in self._ratios:
            diff = abs(aspect_ratio - ratio[0] / ratio[1])
            if diff < best_diff:
                best_diff = diff
                best = ratio
            elif diff == best_diff:
                if area > 0.5 * self.image_size * self.image_size * ratio[0] * ratio[1]:
                    best = ratio
        return best

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        cols, rows = self.tile_grid(width, height)
        return self.image_size * cols, self.image_size * rows

    def step_label(self, width: int, height: int) -> str:
        """``max_num=N, CxR tiles``."""
        cols, rows = self.tile_grid(width, height)
        return f"max_num={self.max_num}, {cols}x{rows} tiles"

    def _tokens(self, width: int, height: int) -> int:
        cols, rows = self.tile_grid(width, height)
        blocks = cols * rows
        if self.use_thumbnail and blocks != 1:
            blocks += 1
        return blocks * self.tokens_per_tile


# --------------------------------------------------------------------------------------------
# Idefics3 / SmolVLM
# --------------------------------------------------------------------------------------------
class Idefics3CostModel(CostModel):
    """Idefics3 / SmolVLM image processor: rescale, pad up to whole tiles, split, add a global tile.

    1. ``do_resize``: the long edge is rescaled to ``longest_edge`` (up *or* down; the short edge
       is truncated and made even), capped at 4096.
    2. Each side is rounded up to a multiple of ``tile_size`` (the short one after recomputing it
       from the aspect ratio, as ``resize_for_vision_encoder`` does).
    3. If either side exceeds ``tile_size`` the canvas is cut into tiles and one global
       ``tile_size`` image is added; otherwise the image is a single tile.

    Tokens are ``tokens_per_tile`` image tokens per tile (the row/column marker tokens the prompt
    also carries are not counted). ``longest_edge=None`` models ``do_resize=False``. Defaults:
    SmolVLM-256M/500M 2048/512/64; Idefics3-8B 1456/364/169; SmolVLM-Instruct (2.2B) 1536/384/81.
    Source: transformers ``models/idefics3/image_processing_idefics3.py`` and the checkpoints'
    preprocessor_config.json / processor_config.json.
    """

    grid = None
    monotone = True

    def __init__(
        self,
        name: str,
        *,
        longest_edge: int | None = 2048,
        tile_size: int = 512,
        tokens_per_tile: int = 64,
        max_image_size: int = 4096,
    ) -> None:
        self.name = name
        self.longest_edge = longest_edge
        self.tile_size = tile_size
        self.tokens_per_tile = tokens_per_tile
        self.max_image_size = max_image_size
        self.max_long_side = longest_edge
        self.knobs = {"longest_edge": longest_edge} if longest_edge is not None else {}
        self.knob_kind = "processor"
        self.provider = name

    def step_label(self, width: int, height: int) -> str:
        """``longest_edge=N, T tiles``."""
        cols, rows = self.tile_grid(width, height)
        tiles = cols * rows + 1 if cols else 1
        return f"longest_edge={self.longest_edge}, {tiles} tile{'s' if tiles != 1 else ''}"

    def _resized(self, width: int, height: int) -> tuple[int, int]:
        """Step 1: the processor's ``resize`` to ``longest_edge`` (or no change)."""
        if self.longest_edge is None:
            return width, height
        aspect = width / height
        w, h = width, height
        if w >= h:
            w = self.longest_edge
            h = int(w / aspect)
            h += h % 2
        else:
            h = self.longest_edge
            w = int(h * aspect)
            w += w % 2
        h, w = max(h, 1), max(w, 1)
        cap = self.max_image_size
        aspect = w / h
        if w >= h and w > cap:
            w, h = cap, int(cap / aspect)
        elif h > w and h > cap:
            h, w = cap, int(cap * aspect)
        return max(w, 1), max(h, 1)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        w, h = self._resized(width, height)
        t = self.tile_size
        aspect = w / h
        if w >= h:
            w = _ceil_div(w, t) * t
            h = _ceil_div(int(w / aspect), t) * t
        else:
            h = _ceil_div(h, t) * t
            w = _ceil_div(int(h * aspect), t) * t
        # An extreme aspect can truncate a side to 0 here (the processor would then fail); keep one tile.
        return max(w, t), max(h, t)

    def tile_grid(self, width: int, height: int) -> tuple[int, int]:
        """(cols, rows) of the split, or (0, 0) when the image is a single tile."""
        w, h = self.processed_size(width, height)
        t = self.tile_size
        if w > t or h > t:
            return w // t, h // t
        return 0, 0

    def _tokens(self, width: int, height: int) -> int:
        cols, rows = self.tile_grid(width, height)
        tiles = cols * rows + 1 if cols else 1
        return tiles * self.tokens_per_tile


# --------------------------------------------------------------------------------------------
# LLaVA-OneVision
# --------------------------------------------------------------------------------------------
_LLAVA_OV_PINPOINTS = tuple((384 * i, 384 * j) for i in range(1, 7) for j in range(1, 7))


def _select_best_resolution(height: int, width: int, resolutions: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """transformers' ``select_best_resolution``: most effective pixels, then least waste; (h, w)."""
    best_fit: tuple[int, int] | None = None
    max_effective = 0
    min_wasted = float("inf")
    for res_h, res_w in resolutions:
        scale = min(res_w / width, res_h / height)
        down_w, down_h = int(width * scale), int(height * scale)
        effective = min(down_w * down_h, width * height)
        wasted = res_w * res_h - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            max_effective = effective
            min_wasted = wasted
            best_fit = (res_h, res_w)
    assert best_fit is not None
    return best_fit


class LlavaOneVisionCostModel(CostModel):
    """LLaVA-OneVision (SigLIP-so400m/14 at 384 px, ``anyres_max_9``).

    729 tokens (27x27) for the base image, plus the unpadded features of the best grid
    (1x1 to 6x6 crops of 384 px, picked by ``select_best_resolution``), plus one newline token per
    feature row; when the unpadded grid exceeds 9 crops by more than 1.1x (linear) it is
    downscaled. ``vision_feature_select_strategy="full"`` (no CLS token to drop). Source:
    transformers ``models/llava_onevision/processing_llava_onevision.py``
    (``_get_number_of_features`` / ``_get_unpadded_features``).
    """

    grid = None
    max_long_side = 2304
    monotone = False  # the 1.1x downscale makes some larger grids cost fewer tokens than smaller ones

    def __init__(
        self,
        name: str,
        *,
        crop_size: int = 384,
        patch_size: int = 14,
        max_num_patches: int = 9,
        pinpoints: Iterable[tuple[int, int]] = _LLAVA_OV_PINPOINTS,
    ) -> None:
        self.name = name
        self.crop_size = crop_size
        self.patch_size = patch_size
        self.max_num_patches = max_num_patches
        self.pinpoints = tuple(tuple(p) for p in pinpoints)
        self.provider = name
        self.max_long_side = max(max(p) for p in self.pinpoints)

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        # get_patch_output_size: fit inside the best resolution (up or down), ceil on the free side.
        res_h, res_w = _select_best_resolution(height, width, self.pinpoints)  # type: ignore[arg-type]
        scale_w, scale_h = res_w / width, res_h / height
        if scale_w < scale_h:
            return res_w, min(math.ceil(height * scale_w), res_h)
        return min(math.ceil(width * scale_h), res_w), res_h

    def _tokens(self, width: int, height: int) -> int:
        res_h, res_w = _select_best_resolution(height, width, self.pinpoints)  # type: ignore[arg-type]
        scale_h, scale_w = res_h // self.crop_size, res_w // self.crop_size
        side = self.crop_size // self.patch_size
        current_h, current_w = side * scale_h, side * scale_w
        if width / height > current_w / current_h:
            new_h = int(round(height * (current_w / width), 7))
            current_h -= ((current_h - new_h) // 2) * 2
        else:
            new_w = int(round(width * (current_h / height), 7))
            current_w -= ((current_w - new_w) // 2) * 2
        unpadded = current_h * current_w
        newlines = current_h
        ratio = math.sqrt(current_h * current_w / (self.max_num_patches * side**2))
        if ratio > 1.1:
            unpadded = int(current_h // ratio) * int(current_w // ratio)
            newlines = int(current_h // ratio)
        return side * side + unpadded + newlines


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, CostModel] = {}


def _key(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a target name must be a non-empty string, got {name!r}")
    return name.strip().lower()


def register_target(name: str, model: CostModel, *, aliases: Iterable[str] = (), replace: bool = False) -> None:
    """Register ``model`` under ``name`` and ``aliases`` (case-insensitive).

    Raises ValueError if a name is already taken, unless ``replace=True``.
    """
    if not isinstance(model, CostModel):
        raise TypeError(f"model must be a CostModel, got {type(model).__name__}")
    keys = [_key(name), *(_key(a) for a in aliases)]
    if not replace:
        taken = [k for k in keys if k in _REGISTRY]
        if taken:
            raise ValueError(f"target name(s) already registered: {', '.join(taken)} (pass replace=True)")
    for k in keys:
        _REGISTRY[k] = model


def list_targets() -> list[str]:
    """Every registered target name, aliases included, sorted."""
    return sorted(_REGISTRY)


_PREFIXES = ("openai:", "anthropic:", "google:")
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest|preview(-\d+-\d+)?|exp(-\d+)?)$")
_CLAUDE = re.compile(r"^claude-(opus|sonnet|haiku)-(\d+)(?:[-.](\d{1,2}))?(?:-|$)")
_GPT5 = re.compile(r"^gpt-5\.(\d+)(-[a-z]+)?")
_warned: set[str] = set()


def _family_of(key: str) -> str | None:
    """The registered name whose rule an unregistered model name in a known family follows."""
    prefix = next((p for p in _PREFIXES if key.startswith(p)), "")
    bare, _, level = key[len(prefix):].partition(":")
    suffix = f":{level}" if level else ""
    m = _CLAUDE.match(bare)
    if m and (not prefix or prefix == "anthropic:"):
        kind, major, minor = m.group(1), int(m.group(2)), int(m.group(3) or 0)
        hires = kind == "opus" and (major, minor) >= (4, 7)
        return "anthropic:claude-hires" if hires else "anthropic:claude"
    m = _GPT5.match(bare)
    if m and (not prefix or prefix == "openai:") and not m.group(2):
        minor = int(m.group(1))
        base = "openai:gpt-5" if minor < 4 else "openai:gpt-5.6" if minor > 6 else f"openai:gpt-5.{minor}"
        return base + suffix if base + suffix in _REGISTRY else base
    if bare.startswith("gemini-3"):
        return "gemini-3" + suffix if "gemini-3" + suffix in _REGISTRY else "gemini-3"
    if bare.startswith(("gemini-2", "gemini-1.5")):
        return "gemini"
    # the longest registered name the model name starts with, on a '-' or '_' boundary
    best = None
    for candidate in (k for k in _REGISTRY if ":" not in k or k.startswith(_PREFIXES)):
        c_prefix = next((p for p in _PREFIXES if candidate.startswith(p)), "")
        if prefix and c_prefix != prefix:
            continue
        c_bare = candidate[len(c_prefix):]
        if ":" in c_bare:
            continue
        if bare.startswith(c_bare) and bare[len(c_bare):len(c_bare) + 1] in ("-", "_"):
            if best is None or len(c_bare) > len(best[1]):
                best = (candidate, c_bare)
    if best is None:
        return None
    name = best[0] + suffix
    return name if name in _REGISTRY else best[0]


def resolve_target(name: str) -> tuple[CostModel, str | None]:
    """(model, note): the cost model for ``name`` and, when it came from a family rule, why.

    Exact names first (case-insensitive); then a bare name with its provider prefix
    (``gpt-4o`` is ``openai:gpt-4o``); then a dated snapshot (``claude-sonnet-4-20250514``);
    then the rule of the model's family, with a note saying so. Raises UnknownTargetError with
    "did you mean" suggestions otherwise.
    """
    key = _key(name)
    if key in _REGISTRY:
        return _REGISTRY[key], None
    for prefix in _PREFIXES:
        if prefix + key in _REGISTRY:
            return _REGISTRY[prefix + key], None
    head, sep, level = key.partition(":") if not key.startswith(_PREFIXES) else (key, "", "")
    if key.startswith(_PREFIXES):
        p = next(p for p in _PREFIXES if key.startswith(p))
        rest, sep, level = key[len(p):].partition(":")
        head = p + rest
    snap = _SNAPSHOT.sub("", head)
    if snap != head:
        for cand in (snap + sep + level, *(p + snap + sep + level for p in _PREFIXES)):
            if cand in _REGISTRY:
                return _REGISTRY[cand], None
    family = _family_of(key) or (_family_of(snap + sep + level) if snap != head else None)
    if family is not None:
        return _REGISTRY[family], f"{name!r} is not a known model; using the rule of its family, {family!r}"
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownTargetError(
        f"unknown target {name!r}{hint} (cares_integrations.tokens.list_targets() lists the "
        f"{len(_REGISTRY)} known names)"
    )


def get_target(name: str | CostModel) -> CostModel:
    """The cost model for ``name`` (see :func:`resolve_target`); a CostModel is returned as is.

    A name resolved through its family's rule warns once (UserWarning). Raises
    UnknownTargetError, with "did you mean" suggestions, for a name no rule covers.
    """
    if isinstance(name, CostModel):
        return name
    try:
        model, note = resolve_target(name)
    except ValueError as exc:
        if isinstance(exc, UnknownTargetError):
            raise
        raise UnknownTargetError(str(exc)) from None
    if note is not None and _key(name) not in _warned:
        _warned.add(_key(name))
        warnings.warn(note, UserWarning, stacklevel=2)
    return model


def visual_tokens(target: str | CostModel, width: int, height: int) -> int:
    """Visual tokens ``target`` charges for an image sent at (width, height)."""
    return get_target(target).tokens(width, height)


def processed_size(target: str | CostModel, width: int, height: int) -> tuple[int, int]:
    """The (width, height) ``target`` actually processes for an image sent at (width, height)."""
    return get_target(target).processed_size(width, height)


def _register_family(name: str, family: KnobFamily, *, aliases: Iterable[str] = (), caps: Iterable[str] = ()) -> None:
    """Register a knob family under ``name`` and ``name:cap`` for each of ``caps`` (plus aliases)."""
    aliases = list(aliases)
    register_target(name, family, aliases=aliases)
    for cap in caps:
        capped = family.with_cap(cap)
        capped.name = f"{name}:{cap}"
        register_target(f"{name}:{cap}", capped, aliases=[f"{a}:{cap}" for a in aliases])


def _register_builtins() -> None:
    # OpenAI tile models: (base, per tile), platform.openai.com/docs/guides/images-vision.
    # The family name lets routing pick detail=low or high (auto = high for pricing); ":low" pins low.
    tile_models = {
        "gpt-4o": (85, 170),
        "gpt-4.1": (85, 170),
        "gpt-4.5": (85, 170),
        "gpt-4o-mini": (2833, 5667),
        "gpt-5": (70, 140),
        "o1": (75, 150),
        "o3": (75, 150),
        "computer-use-preview": (65, 129),
    }
    tile_aliases = {"gpt-5": ["gpt-5-chat-latest"], "o1": ["o1-pro"]}
    for model, (base, per_tile) in tile_models.items():
        name = f"openai:{model}"
        aliases = [f"openai:{a}" for a in tile_aliases.get(model, [])]
        low = OpenAITileCostModel(f"{name}:low", base_tokens=base, tile_tokens=per_tile, detail="low")
        high = OpenAITileCostModel(f"{name}:high", base_tokens=base, tile_tokens=per_tile, detail="high")
        register_target(f"{name}:low", low, aliases=[f"{a}:low" for a in aliases])
        family = KnobFamily(name, [("low", low), ("high", high)], cap="high", provider="OpenAI")
        register_target(name, family, aliases=[*aliases, f"{name}:high", f"{name}:auto",
                                               *(f"{a}:{d}" for a in aliases for d in ("high", "auto"))])
    for model, multiplier in {
        "gpt-4.1-mini": 1.62,
        "gpt-4.1-nano": 2.46,
        "gpt-5-mini": 1.62,
        "gpt-5-nano": 2.46,
        "o4-mini": 1.72,
    }.items():
        name = f"openai:{model}"
        patch_model = OpenAIPatchCostModel(name, multiplier=multiplier)
        patch_model.knobs = {"detail": "high"}  # no effect on the price of these models; sent explicitly
        patch_model.knob_kind = "request"
        register_target(name, patch_model)
    # GPT-5.4 and later: patch budgets per detail level (visual-tokens.md "Newer rules"; openai-python ImageDetail).
    for minor, auto in ((4, "high"), (5, "original"), (6, "original")):
        name = f"openai:gpt-5.{minor}"
        high = OpenAIPatchBudgetCostModel(f"{name}:high", detail="high", max_patches=2500, max_side=2048)
        if minor < 6:
            original = OpenAIPatchBudgetCostModel(f"{name}:original", detail="original", max_patches=10000, max_side=6000)
        else:  # GPT-5.6 keeps the input size and rejects images over 30,000 patches
            original = OpenAIPatchBudgetCostModel(
                f"{name}:original", detail="original", max_patches=30000, max_side=None, keep_size=True, reject_over=30000
            )
        family = KnobFamily(name, [("high", high), ("original", original)], cap=auto, provider="OpenAI")
        register_target(name, family, aliases=[f"{name}:auto"])
        for cap in ("high", "original"):
            if cap != auto:
                capped = family.with_cap(cap)
                capped.name = f"{name}:{cap}"
                register_target(f"{name}:{cap}", capped)
            else:
                register_target(f"{name}:{cap}", family, replace=True)

    claude_standard = [
        "claude-sonnet-4", "claude-opus-4", "claude-haiku-4", "claude-sonnet-4-5", "claude-opus-4-1",
        "claude-opus-4-5", "claude-haiku-4-5", "claude-3-7-sonnet", "claude-3-5-sonnet", "claude-3-5-haiku",
        "claude-3-opus", "claude-3-haiku", "claude-sonnet-4-6", "claude-opus-4-6",
    ]  # fmt: skip
    register_target(
        "anthropic:claude",
        ClaudeCostModel("anthropic:claude"),
        aliases=[f"anthropic:{m}" for m in claude_standard],
    )
    register_target(
        "anthropic:claude-hires",
        ClaudeCostModel("anthropic:claude-hires", max_long_side=2576, max_tokens=4784),
        aliases=["anthropic:claude-opus-4-7"],
    )

    gemini_names = ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"]
    register_target(
        "gemini",
        GeminiTileCostModel("gemini"),
        aliases=[*gemini_names, *(f"google:{g}" for g in gemini_names)],
    )
    # Gemini 3: routing picks media_resolution up to the cap (the default level is HIGH).
    budgets = {"low": 280, "medium": 560, "high": 1120, "ultra_high": 2240}
    levels = [(lvl, GeminiBudgetCostModel(f"gemini-3:{lvl}", tokens_per_image=b, level=lvl)) for lvl, b in budgets.items()]
    register_target("gemini-3:low", levels[0][1], aliases=["google:gemini-3:low"])
    gemini3 = ["gemini-3-pro", "gemini-3-flash", "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.5-pro"]
    _register_family(
        "gemini-3", KnobFamily("gemini-3", levels, cap="high", provider="Gemini"),
        aliases=["google:gemini-3", *gemini3, *(f"google:{g}" for g in gemini3)],
        caps=("medium", "ultra_high"),
    )
    high = get_target("gemini-3")
    register_target("gemini-3:high", high, aliases=["google:gemini-3:high"])

    register_target("qwen2-vl", QwenVLCostModel("qwen2-vl"))
    register_target("qwen2.5-vl", QwenVLCostModel("qwen2.5-vl"), aliases=["qwen2_5-vl"])
    register_target(
        "qwen3-vl", QwenVLCostModel("qwen3-vl", patch_size=16, merge_size=2, min_pixels=65536, max_pixels=16777216)
    )

    # InternVL: routing picks the processor's max_num (1..12) for the page.
    for name, aliases in (("internvl2.5", ["internvl2_5"]), ("internvl3", ["internvl3.5", "internvl3_5"])):
        tiles = [(str(n), InternVLCostModel(f"{name}:max_num={n}", max_num=n)) for n in range(1, 13)]
        register_target(name, KnobFamily(name, tiles, cap="12", provider=name), aliases=aliases)

    # Idefics3 / SmolVLM: routing picks the processor's longest_edge (whole tiles up to the default).
    for name, (edge, tile, per_tile), aliases in (
        ("smolvlm", (2048, 512, 64), ["smolvlm-256m", "smolvlm-500m", "smolvlm2-256m", "smolvlm2-500m"]),
        ("smolvlm-2.2b", (1536, 384, 81), ["smolvlm-instruct", "smolvlm2-2.2b"]),
        ("idefics3", (4 * 364, 364, 169), ["idefics3-8b"]),
    ):
        edges = [(str(k * tile), Idefics3CostModel(f"{name}:longest_edge={k * tile}", longest_edge=k * tile,
                                                   tile_size=tile, tokens_per_tile=per_tile))
                 for k in range(1, edge // tile + 1)]
        register_target(name, KnobFamily(name, edges, cap=str(edge), provider=name), aliases=aliases)
    register_target(
        "llava-onevision",
        LlavaOneVisionCostModel("llava-onevision"),
        aliases=["llava-onevision-qwen2-0.5b-ov", "llava-onevision-qwen2-7b-ov", "llava-onevision-qwen2-72b-ov"],
    )


_register_builtins()
