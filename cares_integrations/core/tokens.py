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

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from fractions import Fraction

from .errors import UnknownTargetError
from .geometry import fit_long_side, round_ratio

__all__ = [
    "ClaudeCostModel",
    "CostModel",
    "GeminiBudgetCostModel",
    "GeminiTileCostModel",
    "Idefics3CostModel",
    "InternVLCostModel",
    "LlavaOneVisionCostModel",
    "OpenAIPatchCostModel",
    "OpenAITileCostModel",
    "QwenVLCostModel",
    "get_target",
    "list_targets",
    "processed_size",
    "register_target",
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


class GeminiBudgetCostModel(CostModel):
    """Gemini 3 ``media_resolution``: a fixed token budget per image whatever its size.

    LOW 280, MEDIUM 560, HIGH 1120, ULTRA_HIGH 2240 (ai.google.dev, "Media resolution"). The size
    Gemini resizes to internally is not documented, so the processed size is the size sent.
    """

    grid = None
    monotone = True

    def __init__(self, name: str, *, tokens_per_image: int) -> None:
        self.name = name
        self.tokens_per_image = tokens_per_image

    def _processed_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

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


def get_target(name: str | CostModel) -> CostModel:
    """The cost model registered under ``name`` (case-insensitive); a CostModel is returned as is.

    Raises UnknownTargetError, listing every known name, for a name that is not registered.
    """
    if isinstance(name, CostModel):
        return name
    try:
        return _REGISTRY[_key(name)]
    except (KeyError, ValueError):
        raise UnknownTargetError(
            f"unknown target {name!r}; known targets: {', '.join(list_targets())}"
        ) from None


def visual_tokens(target: str | CostModel, width: int, height: int) -> int:
    """Visual tokens ``target`` charges for an image sent at (width, height)."""
    return get_target(target).tokens(width, height)


def processed_size(target: str | CostModel, width: int, height: int) -> tuple[int, int]:
    """The (width, height) ``target`` actually processes for an image sent at (width, height)."""
    return get_target(target).processed_size(width, height)


def _register_builtins() -> None:
    # OpenAI tile models: (base, per tile), platform.openai.com/docs/guides/images-vision.
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
        for detail in ("high", "low"):
            suffix = "" if detail == "high" else ":low"
            name = f"openai:{model}{suffix}"
            aliases = [f"openai:{a}{suffix}" for a in tile_aliases.get(model, [])]
            register_target(
                name, OpenAITileCostModel(name, base_tokens=base, tile_tokens=per_tile, detail=detail), aliases=aliases
            )
    for model, multiplier in {
        "gpt-4.1-mini": 1.62,
        "gpt-4.1-nano": 2.46,
        "gpt-5-mini": 1.62,
        "gpt-5-nano": 2.46,
        "o4-mini": 1.72,
    }.items():
        name = f"openai:{model}"
        register_target(name, OpenAIPatchCostModel(name, multiplier=multiplier))

    claude_standard = [
        "claude-sonnet-4", "claude-opus-4", "claude-haiku-4", "claude-sonnet-4-5", "claude-opus-4-1",
        "claude-opus-4-5", "claude-haiku-4-5", "claude-3-7-sonnet", "claude-3-5-sonnet", "claude-3-5-haiku",
        "claude-3-opus", "claude-3-haiku",
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
    for level, budget in {"low": 280, "medium": 560, "high": 1120, "ultra_high": 2240}.items():
        name = f"gemini-3:{level}"
        register_target(name, GeminiBudgetCostModel(name, tokens_per_image=budget), aliases=[f"google:{name}"])

    register_target("qwen2-vl", QwenVLCostModel("qwen2-vl"))
    register_target("qwen2.5-vl", QwenVLCostModel("qwen2.5-vl"), aliases=["qwen2_5-vl"])
    register_target(
        "qwen3-vl", QwenVLCostModel("qwen3-vl", patch_size=16, merge_size=2, min_pixels=65536, max_pixels=16777216)
    )

    register_target("internvl2.5", InternVLCostModel("internvl2.5"), aliases=["internvl2_5"])
    register_target("internvl3", InternVLCostModel("internvl3"))

    register_target(
        "smolvlm",
        Idefics3CostModel("smolvlm", longest_edge=2048, tile_size=512, tokens_per_tile=64),
        aliases=["smolvlm-256m", "smolvlm-500m", "smolvlm2-256m", "smolvlm2-500m"],
    )
    register_target(
        "smolvlm-2.2b",
        Idefics3CostModel("smolvlm-2.2b", longest_edge=1536, tile_size=384, tokens_per_tile=81),
        aliases=["smolvlm-instruct", "smolvlm2-2.2b"],
    )
    register_target(
        "idefics3",
        Idefics3CostModel("idefics3", longest_edge=4 * 364, tile_size=364, tokens_per_tile=169),
        aliases=["idefics3-8b"],
    )
    register_target(
        "llava-onevision",
        LlavaOneVisionCostModel("llava-onevision"),
        aliases=["llava-onevision-qwen2-0.5b-ov", "llava-onevision-qwen2-7b-ov", "llava-onevision-qwen2-72b-ov"],
    )


_register_builtins()
