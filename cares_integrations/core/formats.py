"""The one check of the ``image_format`` option every component takes (the format resized
images are written in), shared by the LangChain and LlamaIndex glue and ``route_and_resize``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator

OUTPUT_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
"""Formats resized images can be written in."""

_ALIASES = {"JPG": "JPEG"}


def output_format(value: Any) -> Optional[str]:
    """``image_format`` as one of :data:`OUTPUT_FORMATS` (any case; ``jpg`` is JPEG), or None
    (keep each image's own format). ValueError for anything else, naming what is accepted."""
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().upper()
        name = _ALIASES.get(name, name)
        if name in OUTPUT_FORMATS:
            return name
    raise ValueError(
        f"image_format must be one of {', '.join(OUTPUT_FORMATS)} (any case; 'jpg' means JPEG) or None "
        f"to keep each image's own format; got {value!r}"
    )


OutputFormat = Annotated[Optional[Literal["PNG", "JPEG", "WEBP"]], BeforeValidator(output_format)]
"""The pydantic type of an ``image_format`` field: validated by :func:`output_format`."""
