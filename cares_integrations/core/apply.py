"""Route and resize a set of images in one batched router call, with an error policy.

This is the one entry point the LangChain and LlamaIndex glue calls: they translate their
framework's image blocks into plain image inputs and questions, call :func:`route_and_resize`,
and write each :class:`ImageResult` back in their own form. Bad images either raise or pass
through unchanged with the reason recorded; remote URLs that may not be fetched always pass
through with the reason recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from .decision import RouteDecision
from .errors import ImageDecodeError, ImageSkipped
from .payload import DecodedImage, ImageInput, load_image, mime_for_format
from .resize import resize_decoded
from .router import ROUTER_TARGET, Router, _as_queries

OnError = Literal["raise", "passthrough"]


@dataclass
class ImageResult:
    """The outcome for one image: the output (in the input's own form), the decision, or why not.

    ``output`` is the original object, untouched, when the image was skipped or failed and
    ``on_error="passthrough"``. ``mime_type`` is the output's MIME type when it was re-encoded.
    """

    original: Any
    output: Any
    decision: RouteDecision | None = None
    mime_type: str | None = None
    skipped_reason: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    exception: Exception | None = field(default=None, repr=False)
    """The exception behind ``error``, so a caller can re-raise it with its own context."""

    @property
    def changed(self) -> bool:
        """Whether ``output`` differs from the original (an image was resized or re-encoded)."""
        return self.decision is not None and self.output is not self.original

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-friendly summary for run metadata, events and node metadata."""
        out: dict[str, Any] = {"changed": self.changed}
        if self.decision is not None:
            out.update(self.decision.model_dump(mode="json"))
        if self.skipped_reason:
            out["skipped_reason"] = self.skipped_reason
        if self.error:
            out["error"] = self.error
        return out


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "passthrough"):
        raise ValueError(f"on_error must be 'raise' or 'passthrough', got {on_error!r}")


def _decode_all(
    router: Router, images: list[Any], on_error: OnError
) -> tuple[list[ImageResult | None], list[DecodedImage], list[int]]:
    """Decode every input; skipped and (in passthrough mode) failed ones get their result now."""
    results: list[ImageResult | None] = [None] * len(images)
    decoded: list[DecodedImage] = []
    where: list[int] = []
    for i, img in enumerate(images):
        try:
            decoded.append(load_image(img, fetch=router.fetch, max_pixels=router.max_pixels))
            where.append(i)
        except ImageSkipped as exc:
            results[i] = ImageResult(original=img, output=img, skipped_reason=exc.reason)
        except ImageDecodeError as exc:
            if on_error == "raise":
                raise
            results[i] = ImageResult(original=img, output=img, error=f"{type(exc).__name__}: {exc}", exception=exc)
    return results, decoded, where


def _resize_all(
    results: list[ImageResult | None],
    images: list[Any],
    decoded: list[DecodedImage],
    where: list[int],
    decisions: list[RouteDecision],
    fmt: str | None,
    quality: int,
) -> list[ImageResult]:
    """Resize each decoded image to its decision's size, in the caller's own form."""
    for i, d, decision in zip(where, decoded, decisions):
        out = resize_decoded(d, decision.send_size, fmt=fmt, quality=quality)
        mime = None if out is d.original else mime_for_format(d.output_format(fmt))
        results[i] = ImageResult(original=images[i], output=out, decision=decision, mime_type=mime, notes=list(d.notes))
    return results  # type: ignore[return-value]


def route_and_resize(
    router: Router,
    images: Sequence[ImageInput],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
) -> list[ImageResult]:
    """Route every image for its question in one ``route_batch`` call and resize each one.

    Returns one :class:`ImageResult` per input, in order. With ``on_error="raise"`` a corrupt
    image raises :class:`ImageDecodeError`; with ``"passthrough"`` its original is returned and
    the reason recorded. Remote URLs that the router's fetch policy does not allow are passed
    through in both modes.
    """
    _check_on_error(on_error)
    images = list(images)
    qs = _as_queries(queries, len(images))
    results, decoded, where = _decode_all(router, images, on_error)
    decisions = router.route_batch(decoded, [qs[i] for i in where], target=target) if decoded else []
    return _resize_all(results, images, decoded, where, decisions, fmt, quality)


async def aroute_and_resize(
    router: Router,
    images: Sequence[ImageInput],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
) -> list[ImageResult]:
    """Async :func:`route_and_resize`: decoding and resizing run in a worker thread, and routing
    goes through :meth:`Router.aroute_batch` (which may gather concurrent callers into a batch)."""
    _check_on_error(on_error)
    images = list(images)
    qs = _as_queries(queries, len(images))
    results, decoded, where = await asyncio.to_thread(_decode_all, router, images, on_error)
    decisions = await router.aroute_batch(decoded, [qs[i] for i in where], target=target) if decoded else []
    return await asyncio.to_thread(_resize_all, results, images, decoded, where, decisions, fmt, quality)
