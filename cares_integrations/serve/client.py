"""``RemoteRouter``: a :class:`~cares_integrations.Router` whose predictions come from a router
service (the Ray Serve deployment in :mod:`.app`), usable wherever a router is.

The page is decoded here, under this router's own intake rules (``fetch``, ``max_pixels``); only
the service router's view (``GET /info``: one 512-px tile for the gate, a grayscale working-size
copy for text-scale) and the page size travel. The service predicts; the decision (policy,
clamps, provider sizing, tokens, per-image targets) is made here from that prediction with the
service router's policy, or the one this router was given, and the original is resized here
from it. HTTP is async (aiohttp) on one background event loop shared by every caller, so
connections are reused across sync and async calls and across threads; transient failures
(connection errors, timeouts, HTTP 500/502/503/504) are retried with exponential backoff. With
a ``fallback`` router, a service that stays down is routed around, and the decision says so.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import threading
from typing import Any, Sequence

from ..core.decision import RouteDecision
from ..core.errors import CaresError
from ..core.optional import require
from ..core.payload import DecodedImage, ImageInput
from ..core.router import ROUTER_TARGET, Prediction, Router, normalize_batch
from ..core.policy import ResolutionPolicy
from ..core.view import ViewSpec
from .wire import encode_view, error_from_wire

__all__ = ["RemoteRouter", "ServiceUnavailable"]

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})

logger = logging.getLogger(__name__)


class ServiceUnavailable(CaresError, ConnectionError):
    """The router service could not be reached (or kept failing) after every retry."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""


class _Shared:
    """What a router and its :meth:`~RemoteRouter.with_policy` copies share: the background loop,
    the connection pool, the service's ``/info`` and the counters."""

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: Any = None
        self.info = info
        self.attempts = 0
        self.retried = 0
        self.fallbacks = 0


