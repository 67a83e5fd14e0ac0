"""Synthetic pages shared by the framework benchmarks (run as scripts, so imported as ``_pages``)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def text_page_jpeg(i: int, text_px: int) -> bytes:
    """A 1275x1650 page (letter at 150 dpi) of lines of ``text_px`` text, as JPEG bytes (q 85)."""
    img = Image.new("RGB", (1275, 1650), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(FONT, text_px)
    except OSError:
        font = ImageFont.load_default()
    y = 80
    while y < 1560:
        draw.text((80, y), f"Page {i}: item {y % 97} costs {y * 3 % 1000} EUR in region {y % 7}", font=font, fill="black")
        y += int(text_px * 1.7)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
