"""One long-side fitting rule: the router, sizing, resizing and the token models agree on it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cares_integrations import FixedRouter, resize_image
from cares_integrations.core import resize as resize_module
from cares_integrations.core import sizing, tokens
from cares_integrations.core.geometry import fit_long_side
from cares_integrations.core.payload import DecodedImage, SourceKind
from cares_integrations.core.router import Prediction
from cares_integrations.core.sizing import send_size
from cares_integrations.tokens import get_target

sides = st.integers(min_value=1, max_value=6000)


def _decoded(width: int, height: int) -> DecodedImage:
    """A decoded image that reports (width, height) without allocating it (as a draft decode does)."""
    img = Image.new("L", (1, 1), 255)
    return DecodedImage(image=img, format="PNG", source_kind=SourceKind.PIL, original=img, original_size=(width, height))


def test_every_layer_uses_the_same_function():
    assert resize_module.fit_long_side is fit_long_side
    assert sizing.fit_long_side is fit_long_side
    assert tokens.fit_long_side is fit_long_side


def test_halves_round_up():
    # 3 * 200 / 240 = 2.5: the router once said 2x200 (half to even) while sizing said 3x200.
    assert fit_long_side(3, 240, 200) == (3, 200)
    assert fit_long_side(240, 3, 200) == (200, 3)
    assert fit_long_side(4, 2, 3) == (3, 2)  # 1.5 -> 2
    assert fit_long_side(1000, 1, 10) == (10, 1)  # never 0


@pytest.mark.parametrize("args", [(0, 5, 5), (5, -1, 5), (5, 5, 0), (5.0, 5, 5), (True, 5, 5), ("5", 5, 5)])
def test_bad_values_name_the_argument(args):
    with pytest.raises(ValueError, match="must be a positive int"):
        fit_long_side(*args)


@settings(max_examples=400, deadline=None)
@given(w=sides, h=sides, long_side=st.integers(min_value=1, max_value=7000))
def test_router_sizing_and_token_models_agree(w, h, long_side):
    expected = fit_long_side(w, h, long_side)
    # the router without a target, and sizing without a target
    decision = FixedRouter(long_side).decide(_decoded(w, h), Prediction(long_side=long_side), target=None)
    assert decision.send_size == expected == send_size(w, h, long_side)
    # exact: the short side is the nearest integer to the true ratio, ties up
    long_, short = max(w, h), min(w, h)
    exact_short = Fraction(short * min(long_side, long_), long_)
    assert sorted(expected) == sorted([max(1, math.floor(exact_short + Fraction(1, 2))), min(long_side, long_)])
    # a provider's own downscale goes through the same rule
    if long_ > 512:
        assert get_target("openai:gpt-4o:low").processed_size(w, h) == fit_long_side(w, h, 512)
    claude = get_target("anthropic:claude")
    if long_ > 1568 and 2 * short < long_:  # long and thin enough that the pixel cap binds first
        cap = fit_long_side(w, h, 1568)
        if claude.tokens(*cap) <= 1568:
            assert claude.processed_size(w, h) == cap


@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300), long_side=st.integers(1, 320))
def test_resized_pixels_land_on_the_decided_size(w, h, long_side):
    decision = FixedRouter(long_side).decide(_decoded(w, h), Prediction(long_side=long_side))
    assert resize_image(Image.new("RGB", (w, h), "white"), decision.send_size).size == decision.send_size
