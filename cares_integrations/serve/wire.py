"""The HTTP API's wire format, shared by the Serve deployment and :class:`RemoteRouter`.

``POST /route`` takes ``{"items": [item, ...]}``; an item is::

    {"image": "<base64 | data: URL | http(s) URL>", "page_size": [width, height] | null,
     "question": "...", "target": "gpt-4o" | null}

With ``page_size`` the image is the router's *view* of a page of that size (``GET /info`` says
which view: ``{"router": ..., "view": ViewSpec}``); without it the image is the whole page and
the server makes the view. Local paths are never read; URLs are fetched only when the server
was started with a fetch allow-list. The answer is ``{"results": [result, ...]}`` in item order,
each ``{"decision": RouteDecision}`` or ``{"error": {"type": "ImageDecodeError", "message": ...}}``.
"""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image

from ..core import errors
from ..core.payload import encode_image

__all__ = ["API_VERSION", "ERROR_TYPES", "encode_view", "error_from_wire", "error_to_wire"]

API_VERSION = 1
"""Bumped when the wire format changes incompatibly; ``GET /info`` reports it."""

ERROR_TYPES: dict[str, type[Exception]] = {
    "ImageDecodeError": errors.ImageDecodeError,
    "DecompressionBombError": errors.DecompressionBombError,
    "UnknownTargetError": errors.UnknownTargetError,
    "ImageSkipped": errors.ImageSkipped,
    "CaresError": errors.CaresError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}
"""Error types an item may fail with; anything else travels as ``CaresError``."""


def encode_view(image: Image.Image) -> str:
    """A view as base64 PNG (lossless, so the server reads the very pixels the client made)."""
    return base64.b64encode(encode_image(image, "PNG")).decode("ascii")


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """An item's failure as ``{"type", "message"}``: the most specific known type in its MRO."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_TYPES:
            return {"type": cls.__name__, "message": str(exc)}
    return {"type": "CaresError", "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(payload: Any, where: str) -> Exception:
    """The typed exception for a ``{"type", "message"}`` error; ``where`` prefixes the message."""
    kind = str(payload.get("type", "CaresError")) if isinstance(payload, dict) else "CaresError"
    message = f"{where}: {payload.get('message', '') if isinstance(payload, dict) else payload}"
    cls = ERROR_TYPES.get(kind, errors.CaresError)
    return cls(message)
