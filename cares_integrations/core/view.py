"""What part of a page a router reads: its *view* (a mode and a size), declared once per router.

A router never needs the full page: the gate reads one 512-px tile, the text-scale router a
grayscale copy reduced by an integer factor to its working size. Each router declares that view
as a :class:`ViewSpec` (``Router.view_spec``); :func:`apply_view` makes it. The router makes its
view before predicting, in-process and behind a service alike, so a client that sends only the
view (plus the page's size) gets the decision it would get in-process, and a page crosses the
network once and small.

Views are idempotent: the view of a view is the same view.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from .composite import flatten
from .geometry import fit_long_side
from .payload import DecodedImage
from .resize import resize_image

__all__ = ["ViewSpec", "apply_view", "view_image"]


class ViewSpec(BaseModel):
    """The view a router's prediction reads: a pixel mode, then at most one size rule.

    ``fit_long_side``: LANCZOS-fit the long side to this many pixels when larger (the gate's
    tile). ``reduce_to``: reduce by the smallest integer factor that brings the long side to at
    most this (the text-scale router's working size). Neither: the page at its own size.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["RGB", "L"] | None = Field(default=None, description="Pixel mode (alpha flattened on white); None keeps it.")
    fit_long_side: int | None = Field(default=None, ge=1, description="Fit the long side to this (LANCZOS) when larger.")
    reduce_to: int | None = Field(default=None, ge=1, description="Integer-factor reduction to at most this long side.")

    def model_post_init(self, __context: object) -> None:
        if self.fit_long_side is not None and self.reduce_to is not None:
            raise ValueError("a ViewSpec takes at most one of fit_long_side and reduce_to")

    def reduce_factor(self, page_size: tuple[int, int]) -> int:
        """The integer reduction factor for a page of ``page_size`` (1 when no reduction)."""
        if self.reduce_to is None:
            return 1
        return max(1, math.ceil(max(page_size) / self.reduce_to))

    def size_for(self, page_size: tuple[int, int]) -> tuple[int, int]:
        """The (width, height) of the view of a page of ``page_size``."""
        width, height = int(page_size[0]), int(page_size[1])
        if self.fit_long_side is not None:
            return fit_long_side(width, height, self.fit_long_side)
        factor = self.reduce_factor((width, height))
        return (-(-width // factor), -(-height // factor))  # what Image.reduce gives


def view_image(image: Image.Image, spec: ViewSpec | None) -> Image.Image:
    """The view ``spec`` of a PIL image (the input itself when it already is that view)."""
    if spec is None:
        return image
    if spec.mode is not None:
        image = flatten(image, spec.mode)
    if spec.fit_long_side is not None:
        image = resize_image(image, fit_long_side(*image.size, spec.fit_long_side))
    elif spec.reduce_to is not None:
        factor = spec.reduce_factor(image.size)
        if factor > 1:
            image = image.reduce(factor)
    return image


def apply_view(decoded: DecodedImage, spec: ViewSpec | None) -> DecodedImage:
    """The view ``spec`` of a decoded page: a :class:`DecodedImage` whose ``image`` is the view and
    whose ``size`` and ``notes`` are still the page's. ``decoded`` itself for no spec or when the
    image already is that view."""
    image = view_image(decoded.image, spec)
    if image is decoded.image:
        return decoded
    return dataclasses.replace(decoded, image=image, raw=None, original_size=decoded.size, notes=list(decoded.notes))
