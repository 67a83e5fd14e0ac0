"""Routing the images of a conversation, turn after turn, with a bounded decision cache.

Agents resend every image in the history on every model call. :func:`route_images` is the one
routine every agent component (the LangChain resizer, middleware and chat-model wrapper, the
LlamaIndex LLM wrapper) calls with the images found in a message list and the question each is
asked for: images it has already routed for the same question, target and policy are answered
from a :class:`DecisionCache` (no decode, no router call, no resize); the rest go through ONE
:func:`~cares_integrations.core.apply.route_and_resize` batch. The frameworks only find the image
blocks and write the results back.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Hashable, Sequence

from .apply import ImageResult, OnError, aroute_and_resize, per_request_counts, route_and_resize
from .codec import looks_like_base64_image
from .lru import LRUCache
from .partial import PartialResults
from .tokens import get_target
from .sources import ANY_LOCAL_FILE, LocalFilePolicy
from .router import ROUTER_TARGET, Router, queries_for

DEFAULT_CACHE_SIZE = 256
"""Decisions an agent component keeps by default (a few pages times a few questions)."""


_INLINE_PREFIXES = ("data:", "http://", "https://")


def _content_digest(image: Any) -> str | None:
    """A digest of an inline image (a data URL, an http(s) URL, base64 of an image by the codec's
    one rule :func:`~cares_integrations.core.codec.looks_like_base64_image`, or raw bytes); None
    for anything whose content the object does not pin down: paths and ``file:`` URLs (their file
    may change between turns, however long the path), other text, PIL images."""
    if isinstance(image, str):
        if not (image[:8].lower().startswith(_INLINE_PREFIXES) or looks_like_base64_image(image)):
            return None
        return hashlib.sha256(image.encode("utf-8", "surrogatepass")).hexdigest()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    return None


class DecisionCache(LRUCache[ImageResult]):
    """A bounded, thread-safe LRU of routed images keyed by (image content, question, target,
    router and policy, output format).

    It holds each hit's :class:`ImageResult` (the decision and the resized image), so an
    unchanged image asked the same question on a later turn costs one hash. ``hits`` and
    ``misses`` count lookups since creation (or :meth:`clear`).
    """

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if int(maxsize) < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        super().__init__(maxsize)

    @staticmethod
    def key(router: Router, image: Any, question: str, target: str | None, fmt: str | None, quality: int,
            side_limit: int | None = None) -> Hashable | None:
        """The cache key of one lookup, or None when the image cannot be keyed by content.

        ``side_limit`` is the provider's per-image side limit for the request the image goes out
        in (it changes with the request's image count), so a decision made for a small request
        is not reused in one whose limit is tighter."""
        digest = _content_digest(image)
        if digest is None:
            return None
        return (digest, question, target, type(router).__qualname__, router.name, repr(router.policy),
                router.free_detail, fmt, quality, side_limit)

    def put(self, key: Hashable | None, result: ImageResult) -> None:
        """Remember a routed result; failures and skips are not cached (they are cheap or must retry)."""
        if result.decision is not None:
            super().put(key, result)


def _side_limit(target: str | None, n_images: int) -> int | None:
    """The provider's per-image side limit for a request of ``n_images`` images (None: none known)."""
    if target is None:
        return None
    limits = get_target(target).limits
    return limits.max_side_for(n_images) if limits is not None else None


def _lookup(router: Router, images: list[Any], queries: list[str], target: Any, cache: DecisionCache | None,
            fmt: str | None, quality: int,
            per_request: list[int]) -> tuple[PartialResults[ImageResult], list[Hashable | None]]:
    """The cache hits, settled early, and every image's cache key (None: not keyed)."""
    per_image = target if isinstance(target, (list, tuple)) else [target] * len(images)  # one, or one per image
    results: PartialResults[ImageResult] = PartialResults(len(images))
    keys: list[Hashable | None] = [None] * len(images)
    if cache is None:
        return results, keys
    for i, (image, question) in enumerate(zip(images, queries)):
        name = router.resolve_target(per_image[i])
        keys[i] = cache.key(router, image, question, name, fmt, quality, _side_limit(name, per_request[i]))
        hit = cache.get(keys[i])
        if hit is not None:
            # Same content, so the cached output stands for this object; it is the original
            # itself when the image was not changed.
            output = image if hit.output is hit.original else hit.output
            results.settle(i, dataclasses.replace(hit, original=image, output=output, notes=list(hit.notes), cached=True))
    return results, keys


def _pick(target: Any, todo: list[int]) -> Any:
    """The target(s) for the images still to route: one for all, or the per-image ones picked."""
    return [target[i] for i in todo] if isinstance(target, (list, tuple)) else target


def _store(results: PartialResults[ImageResult], keys: list[Hashable | None], routed: list[ImageResult],
           cache: DecisionCache | None) -> list[ImageResult]:
    if cache is not None:
        for i, result in zip(results.todo, routed):
            cache.put(keys[i], result)
    return results.merge(routed)


def route_images(
    router: Router,
    images: Sequence[Any],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    cache: DecisionCache | None = None,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
    local_files: LocalFilePolicy | None = ANY_LOCAL_FILE,
    images_per_request: int | Sequence[int] = 1,
) -> list[ImageResult]:
    """:func:`~cares_integrations.core.apply.route_and_resize`, answering repeated (image,
    question) pairs from ``cache``; the misses go through one batched router call.
    ``images_per_request``: as in :func:`~cares_integrations.core.apply.route_and_resize`."""
    images = list(images)
    qs = queries_for(queries, len(images))
    per = per_request_counts(images_per_request, len(images))
    results, keys = _lookup(router, images, qs, target, cache, fmt, quality, per)
    todo = results.todo
    routed = route_and_resize(router, [images[i] for i in todo], [qs[i] for i in todo], target=_pick(target, todo),
                              on_error=on_error, fmt=fmt, quality=quality, local_files=local_files,
                              images_per_request=[per[i] for i in todo]) if todo else []
    return _store(results, keys, routed, cache)


async def aroute_images(
    router: Router,
    images: Sequence[Any],
    queries: str | Sequence[str],
    *,
    target: str | None = ROUTER_TARGET,
    cache: DecisionCache | None = None,
    on_error: OnError = "raise",
    fmt: str | None = None,
    quality: int = 90,
    local_files: LocalFilePolicy | None = ANY_LOCAL_FILE,
    images_per_request: int | Sequence[int] = 1,
) -> list[ImageResult]:
    """Async :func:`route_images`: the misses are decoded, routed and resized off the event loop."""
    images = list(images)
    qs = queries_for(queries, len(images))
    per = per_request_counts(images_per_request, len(images))
    results, keys = _lookup(router, images, qs, target, cache, fmt, quality, per)
    todo = results.todo
    routed = await aroute_and_resize(router, [images[i] for i in todo], [qs[i] for i in todo],
                                     target=_pick(target, todo), on_error=on_error, fmt=fmt, quality=quality,
                                     local_files=local_files,
                                     images_per_request=[per[i] for i in todo]) if todo else []
    return _store(results, keys, routed, cache)


def summarize(results: Sequence[ImageResult | None]) -> dict[str, Any]:
    """Counts and visual-token totals of one routing call (None entries are images not routed)."""
    decided = [r.decision for r in results if r is not None and r.decision is not None]
    counted = [d for d in decided if d.tokens_before is not None and d.tokens_after is not None]
    return {
        "n_images": len(results),
        "n_resized": sum(1 for r in results if r is not None and r.changed),
        "cache_hits": sum(1 for r in results if r is not None and r.cached),
        "tokens_before": sum(d.tokens_before for d in counted) if counted else None,  # type: ignore[misc]
        "tokens_after": sum(d.tokens_after for d in counted) if counted else None,  # type: ignore[misc]
    }