class RemoteRouter(Router):
    """Route through a router service at ``url`` (its base URL, e.g. ``http://127.0.0.1:8000``).

    ``timeout``: seconds for a whole request (``connect_timeout`` to connect); ``retries``:
    extra attempts on transient failures, waiting ``backoff * 2**attempt`` seconds (jittered,
    at most ``max_backoff``); ``fallback``: a local router (or a name for ``load_router``) used
    when the service stays unreachable; its decisions carry a note saying so. ``max_items``
    splits large batches into several requests; ``max_connections`` bounds the pool.
    Other options (``target``, ``max_pixels``, ``fetch``, ``formats``) are the usual router
    options. ``policy`` and ``free_detail`` default to the service router's (read from
    ``GET /info``); given here, or through :meth:`with_policy`, they apply to this client's
    decisions. Copies made by :meth:`with_policy` share the connection pool and the counters.
    """

    name = "remote"

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 5.0, retries: int = 4,
                 backoff: float = 0.25, max_backoff: float = 4.0, fallback: Router | str | None = None,
                 max_items: int = 64, max_connections: int = 32, headers: dict[str, str] | None = None,
                 **router_options: Any) -> None:
        require("aiohttp", "serve", purpose="RemoteRouter")
        super().__init__(**router_options)
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"RemoteRouter needs the service's http(s) base URL, got {url!r}")
        if retries < 0 or timeout <= 0 or connect_timeout <= 0 or max_items < 1:
            raise ValueError("retries must be >= 0, timeouts positive and max_items >= 1")
        self.url = url.rstrip("/")
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)
        self.retries, self.backoff, self.max_backoff = int(retries), float(backoff), float(max_backoff)
        self.max_items, self.max_connections = int(max_items), int(max_connections)
        self.headers = dict(headers or {})
        if isinstance(fallback, str):
            from ..routers.registry import load_router

            fallback = load_router(fallback)
        self.fallback: Router | None = fallback
        self._own = {k for k in ("policy", "free_detail") if router_options.get(k) is not None}
        self._adopted = False
        self._shared = _Shared()

    @property
    def attempts(self) -> int:
        """HTTP attempts made (first tries and retries)."""
        return self._shared.attempts

    @property
    def retried(self) -> int:
        """Attempts that were retries after a transient failure."""
        return self._shared.retried

    @property
    def fallbacks(self) -> int:
        """Items decided by the fallback router."""
        return self._shared.fallbacks

    # -- the service's description ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The service's ``GET /info`` (router name, view, policy, limits), fetched once and kept."""
        if self._shared.info is None:
            self._shared.info = self._run(self._get_json("/info"))
        self._adopt()
        return self._shared.info  # type: ignore[return-value]

    async def _ainfo(self) -> dict[str, Any]:
        if self._shared.info is None:
            self._shared.info = await self._get_json("/info")
        self._adopt()
        return self._shared.info

    def _adopt(self) -> None:
        """Take the service router's policy and ``free_detail`` unless this router was given its own."""
        if self._adopted:
            return
        info = self._shared.info or {}
        if "policy" not in self._own and isinstance(info.get("policy"), dict):
            self.policy = ResolutionPolicy(**info["policy"])
        if "free_detail" not in self._own and "free_detail" in info:
            self.free_detail = bool(info["free_detail"])
        self._adopted = True

    def with_policy(self, policy: ResolutionPolicy | None) -> "RemoteRouter":
        """This router deciding with ``policy`` instead of the service router's (``self`` for None).

        The service still predicts; the copy shares the connection pool and counters."""
        routed = super().with_policy(policy)
        if policy is None or (routed is self and "policy" in self._own):
            return routed  # type: ignore[return-value]
        if routed is self:  # equal to the default before /info was read: still pin it
            routed = copy.copy(self)
            routed.policy = policy
        routed._own = self._own | {"policy"}  # type: ignore[attr-defined]
        return routed  # type: ignore[return-value]

    @property
    def view_spec(self) -> ViewSpec | None:
        """The service router's view (what is sent for each page)."""
        view = self.info().get("view")
        return None if view is None else ViewSpec(**view)

    # -- routing -------------------------------------------------------------------------------
    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """The service's predictions (for :meth:`predict` + :meth:`decide` with several targets)."""
        return _raise_first(self._run(self._apredictions(images, queries)))

    def route_batch(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                    target: Any = ROUTER_TARGET) -> list[RouteDecision]:
        """Route on the service; raises the typed error of the first item that failed there."""
        return _raise_first(self.route_batch_results(images, queries, target=target))

    async def aroute_batch(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                           target: Any = ROUTER_TARGET) -> list[RouteDecision]:
        """Async :meth:`route_batch` (the HTTP call runs on the shared loop; decoding in a thread)."""
        return _raise_first(await self.aroute_batch_results(images, queries, target=target))

    def route_batch_results(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                            target: Any = ROUTER_TARGET) -> list[RouteDecision | Exception]:
        """One result per image: its decision, or the typed exception it alone failed with.

        ``target`` is one target for all images, or (as the glue passes it) one per image."""
        images, qs = normalize_batch(images, queries)
        if not images:
            return []
        targets = self._targets(target, len(images))
        decoded = [self._load(img) for img in images]
        return self._run(self._route(decoded, qs, targets))

    async def aroute_batch_results(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                                   target: Any = ROUTER_TARGET) -> list[RouteDecision | Exception]:
        """Async :meth:`route_batch_results`."""
        images, qs = normalize_batch(images, queries)
        if not images:
            return []
        targets = self._targets(target, len(images))
        images = await self._afetch(images)
        decoded = await asyncio.to_thread(lambda: [self._load(img) for img in images])
        return await self._arun(self._route(decoded, qs, targets))

    def _targets(self, target: Any, n: int) -> list[str | None]:
        """One resolved target per image (a list from the glue, or one target for all)."""
        targets = list(target) if isinstance(target, (list, tuple)) else [target] * n
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for {n} images")
        return [self.resolve_target(t) for t in targets]

    def _load(self, image: ImageInput) -> DecodedImage:
        from ..core.payload import load_image

        return load_image(image, fetch=self.fetch, max_pixels=self.max_pixels, formats=self.formats)

    async def _apredictions(self, decoded: list[DecodedImage], queries: list[str]) -> list[Prediction | Exception]:
        """Ask the service for one prediction per page (its view and size travel, no target)."""
        info = await self._ainfo()
        views = await asyncio.to_thread(lambda: [self.view(d) for d in decoded])
        items = [{"image": encode_view(v.image), "page_size": list(d.size), "question": q, "target": None}
                 for v, d, q in zip(views, decoded, queries)]
        results: list[Any] = []
        for start in range(0, len(items), self.max_items):
            chunk = items[start:start + self.max_items]
            body = await self._post_json("/route", {"items": chunk})
            got = body.get("results") if isinstance(body, dict) else None
            if not isinstance(got, list) or len(got) != len(chunk):
                raise ServiceUnavailable(f"{self.url}/route answered without one result per item")
            results.extend(got)
        where = f"router service {self.url} ({info.get('router')})"
        out: list[Prediction | Exception] = []
        for result in results:
            decision = result.get("decision") if isinstance(result, dict) else None
            if not isinstance(decision, dict):
                out.append(error_from_wire(result.get("error") if isinstance(result, dict) else result, where))
            elif decision.get("probabilities") is not None:
                out.append(Prediction(probabilities=decision["probabilities"]))
            elif decision.get("raw_long_side") is not None:
                out.append(Prediction(long_side=decision["raw_long_side"]))
            else:
                out.append(CaresError(f"{where}: a decision without probabilities or raw_long_side"))
        return out

    async def _route(self, decoded: list[DecodedImage], queries: list[str], targets: list[str | None]
                     ) -> list[RouteDecision | Exception]:
        try:
            predictions = await self._apredictions(decoded, queries)
        except ServiceUnavailable as exc:
            if self.fallback is None:
                raise
            return await asyncio.to_thread(self._fall_back, decoded, queries, targets, exc)
        name = str((self._shared.info or {}).get("router") or self.name)
        out: list[RouteDecision | Exception] = []
        for d, prediction, t in zip(decoded, predictions, targets):
            if isinstance(prediction, Exception):
                out.append(prediction)
                continue
            try:  # decided here: this router's policy and targets (one per image, from the glue)
                out.append(self.decide(d, prediction, target=t).model_copy(update={"router": name}))
            except Exception as exc:  # noqa: BLE001 - an unknown target or a misfit policy fails its item
                out.append(exc)
        return out

    def _fall_back(self, decoded: list[DecodedImage], queries: list[str], targets: list[str | None],
                   why: Exception) -> list[RouteDecision | Exception]:
        assert self.fallback is not None
        note = f"router service {self.url} unavailable ({why}); decided by the local fallback {self.fallback.name}"
        logger.warning("RemoteRouter: %s", note)
        decisions = self.fallback.route_batch(decoded, queries, target=targets)
        self._shared.fallbacks += len(decisions)
        return [d.model_copy(update={"notes": list(d.notes) + [note]}) for d in decisions]

    # -- HTTP on one shared background loop --------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        shared = self._shared
        with shared.lock:
            if shared.loop is None or shared.loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="cares-remote-router", daemon=True)
                thread.start()
                shared.loop = loop
            return shared.loop

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    async def _arun(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()))

    async def _session_(self) -> Any:
        shared = self._shared
        if shared.session is None or shared.session.closed:
            import aiohttp

            shared.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout),
                headers=self.headers,
            )
        return shared.session

    async def _get_json(self, path: str) -> Any:
        return await self._request("GET", path, None)

    async def _post_json(self, path: str, payload: Any) -> Any:
        return await self._request("POST", path, payload)

    async def _request(self, method: str, path: str, payload: Any) -> Any:
        import aiohttp

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._shared.retried += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            self._shared.attempts += 1
            try:
                session = await self._session_()
                async with session.request(method, self.url + path, json=payload) as response:
                    if response.status in TRANSIENT_STATUS:
                        raise _Transient(f"HTTP {response.status}: {(await response.text())[:200]}")
                    body = await response.json(content_type=None)
                    if response.status >= 400:
                        error = body.get("error") if isinstance(body, dict) else body
                        raise error_from_wire(error, f"router service {self.url}{path} (HTTP {response.status})")
                    return body
            except (_Transient, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError,
                    ConnectionError) as exc:
                last = exc
                logger.debug("RemoteRouter: %s %s attempt %d failed: %r", method, path, attempt + 1, exc)
        raise ServiceUnavailable(f"{method} {self.url}{path} failed after {self.retries + 1} attempts: {last!r}")

    def close(self) -> None:
        """Close the connection pool and stop the background loop (a later call starts them again).

        Copies made by :meth:`with_policy` share them, so closing one closes them for all."""
        shared = self._shared
        with shared.lock:
            loop, session = shared.loop, shared.session
            shared.loop = shared.session = None
        if loop is None or loop.is_closed():
            return
        if session is not None:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)

    def __enter__(self) -> "RemoteRouter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __copy__(self) -> "RemoteRouter":
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)  # shares the pool, /info and counters (with_policy)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_shared"] = None
        state["_info"] = self._shared.info  # no loop, pool or counters travel
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        info = state.pop("_info", None)
        self.__dict__.update(state)
        self._shared = _Shared(info)

    def __repr__(self) -> str:
        fb = None if self.fallback is None else self.fallback.name
        return f"RemoteRouter(url={self.url!r}, target={self.target!r}, retries={self.retries}, fallback={fb!r})"


def _raise_first(results: list[RouteDecision | Exception]) -> list[RouteDecision]:
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]
