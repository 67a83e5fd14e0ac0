"""Resizing: never upscale, keep aspect within a pixel, keep the format, land on the exact size."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cares_integrations import fit_long_side, load_image, resize, resize_image
from cares_integrations.core.resize import resize_decoded
from helpers import encode, render_page

sizes = st.integers(min_value=1, max_value=5000)


@given(w=sizes, h=sizes, long_side=st.integers(min_value=1, max_value=6000))
def test_fit_long_side_never_upscales_and_keeps_aspect(w, h, long_side):
    nw, nh = fit_long_side(w, h, long_side)
    assert 1 <= nw <= w and 1 <= nh <= h
    assert max(nw, nh) == min(long_side, max(w, h))
    # aspect within one pixel: the short side is the rounded exact value
    if w >= h:
        assert abs(nh - h * nw / w) <= 1
    else:
        assert abs(nw - w * nh / h) <= 1


@pytest.mark.parametrize("w,h,ls", [(0, 10, 5), (10, -1, 5), (10, 10, 0)])
def test_fit_long_side_rejects_bad_sizes(w, h, ls):
    with pytest.raises(ValueError, match="positive"):
        fit_long_side(w, h, ls)


_small_pages = st.builds(
    lambda w, h, fmt, mode: (w, h, fmt, mode),
    st.integers(8, 300),
    st.integers(8, 300),
    st.sampled_from(["PNG", "JPEG", "WEBP"]),
    st.sampled_from(["RGB", "L", "RGBA"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=_small_pages, long_side=st.integers(1, 400))
def test_resize_property_format_size_never_upscale(page, long_side):
    w, h, fmt, mode = page
    if fmt == "JPEG" and mode == "RGBA":
        mode = "RGB"
    img = Image.new(mode, (w, h), "white" if mode != "L" else 255)
    data = encode(img, fmt)
    out = resize(data, long_side=long_side)
    assert isinstance(out, bytes)
    got = Image.open(io.BytesIO(out))
    assert got.format == fmt
    assert got.size == fit_long_side(w, h, long_side)
    assert got.width <= w and got.height <= h


def test_exact_size_and_no_upscale(page_image):
    assert resize_image(page_image, (100, 129)).size == (100, 129)
    assert resize_image(page_image, page_image.size) is page_image
    with pytest.raises(ValueError, match="upscale"):
        resize_image(page_image, (900, 1200))


def test_png_stays_png_jpeg_stays_jpeg_with_quality(page_png, page_jpeg):
    assert Image.open(io.BytesIO(resize(page_png, long_side=500))).format == "PNG"
    hi = resize(page_jpeg, long_side=500, quality=95)
    lo = resize(page_jpeg, long_side=500, quality=30)
    assert Image.open(io.BytesIO(hi)).format == "JPEG" and len(lo) < len(hi)
    as_jpeg = resize(page_png, long_side=500, fmt="jpeg")
    assert Image.open(io.BytesIO(as_jpeg)).format == "JPEG"


def test_rgba_to_jpeg_is_flattened_on_white():
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    out = resize(encode(img, "PNG"), long_side=50, fmt="JPEG")
    got = Image.open(io.BytesIO(out)).convert("RGB")
    assert got.getpixel((25, 25)) == (255, 255, 255) or min(got.getpixel((25, 25))) > 245


def test_resize_keeps_the_callers_form(page_image, page_b64, page_data_url):
    assert isinstance(resize(page_image, long_side=300), Image.Image)
    out = resize(page_b64, long_side=300)
    assert Image.open(io.BytesIO(base64.b64decode(out))).size == fit_long_side(850, 1100, 300)
    assert resize(page_data_url, long_side=300).startswith("data:image/png;base64,")


def test_same_size_returns_original_object_without_reencoding(page_png, page_b64):
    assert resize(page_png, long_side=5000) is page_png
    decoded = load_image(page_b64)
    assert resize_decoded(decoded, decoded.size) is page_b64


def test_jpeg_draft_result_matches_full_decode(page_image):
    big = page_image.resize((1700, 2200), Image.Resampling.LANCZOS)
    data = encode(big, "JPEG", quality=92)
    fast = np.asarray(Image.open(io.BytesIO(resize(data, long_side=400))).convert("L"), dtype=float)
    full = Image.open(io.BytesIO(data)).convert("RGB").resize(fit_long_side(1700, 2200, 400), Image.Resampling.LANCZOS)
    slow = np.asarray(full.convert("L"), dtype=float)
    assert fast.shape == slow.shape
    # draft decoding + reducing_gap: no visible loss (mean abs difference of a few grey levels)
    assert np.abs(fast - slow).mean() < 4.0


def test_exif_rotated_jpeg_resizes_in_display_orientation():
    img = render_page(300, 100, text_px=10)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    out = Image.open(io.BytesIO(resize(buf.getvalue(), long_side=150)))
    assert out.size == (50, 150)
