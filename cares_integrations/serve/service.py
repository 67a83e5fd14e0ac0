"""``RouterService``: the HTTP API's logic around one router, free of Ray (the deployment wraps it).

It reads untrusted request items under the library's intake rules (no local paths; URLs only
with a fetch allow-list; pixel limits; a view must have the size its page implies), routes a
batch of them with ONE batched prediction, and reports every failure on its own item, typed.
"""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Any

from ..core.decision import RouteDecision
from ..core.errors import CaresError, DecompressionBombError, ImageDecodeError
from ..core.payload import DEFAULT_MAX_PIXELS, DecodedImage, FetchPolicy, is_remote_url, load_image
from ..core.router import ROUTER_TARGET, Router
from ..core.tokens import get_target
from .wire import API_VERSION

__all__ = ["ParsedItem", "RouterService"]

MAX_QUESTION_CHARS = 20_000


@dataclass
class ParsedItem:
    """One request item, read and checked: the router's view of the page, the question, the target."""

    view: DecodedImage
    question: str
    target: Any = ROUTER_TARGET


class RouterService:
    """Parse, route and report for one router (one per Serve replica).

    ``fetch``: allow-list for ``http(s)`` images in requests (None: never fetch).
    ``max_items``: items per request. ``max_pixels``: limit on a page's claimed and decoded size.
    """

    def __init__(self, router: Router, *, fetch: FetchPolicy | None = None, max_items: int = 256,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.router = router
        self.fetch = fetch
        self.max_items = int(max_items)
        self.max_pixels = max_pixels
        self.model_calls = 0
        self.items_routed = 0
        self.failed_batches = 0
        self.consecutive_failures = 0
        self._lock = threading.Lock()

    # -- info ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What a client needs: the router's name, its view, its default target, the limits."""
        spec = self.router.view_spec
        return {
            "api_version": API_VERSION,
            "router": self.router.name,
            "view": None if spec is None else spec.model_dump(),
            "target": self.router.target,
            "policy": self.router.policy.model_dump(mode="json"),
            "free_detail": self.router.free_detail,
            "max_items": self.max_items,
            "max_pixels": self.max_pixels,
            "fetch": sorted(self.fetch.allowed_hosts) if self.fetch else [],
        }

    def stats(self) -> dict[str, Any]:
        """Counters since start: model calls (batched predictions), items, vision-cache hits."""
        hits, misses = self.cache_counters()
        return {"model_calls": self.model_calls, "items_routed": self.items_routed,
                "failed_batches": self.failed_batches, "cache_hits": hits, "cache_misses": misses}

    def cache_counters(self) -> tuple[int, int]:
        """(hits, misses) of the router's vision-feature cache; (0, 0) for routers without one."""
        cache = getattr(getattr(self.router, "backbone", None), "cache", None)
        return (int(cache.hits), int(cache.misses)) if cache is not None else (0, 0)

    # -- parsing ------------------------------------------------------------------------------
    def parse(self, body: Any) -> list[ParsedItem | Exception]:
        """The items of a ``POST /route`` body, each parsed or the exception it failed with.

        A malformed body as a whole (not an object with an ``items`` list, too many items) raises
        ValueError: the request fails, with a 400."""
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise ValueError('the body must be a JSON object {"items": [...]}')
        items = body["items"]
        if len(items) > self.max_items:
            raise ValueError(f"{len(items)} items in one request, over the limit of {self.max_items}")
        out: list[ParsedItem | Exception] = []
        for i, item in enumerate(items):
            try:
                out.append(self.parse_item(item))
            except (CaresError, ValueError, TypeError) as exc:
                out.append(exc)
        return out

    def parse_item(self, item: Any) -> ParsedItem:
        """One item (see :mod:`.wire`); raises the typed error that item fails with."""
        if not isinstance(item, dict):
            raise TypeError("an item must be a JSON object with image, question and optional page_size, target")
        question = item.get("question", "")
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"question is {len(question)} characters, over the limit of {MAX_QUESTION_CHARS}")
        target: Any = ROUTER_TARGET
        if "target" in item:
            target = item["target"]
            if target is not None:
                if not isinstance(target, str):
                    raise TypeError(f"target must be a string or null, got {type(target).__name__}")
                get_target(target)  # UnknownTargetError for an unknown name
        decoded = self._decode(item.get("image"))
        page_size = item.get("page_size")
        if page_size is None:
            return ParsedItem(self.router.view(decoded), question, target)
        page = self._page_size(page_size)
        spec = self.router.view_spec
        expected = page if spec is None else spec.size_for(page)
        if tuple(decoded.image.size) != tuple(expected):
            raise ValueError(
                f"the view is {decoded.image.size[0]}x{decoded.image.size[1]}, but {self.router.name} reads a "
                f"{expected[0]}x{expected[1]} view of a {page[0]}x{page[1]} page"
            )
        view = DecodedImage(image=decoded.image, format=decoded.format, source_kind=decoded.source_kind,
                            original=None, original_size=page, notes=[])
        return ParsedItem(self.router.view(view), question, target)

    def _decode(self, image: Any) -> DecodedImage:
        """An untrusted image string: base64, a data URL, or an allow-listed URL; never a path."""
        if not isinstance(image, str) or not image:
            raise ImageDecodeError("image must be a non-empty string: base64, a data: URL, or an http(s) URL")
        if image[:5].lower() == "data:" or is_remote_url(image):
            return load_image(image, fetch=self.fetch, max_pixels=self.max_pixels, local_files=None,
                              formats=self.router.formats)
        try:
            raw = base64.b64decode("".join(image.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ImageDecodeError(
                "image is neither base64, a data: URL nor an http(s) URL (the server never reads local paths)"
            ) from None
        return load_image(raw, max_pixels=self.max_pixels, local_files=None, formats=self.router.formats)

    def _page_size(self, value: Any) -> tuple[int, int]:
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise ValueError(f"page_size must be [width, height] in positive whole pixels, got {value!r}")
        width, height = int(value[0]), int(value[1])
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise DecompressionBombError(
                f"page_size {width}x{height} = {width * height} pixels is over the limit of {self.max_pixels}"
            )
        return width, height

    # -- routing ------------------------------------------------------------------------------
    def route(self, items: list[ParsedItem]) -> list[RouteDecision | Exception]:
        """Decisions for parsed items, with ONE batched prediction; if the batch fails, each item
        is retried on its own so a bad item fails alone."""
        if not items:
            return []
        try:
            predictions = self.router.predict([it.view for it in items], [it.question for it in items])
            self._count(1, len(items))
        except Exception:  # noqa: BLE001 - isolate the item that broke the batch
            with self._lock:
                self.failed_batches += 1
            results = [self._route_one(it) for it in items]
            if all(isinstance(r, Exception) for r in results):
                with self._lock:
                    self.consecutive_failures += 1
            return results
        out: list[RouteDecision | Exception] = []
        for item, prediction in zip(items, predictions):
            try:
                out.append(self.router.decide(item.view, prediction, target=self.router.resolve_target(item.target)))
            except Exception as exc:  # noqa: BLE001 - reported on its item
                out.append(exc)
        return out

    def _route_one(self, item: ParsedItem) -> RouteDecision | Exception:
        try:
            prediction = self.router.predict([item.view], [item.question])[0]
            self._count(1, 1)
            return self.router.decide(item.view, prediction, target=self.router.resolve_target(item.target))
        except Exception as exc:  # noqa: BLE001 - reported on its item
            return exc

    def _count(self, calls: int, items: int) -> None:
        with self._lock:
            self.model_calls += calls
            self.items_routed += items
            self.consecutive_failures = 0

    @property
    def healthy(self) -> bool:
        """False once 20 batches in a row failed on every item (a broken model: restart the replica)."""
        return self.consecutive_failures < 20
