"""Route and resize a set of images in one batched router call, with an error policy.

This is the one entry point the LangChain and LlamaIndex glue calls: they translate their
framework's image blocks into plain image inputs and questions, call :func:`route_and_resize`,
and write each :class:`ImageResult` back in their own form. Bad images either raise or pass
through unchanged with the reason recorded; remote URLs that may not be fetched, and local paths
that the ``local_files`` policy does not allow, always pass through with the reason recorded.
One image's failure, in decoding or in the router, fails only that image.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from .decision import RouteDecision
from .budget import guard
from .codec import encode_base64, make_data_url
from .formats import output_format
from .errors import CaresError, ImageDecodeError, ImageSkipped, RouterError, UnknownTargetError
from .fetch import aprefetch
from .partial import PartialResults
from .payload import DecodedImage, ImageInput, load_image, mime_for_format
from .resize import resize_and_encode
from .router import ROUTER_TARGET, Router, queries_for
from .sources import ANY_LOCAL_FILE, LocalFilePolicy

logger = logging.getLogger(__name__)

OnError = Literal["raise", "passthrough"]


@dataclass
class ImageResult:
    """The outcome for one image: the output (in the input's own form), the decision, or why not.

    ``output`` is the original object, untouched, when the image was skipped or failed and
    ``on_error="passthrough"``. ``data`` holds the encoded bytes of ``output`` (None for a PIL
    output, or when nothing was decoded) and ``mime_type`` their MIME type, so glue writes
    :attr:`base64` or :attr:`data_url` without parsing or re-encoding the output.
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
    data: bytes | None = field(default=None, repr=False)
    """Encoded bytes of ``output`` (re-encoded, or the original's own bytes when unchanged)."""

    @property
    def base64(self) -> str | None:
        """``data`` as standard base64 text, or None when there are no bytes."""
        return None if self.data is None else encode_base64(self.data)

    @property
    def data_url(self) -> str | None:
        """``data`` as a ``data:`` URL with ``mime_type``, or None when there are no bytes."""
        return None if self.data is None else make_data_url(self.data, self.mime_type or "image/png")
    cached: bool = False
    """Whether this result was answered from a decision cache instead of routed again."""

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
        if self.cached:
            out["cached"] = True
        return out


def per_request_counts(images_per_request: int | Sequence[int], n: int) -> list[int]:
    """One request image count per image (a single count applies to all of them)."""
    if isinstance(images_per_request, int):
        return [images_per_request] * n
    counts = list(images_per_request)
    if len(counts) != n:
        raise ValueError(f"images_per_request has {len(counts)} counts for {n} images")
    return counts


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` other than ``"raise"`` or ``"passthrough"``, with a ValueError naming it."""
    if on_error not in ("raise", "passthrough"):
        raise ValueError(f"on_error must be 'raise' or 'passthrough', got {on_error!r}")


def failed_result(img: Any, exc: Exception) -> ImageResult:
    """The result of an image passed through unchanged because of ``exc`` (``on_error="passthrough"``):
    the original as output, the reason in ``error``, the exception kept; logged at warning."""
    logger.warning("image passed through unchanged: %s: %s", type(exc).__name__, exc)
    return ImageResult(original=img, output=img, error=f"{type(exc).__name__}: {exc}", exception=exc)


def _decode_all(
    router: Router, images: list[Any], on_error: OnError, local_files: LocalFilePolicy | None,
    inputs: list[Any] | None = None,
) -> tuple[PartialResults[ImageResult], list[DecodedImage]]:
    """Decode every input; skipped and (in passthrough mode) failed ones are settled now, the
    decoded ones (one per ``results.todo`` slot) go on to the router.

    ``inputs`` are what to decode in place of ``images`` (the same list with URLs already
    fetched, or the exception their fetch raised); results always carry ``images``' objects.
    """
    results: PartialResults[ImageResult] = PartialResults(len(images))
    decoded: list[DecodedImage] = []
    for i, img in enumerate(images):
        source = img if inputs is None else inputs[i]
        try:
            if isinstance(source, BaseException):
                raise source
            decoded.append(load_image(source, fetch=router.fetch, max_pixels=router.max_pixels,
                                      local_files=local_files, formats=router.formats))
        except ImageSkipped as exc:
            logger.warning("image left as is: %s", exc.reason)
            results.settle(i, ImageResult(original=img, output=img, skipped_reason=exc.reason))
        except ImageDecodeError as exc:
            if on_error == "raise":
                raise
            results.settle(i, failed_result(img, exc))
    return results, decoded


def _as_router_error(exc: Exception) -> CaresError:
    if isinstance(exc, CaresError):
        return exc
    error = RouterError(f"the router failed on this image: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _one_by_one(route: Any, decoded: list[DecodedImage], queries: list[str], target: Any,
                on_error: OnError) -> list[Any]:
    """Route each image alone after a batch failed: a decision, or the error for that image."""
    logger.warning("a batch of %d images failed in the router; routing each image alone", len(decoded))
    out: list[Any] = []
    targets = target if isinstance(target, (list, tuple)) else [target] * len(decoded)
    for d, q, t in zip(decoded, queries, targets):
        try:
            out.append(route([d], [q], target=t)[0])
        except Exception as exc:  # noqa: BLE001 - any router failure fails this image alone
            if on_error == "raise":
                raise _as_router_error(exc) from exc
            out.append(_as_router_error(exc))
    return out


def _route_sync(router: Router, decoded: list[DecodedImage], queries: list[str], target: Any,
                on_error: OnError) -> list[Any]:
    if not decoded:
        return []
    try:
        return list(router.route_batch(decoded, queries, target=target))
    except UnknownTargetError:  # the call's own mistake, not one image's
        raise
    except Exception:  # noqa: BLE001 - find the image that failed; the others still route
        return _one_by_one(router.route_batch, decoded, queries, target, on_error)


async def _route_async(router: Router, decoded: list[DecodedImage], queries: list[str], target: Any,
                       on_error: OnError) -> list[Any]:
    if not decoded:
        return []
    try:
        return list(await router.aroute_batch(decoded, queries, target=target))
    except UnknownTargetError:  # the call's own mistake, not one image's
        raise
    except Exception:  # noqa: BLE001 - find the image that failed; the others still route
        return await asyncio.to_thread(_one_by_one, router.route_batch, decoded, queries, target, on_error)


def _resize_one(image: Any, d: DecodedImage, decision: Any, fmt: str | None, quality: int,
                on_error: OnError, images_per_request: int = 1) -> ImageResult:
    """Resize one decoded image to its decision's size, in the caller's own form, within the
    provider's limits for a request of ``images_per_request`` images."""
    if isinstance(decision, Exception):
        return failed_result(image, decision)
    try:
        out, data = resize_and_encode(d, decision.send_size, fmt=fmt, quality=quality)
    except Exception as exc:  # noqa: BLE001 - an encoder failure fails this image alone
        if on_error == "raise":
            raise ImageDecodeError(f"could not resize or encode the image: {type(exc).__name__}: {exc}") from exc
        return failed_result(image, exc)
    out, data, decision = guard(d, decision, out, data, fmt=fmt, quality=quality,
                                images_per_request=images_per_request)  # never bigger; limits
    mime = None if data is None else mime_for_format(d.output_format(fmt) if out is not d.original else d.format)
    return ImageResult(original=image, output=out, decision=decision, mime_type=mime, notes=list(d.notes), data=data)


def _resize_all(
    results: PartialResults[ImageResult],
    images: list[Any],
    decoded: list[DecodedImage],
    decisions: list[Any],
    fmt: str | None,
    quality: int,
    on_error: OnError = "passthrough",
    per_request: Sequence[int] | None = None,
) -> list[ImageResult]:
    """Every image's result: the decoded ones resized to their decisions, merged with the early ones.
    ``per_request``: the image count of the request each image goes out in (one per image)."""
    counts = per_request if per_request is not None else [1] * len(images)
    return results.merge([_resize_one(images[i], d, decision, fmt, quality, on_error, counts[i])
                          for i, d, decision in zip(results.todo, decoded, decisions)])


def route_and_resize(
    router: Router,
    images: Sequence[ImageInput],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
    local_files: LocalFilePolicy | None = ANY_LOCAL_FILE,
    images_per_request: int | Sequence[int] = 1,
) -> list[ImageResult]:
    """Route every image for its question in one ``route_batch`` call and resize each one.

    Returns one :class:`ImageResult` per input, in order. With ``on_error="raise"`` a corrupt
    image raises :class:`ImageDecodeError`; with ``"passthrough"`` its original is returned and
    the reason recorded; a router failure on one image (any exception) fails only that image,
    the same way. Remote URLs that the router's fetch policy does not allow, and paths that
    ``local_files`` does not allow, are passed through in both modes.

    ``local_files`` defaults to :data:`~cares_integrations.core.sources.ANY_LOCAL_FILE` (paths
    the caller passes are its own); glue passes its own option, None unless the user opts in,
    because strings inside framework objects are untrusted.

    ``images_per_request`` is how many images the provider request each image goes out in holds
    (one count for all, or one per image; default 1: each image alone). Glue that sends a whole
    message list passes its image count, so per-request limits apply (Anthropic: at most
    2000x2000 px per image above 20 images); the decision's ``payload`` says when they did.
    """
    check_on_error(on_error)
    fmt = output_format(fmt)
    images = list(images)
    qs = queries_for(queries, len(images))
    per = per_request_counts(images_per_request, len(images))
    results, decoded = _decode_all(router, images, on_error, local_files)
    decisions = _route_sync(router, decoded, [qs[i] for i in results.todo], target, on_error)
    return _resize_all(results, images, decoded, decisions, fmt, quality, on_error, per)


async def aroute_and_resize(
    router: Router,
    images: Sequence[ImageInput],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
    local_files: LocalFilePolicy | None = ANY_LOCAL_FILE,
    images_per_request: int | Sequence[int] = 1,
) -> list[ImageResult]:
    """Async :func:`route_and_resize`: remote URLs are fetched on their own bounded pool
    (:data:`~cares_integrations.core.fetch.FETCH_EXECUTOR`), decoding and resizing run in a
    worker thread, and routing goes through :meth:`Router.aroute_batch` (which may gather
    concurrent callers into a batch)."""
    check_on_error(on_error)
    fmt = output_format(fmt)
    images = list(images)
    qs = queries_for(queries, len(images))
    per = per_request_counts(images_per_request, len(images))
    inputs = await aprefetch(images, router.fetch)
    results, decoded = await asyncio.to_thread(_decode_all, router, images, on_error, local_files, inputs)
    decisions = await _route_async(router, decoded, [qs[i] for i in results.todo], target, on_error)
    return await asyncio.to_thread(_resize_all, results, images, decoded, decisions, fmt, quality, on_error, per)
