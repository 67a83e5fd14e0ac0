"""Provider-aware sizing: base size, the provider cap, grid snap, free detail, and the invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cares_integrations.core.errors import UnknownTargetError
from cares_integrations.core.geometry import fit_long_side
from cares_integrations.core.sizing import MAX_DISTORTION, send_size
from cares_integrations.core.tokens import CostModel, get_target, processed_size, visual_tokens
from helpers import unique_models

PAGE = (1700, 2200)  # a letter page at 200 dpi


MODELS = unique_models()


class BlockModel(CostModel):
    """A toy target: one token per started 100x100 block, no resizing; hand-checkable."""

    name = "blocks"
    grid = None

    def _processed_size(self, width, height):
        return width, height

    def _tokens(self, width, height):
        return math.ceil(width / 100) * math.ceil(height / 100)


# ---------------------------------------------------------------------------------------------
# fit_long_side
# ---------------------------------------------------------------------------------------------
def test_fit_long_side_keeps_aspect_and_never_upscales():
    assert fit_long_side(1700, 2200, 768) == (593, 768)  # 1700 * 768 / 2200 = 593.45
    assert fit_long_side(2200, 1700, 768) == (768, 593)
    assert fit_long_side(100, 50, 500) == (100, 50)  # never upscale
    assert fit_long_side(100, 50, 100) == (100, 50)
    assert fit_long_side(4, 2, 3) == (3, 2)  # 1.5 rounds half up
    assert fit_long_side(1000, 1, 10) == (10, 1)  # a side is never 0


@pytest.mark.parametrize("args", [(0, 10, 10), (10, -1, 10), (10, 10, 0), (10.0, 10, 10), (10, 10, True)])
def test_fit_long_side_rejects_bad_values(args):
    with pytest.raises(ValueError):
        fit_long_side(*args)


def test_no_target_is_the_fit_long_side():
    assert send_size(*PAGE, 768) == fit_long_side(*PAGE, 768)
    assert send_size(*PAGE, 5000, None) == PAGE


def test_unknown_target():
    with pytest.raises(UnknownTargetError):
        send_size(*PAGE, 768, "openai:gpt-9")


# ---------------------------------------------------------------------------------------------
# the three rules on concrete targets
# ---------------------------------------------------------------------------------------------
def test_free_detail_grows_to_the_largest_same_cost_size():
    # 1000x500 asked at 250 -> 250x125 = 3 x 2 blocks. The largest same-aspect size still 3 x 2 is
    # 300x150 (301x151 starts a 4th column).
    model = BlockModel()
    assert fit_long_side(1000, 500, 250) == (250, 125)
    assert send_size(1000, 500, 250, model) == (300, 150)
    assert send_size(1000, 500, 250, model, free_detail=False) == (250, 125)


def test_openai_tile_is_capped_at_what_the_provider_keeps_of_the_original():
    # OpenAI keeps at most 768 px on the short side: asking 1024 for a letter page sends exactly
    # the provider's processed size of the original, for the same tokens.
    cap = processed_size("openai:gpt-4o", *PAGE)
    assert cap == (768, 994)
    assert send_size(*PAGE, 1024, "openai:gpt-4o") == cap
    assert send_size(*PAGE, 1024, "openai:gpt-4o", free_detail=False) == cap
    # Asked at 768 (593x768, 2 x 2 tiles), free detail grows to the same cap: 2 x 2 tiles still.
    assert send_size(*PAGE, 768, "openai:gpt-4o") == cap
    assert visual_tokens("openai:gpt-4o", *cap) == visual_tokens("openai:gpt-4o", *fit_long_side(*PAGE, 768))
    # Low detail: nothing above the 512-px version is kept.
    assert max(send_size(*PAGE, 1024, "openai:gpt-4o:low")) == 512


def test_claude_snaps_up_to_the_28px_grid_for_free():
    base = fit_long_side(*PAGE, 768)  # 593x768: 22 x 28 patches, padded to 616 x 784
    size = send_size(*PAGE, 768, "anthropic:claude-sonnet-4", free_detail=False)
    assert size[0] % 28 == 0 and size[1] % 28 == 0
    assert size[0] >= base[0] and size[1] >= base[1]
    assert visual_tokens("anthropic:claude", *size) == visual_tokens("anthropic:claude", *base)


def test_qwen_sends_exactly_what_the_processor_rounds_to():
    # Qwen rounds 593x768 to 588x756 itself: send that, no resampling on its side.
    base = fit_long_side(*PAGE, 768)
    size = send_size(*PAGE, 768, "qwen2.5-vl")
    assert size == processed_size("qwen2.5-vl", *base)
    assert processed_size("qwen2.5-vl", *size) == size
    assert visual_tokens("qwen2.5-vl", *size) == visual_tokens("qwen2.5-vl", *base)


def test_free_detail_sends_more_pixels_for_the_same_tokens_where_it_can():
    for name in ("openai:gpt-4o", "gemini", "internvl3", "smolvlm", "anthropic:claude"):
        base = fit_long_side(*PAGE, 768)
        size = send_size(*PAGE, 768, name)
        assert size[0] * size[1] > base[0] * base[1], name
        assert visual_tokens(name, *size) == visual_tokens(name, *base), name


def test_accepts_a_cost_model_instance():
    model = get_target("anthropic:claude")
    assert send_size(*PAGE, 768, model) == send_size(*PAGE, 768, "anthropic:claude")


# ---------------------------------------------------------------------------------------------
# invariants, for every registered target
# ---------------------------------------------------------------------------------------------
def floor_long_side(model: CostModel, width: int, height: int, min_long_side: int) -> int:
    """The long side a send size may not go below: the request (capped by the original), or less
    only where the provider itself processes the base size smaller."""
    base = fit_long_side(width, height, min_long_side)
    floor = max(base)
    processed = model.processed_size(*base)
    if processed[0] <= base[0] and processed[1] <= base[1]:
        floor = min(floor, max(processed))
    return floor


def distortion(size, width, height) -> float:
    return abs(math.log(size[0] * height / (size[1] * width)))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(MODELS),
    st.integers(1, 6000),
    st.integers(1, 6000),
    st.integers(1, 4000),
    st.booleans(),
)
def test_send_size_invariants(model, width, height, min_long_side, free_detail):
    if max(width, height) / min(width, height) > 100:
        return  # Qwen refuses aspect ratios over 200; keep every target comparable
    base = fit_long_side(width, height, min_long_side)
    size = send_size(width, height, min_long_side, model, free_detail=free_detail)
    assert isinstance(size[0], int) and isinstance(size[1], int)
    # never more tokens than the plain requested size
    assert model.tokens(*size) <= model.tokens(*base)
    # never larger than the original
    assert size[0] <= width and size[1] <= height
    # the long side is kept, unless the original or the provider's own processing is smaller
    assert max(size) >= floor_long_side(model, width, height, min_long_side)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), st.integers(20, 6000), st.integers(20, 6000), st.integers(16, 4000))
def test_snaps_and_growth_keep_the_aspect_ratio(model, width, height, min_long_side):
    if max(width, height) / min(width, height) > 20:
        return
    base = fit_long_side(width, height, min_long_side)
    size = send_size(width, height, min_long_side, model)
    # a grid snap may stretch by at most MAX_DISTORTION (plus the provider's own rounding to its
    # grid, and the rounding of a tiny base size)
    slack = MAX_DISTORTION + (model.grid or 0) / min(size) + 1 / min(base) + 1 / min(size)
    assert distortion(size, width, height) <= slack


MONOTONE_FREE = [m for m in MODELS if m.monotone and m.grid is None]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(MONOTONE_FREE), st.integers(50, 5000), st.integers(50, 5000), st.integers(16, 3000))
def test_free_detail_is_maximal_for_monotone_models(model, width, height, min_long_side):
    # For a monotone target without a grid, the result is an aspect-kept size whose next larger
    # size either costs more or is more than the provider keeps of the original.
    if max(width, height) / min(width, height) > 20:
        return
    size = send_size(width, height, min_long_side, model)
    long_ = max(size)
    if long_ >= max(width, height) or size != fit_long_side(width, height, long_):
        return  # already the original, or clamped by the provider's processed size of the base
    nxt = fit_long_side(width, height, long_ + 1)
    kept = model.processed_size(width, height)
    budget = model.tokens(*fit_long_side(width, height, min_long_side))
    assert model.tokens(*nxt) > budget or not (nxt[0] <= kept[0] and nxt[1] <= kept[1])
