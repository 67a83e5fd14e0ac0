"""Shared fixtures: small rendered document pages in every encoded form.

Area-specific fixtures (tiny models, framework objects) live in their own test modules or
helper files; keep this one small.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def render_page(width: int = 850, height: int = 1100, *, text_px: int = 14, lines: int = 30) -> Image.Image:
    """A white page with lines of black text at ``text_px`` pixels: enough structure to route."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(FONT, text_px)
        head = ImageFont.truetype(FONT, text_px * 2)
    except OSError:  # fonts missing: still a valid image
        font = head = ImageFont.load_default()
    draw.text((40, 30), "Quarterly report 2024", fill="black", font=head)
    y = 40 + text_px * 3
    for i in range(lines):
        if y > height - text_px * 2:
            break
        draw.text((40, y), f"Line {i + 1}: revenue for item {i * 7 + 3} was {1000 + i * 37} EUR", fill="black", font=font)
        y += int(text_px * 1.6)
    return img


def encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    """Encode a PIL image to bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture()
def one_torch_thread():
    """Run torch with one intra-op thread, restored afterwards: on a small shared CPU machine two
    threads contend and run several times slower on tiny models. Modules that train or run tiny
    models use it through an autouse fixture of their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def page_image() -> Image.Image:
    """An 850x1100 text page (100 dpi letter), RGB."""
    return render_page()


@pytest.fixture(scope="session")
def page_png(page_image) -> bytes:
    """The page as PNG bytes."""
    return encode(page_image, "PNG")


@pytest.fixture(scope="session")
def page_jpeg(page_image) -> bytes:
    """The page as JPEG bytes (quality 90)."""
    return encode(page_image, "JPEG", quality=90)


@pytest.fixture(scope="session")
def page_b64(page_png) -> str:
    """The page as a bare base64 PNG string."""
    return base64.b64encode(page_png).decode("ascii")


@pytest.fixture(scope="session")
def page_data_url(page_b64) -> str:
    """The page as a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + page_b64
