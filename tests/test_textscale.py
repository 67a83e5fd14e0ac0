"""The text-scale router: text height in, long side out, on real rendered pages."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import encode, render_page
from PIL import Image, ImageOps

from cares_integrations.routers.registry import default_router, load_router
from cares_integrations.core.policy import ResolutionPolicy
from cares_integrations.routers.textscale import (DEFAULT_KIND_RULES, DEFAULT_LADDER, DEFAULT_TEXT_CAP, KindRule,
                                                  TextMeasure, TextScaleRouter, measure_text, question_kind)
from cares_integrations.training.synthetic import generate_page

Q = "What is the revenue for item 10?"


@pytest.fixture(scope="module")
def router() -> TextScaleRouter:
    # the measuring rule itself: no cap, the old floor (the shipped caps are tested below)
    return TextScaleRouter(text_cap=None, floor=384, min_text_px=5.0)


@pytest.fixture(scope="module")
def small_text_page() -> Image.Image:
    return render_page(1700, 2200, text_px=12, lines=60)


@pytest.fixture(scope="module")
def large_text_page() -> Image.Image:
    return render_page(1700, 2200, text_px=44, lines=60)


def test_routes_the_fixture_page(router, page_image):
    d = router.route(page_image, Q)
    assert d.router == "text-scale"
    assert d.mode == "direct"
    assert 384 <= d.long_side <= 1100
    assert d.original_size == (850, 1100)


def test_larger_text_gets_a_smaller_long_side(router, small_text_page, large_text_page):
    small = router.route(small_text_page, Q).long_side
    large = router.route(large_text_page, Q).long_side
    assert large < small
    assert large < 1100  # 44 px text is legible at half size and below
    assert small > 1500  # 12 px text needs (almost) native


@pytest.mark.parametrize("text_px", [10, 16, 24, 40])
def test_measured_height_tracks_the_font_size(text_px):
    m = measure_text(render_page(1700, 2200, text_px=text_px, lines=60))
    assert m.kind == "text"
    # DejaVu Sans x-height is about 0.55 em; the core band measures it within a pixel or two
    assert 0.4 * text_px <= m.small_px <= 0.7 * text_px
    assert m.min_px <= m.small_px <= m.median_px


@pytest.mark.parametrize("size", [(300, 400), (850, 1100), (90, 60)])
def test_never_above_the_image_long_side(router, size):
    img = render_page(*size, text_px=6, lines=20)
    d = router.route(img, Q)
    assert d.long_side <= max(size)
    assert d.raw_long_side <= max(size)
    assert d.send_size[0] <= size[0] and d.send_size[1] <= size[1]


def test_deterministic(router, page_png):
    assert router.route(page_png, Q) == router.route(page_png, Q)


def test_blank_page_goes_to_the_blank_size(router):
    blank = Image.new("RGB", (1700, 2200), "white")
    assert measure_text(blank).kind == "blank"
    assert router.route(blank, Q).long_side == 384
    assert TextScaleRouter(blank_long_side=512).route(blank, Q).long_side == 512


def test_photo_falls_back_to_the_photo_size(router):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:1200]
    photo = (np.stack([xx / 1200 * 255, yy / 900 * 255, (xx + yy) / 2100 * 255], -1)
             + rng.normal(0, 25, (900, 1200, 3))).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(photo)
    assert measure_text(img).kind == "photo"
    assert router.route(img, Q).long_side == 1024
    assert TextScaleRouter(photo_long_side=640).route(img, Q).long_side == 640


def test_dark_background_page_measures_like_the_light_one(router, small_text_page, large_text_page):
    for page in (small_text_page, large_text_page):
        dark = ImageOps.invert(page)
        assert measure_text(dark).small_px == pytest.approx(measure_text(page).small_px, abs=1)
        assert router.route(dark, Q).long_side == pytest.approx(router.route(page, Q).long_side, rel=0.15)


def test_rgba_and_l_modes(router, large_text_page):
    rgb = router.route(large_text_page, Q).long_side
    gray = large_text_page.convert("L")
    assert router.route(gray, Q).long_side == rgb
    # black text on a transparent background: composited on white before measuring
    alpha = ImageOps.invert(gray)
    rgba = Image.new("RGBA", large_text_page.size, (0, 0, 0, 0))
    rgba.putalpha(alpha)
    assert router.route(rgba, Q).long_side == pytest.approx(rgb, rel=0.1)
    assert router.route(encode(rgba, "PNG"), Q).long_side == pytest.approx(rgb, rel=0.1)


def test_tiny_images(router):
    for size in [(1, 1), (20, 12), (31, 31)]:
        d = router.route(Image.new("RGB", size, "white"), Q)
        assert 1 <= d.long_side <= max(size)


def test_route_batch_equals_per_image_route(router, page_image, small_text_page, large_text_page):
    images = [page_image, small_text_page, large_text_page, Image.new("L", (500, 700), 255)]
    queries = [Q, "What does footnote 1 say?", Q, Q]
    batch = router.route_batch(images, queries)
    assert batch == [router.route(img, q) for img, q in zip(images, queries)]


def test_footnote_question_sizes_for_the_smallest_text():
    page = generate_page(seed=0, index=4, dpi=200, page_size="letter")
    router = TextScaleRouter(text_cap=None, floor=384, min_text_px=5.0, kind_rules={"fine": KindRule(5.0, "min")})
    plain = router.route(page.image, 'What is the value of "Due date"?').long_side
    foot = router.route(page.image, 'According to footnote 1, what is the "Audit code"?').long_side
    assert foot >= plain
    m = router.measure(page.image)
    assert m.min_px < m.small_px
    off = TextScaleRouter(question_hints=False, text_cap=None, floor=384, min_text_px=5.0)
    assert off.route(page.image, "footnote 1?").long_side == off.route(page.image, "x").long_side


def test_options_change_the_size(small_text_page):
    base = TextScaleRouter(min_text_px=4, text_cap=None, floor=384).route(small_text_page, Q).long_side
    assert TextScaleRouter(min_text_px=2, text_cap=None, floor=384).route(small_text_page, Q).long_side < base
    assert TextScaleRouter(min_text_px=2, floor=1000, text_cap=None).route(small_text_page, Q).long_side >= 1000


def test_policy_clamps_and_targets_apply(small_text_page):
    r = TextScaleRouter(policy=ResolutionPolicy(max_long_side=600), target="qwen2.5-vl")
    d = r.route(small_text_page, Q)
    assert d.long_side == 600  # the body rule asks its cap (768); the policy clamps it
    assert d.tokens_after < d.tokens_before


@pytest.mark.parametrize("bad", [dict(min_text_px=0), dict(quantile=1.5), dict(working_size=10), dict(floor=0)])
def test_bad_options_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TextScaleRouter(**bad)


def test_loaders_give_the_text_scale_router():
    assert isinstance(load_router("text-scale"), TextScaleRouter)
    assert isinstance(default_router(), TextScaleRouter)
    assert load_router(None, min_text_px=5).min_text_px == 5


async def test_async_route_matches(router, page_image):
    assert await router.aroute(page_image, Q) == router.route(page_image, Q)


@pytest.mark.parametrize("question, kind", [
    ("What is the title of this page?", "title"),
    ("What is the section heading that starts with \"Using\"?", "title"),
    ("What does footnote 2 say?", "fine"),
    ("What is the caption of Figure 3?", "fine"),
    ("In the small print, what comes right after \"see\"?", "fine"),
    ("What is the total?", "number"),
    ("What page number is printed on this page?", "page"),
    ("On which page does the index start?", "page"),
    ("What is the number on \"page 3\"?", "number"),  # quoted: page text
    ("How many users are listed?", "number"),
    ("Which words come right after \"the total number\" in the text?", "body"),  # quoted: page text
    ("Who signed?", "body"),
    ("", "body"),
])
def test_question_kind_reads_the_words_outside_quotes(question, kind):
    assert question_kind(question) == kind


def test_shipped_rules_size_each_kind_within_its_floor_and_cap(small_text_page):
    router = TextScaleRouter()
    assert router.kind_rules == DEFAULT_KIND_RULES
    # 12 px text on a 2200 px page: a body question asks more than the cap (the corpus refit, docs/quality.md)
    assert router.route(small_text_page, Q).long_side == DEFAULT_TEXT_CAP
    for question, kind in (("What is the title of this page?", "title"), ("What is the total?", "number"),
                           ("What does footnote 1 say?", "fine"), ("What page number is printed here?", "page")):
        rule = DEFAULT_KIND_RULES[kind]
        assert rule.floor <= router.route(small_text_page, question).long_side <= rule.cap
    assert TextScaleRouter(question_hints=False).route(small_text_page, "What is the total?").long_side == DEFAULT_TEXT_CAP
    # a kind without a rule is sized like a body question
    assert TextScaleRouter(kind_rules={}).route(small_text_page, "What is the total?").long_side == DEFAULT_TEXT_CAP


def test_bad_rules_are_named():
    with pytest.raises(ValueError, match="text_cap"):
        TextScaleRouter(text_cap=0)
    with pytest.raises(ValueError, match="kind_rules"):
        TextScaleRouter(kind_rules={"headline": KindRule(3.0)})
    with pytest.raises(ValueError, match="measure"):
        KindRule(3.0, "largest")
    with pytest.raises(ValueError, match="floor"):
        KindRule(3.0, floor=900, cap=800)


def test_the_router_sends_only_ladder_sizes(small_text_page, large_text_page):
    # min_text_px 4.0 is the shipped body rule's; the test pins it so the arithmetic below holds
    # every long side is a ladder size (or the page as is), rounded up from the rule's request
    router = TextScaleRouter()
    for page in (small_text_page, large_text_page):
        for question in ("What is the title of this page?", "What is the total?", "What does footnote 1 say?",
                         "What page number is printed on this page?", Q):
            side = router.route(page, question).long_side
            assert side in DEFAULT_LADDER or side == max(page.size)
    m = TextMeasure("text", small_px=11.0, min_px=9.0, median_px=16.0, fragments=50)
    asked = TextScaleRouter(ladder=None, text_cap=None).long_side_for(m, (1700, 2200), Q)
    assert TextScaleRouter().min_text_px == 4.0
    assert asked == pytest.approx(2200 * 4.0 / 11.0)  # 800: between two ladder sizes
    assert TextScaleRouter(text_cap=None).long_side_for(m, (1700, 2200), Q) == 896
    assert TextScaleRouter(ladder=(500, 1000), text_cap=None).long_side_for(m, (1700, 2200), Q) == 1000


def test_a_request_above_the_ladder_sends_the_page_as_is():
    m = TextMeasure("text", small_px=2.0, min_px=2.0, median_px=4.0, fragments=50)
    router = TextScaleRouter(text_cap=None, ladder=(384, 768))
    assert router.long_side_for(m, (1700, 2200), Q) == 2200
    assert router.long_side_for(m, (500, 700), Q) == 700  # never above the page


@pytest.mark.parametrize("bad", [(), (768, 384), (0, 384), (384, 384)])
def test_a_bad_ladder_is_named(bad):
    with pytest.raises(ValueError, match="ladder"):
        TextScaleRouter(ladder=bad)
