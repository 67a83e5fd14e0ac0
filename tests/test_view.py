"""Router views: what part of a page each router reads (core/view.py)."""

from __future__ import annotations

import pytest
from conftest import render_page
from PIL import Image

from cares_integrations import FixedRouter, TextScaleRouter, load_image
from cares_integrations.core.view import ViewSpec, apply_view, view_image


@pytest.mark.parametrize("spec", [ViewSpec(mode="L", reduce_to=700), ViewSpec(mode="RGB", fit_long_side=512),
                                  ViewSpec(), ViewSpec(reduce_to=5000)])
@pytest.mark.parametrize("size", [(1700, 2201), (2201, 90), (300, 200)])
def test_view_has_the_declared_size_and_is_idempotent(spec, size):
    img = Image.new("RGBA", size, (10, 20, 30, 128))
    view = view_image(img, spec)
    assert view.size == spec.size_for(size)
    assert view_image(view, spec) is view or spec.mode is None
    if spec.mode:
        assert view.mode == spec.mode


def test_apply_view_keeps_the_page_size_and_notes():
    decoded = load_image(render_page(1700, 2200))
    decoded.notes.append("a note")
    view = apply_view(decoded, ViewSpec(mode="L", reduce_to=800))
    assert view.image.size == (567, 734) and view.size == (1700, 2200) and view.notes == ["a note"]
    assert apply_view(view, ViewSpec(mode="L", reduce_to=800)) is view


def test_spec_refuses_two_size_rules():
    with pytest.raises(ValueError):
        ViewSpec(fit_long_side=512, reduce_to=512)


def test_text_scale_measures_its_view_like_the_page():
    router = TextScaleRouter(working_size=900)
    decoded = load_image(render_page(1700, 2200, text_px=12, lines=60))
    view = router.view(decoded)
    assert view.image.mode == "L" and max(view.image.size) <= 900
    assert router.measure(view) == router.measure(decoded) == router.measure(decoded.image)
    assert router.route(decoded, "q") == router.route(render_page(1700, 2200, text_px=12, lines=60), "q")


def test_text_scale_refuses_a_view_of_another_page():
    router = TextScaleRouter(working_size=900)
    decoded = load_image(render_page(1700, 2200))
    wrong = apply_view(load_image(render_page(1000, 900)), router.view_spec)
    wrong.original_size = decoded.size
    with pytest.raises(ValueError, match="does not belong"):
        router.measure(wrong)


def test_routers_declare_views():
    assert FixedRouter(512).view_spec is None
    assert TextScaleRouter().view_spec == ViewSpec(mode="L", reduce_to=2400)
