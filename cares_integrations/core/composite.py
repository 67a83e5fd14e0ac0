"""The one alpha compositor: transparent pixels become white paper, as a page is printed."""

from __future__ import annotations

from PIL import Image


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` carries transparency (an alpha band or a palette transparency)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def flatten(image: Image.Image, mode: str = "RGB") -> Image.Image:
    """``image`` in ``mode`` (``"RGB"`` or ``"L"``), with any transparency composited onto white.

    Returns ``image`` itself when it is already in ``mode`` without transparency; never
    modifies it.
    """
    if not has_alpha(image):
        return image if image.mode == mode else image.convert(mode)
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert(mode)
