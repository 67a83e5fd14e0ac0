"""``RemoteRouter``: a :class:`~cares_integrations.Router` whose predictions come from a router
service (the Ray Serve deployment in :mod:`.app`), usable wherever a router is.

The page is decoded here, under this router's own intake rules (``fetch``, ``max_pixels``); only
the service router's view (``GET /info``: one 512-px tile for the gate, a grayscale working-size
copy for text-scale) and the page size travel, and the original is resized here from the
decision. HTTP is async (aiohttp) on one background event loop shared by every caller, so
connections are reused across sync and async calls and across threads; transient failures
(connection errors, timeouts, HTTP 500/502/503/504) are retried with exponential backoff. With
a ``fallback`` router, a service that stays down is routed around, and the decision says so.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any, Sequence

from ..core.decision import RouteDecision
from ..core.errors import CaresError
from ..core.optional import require
from ..core.payload import DecodedImage, ImageInput
from ..core.router import ROUTER_TARGET, Prediction, Router, _batch_args, logger
from ..core.policy import ResolutionPolicy
from ..core.view import ViewSpec
from .wire import encode_view, error_from_wire

__all__ = ["RemoteRouter", "ServiceUnavailable"]

TRANSIENT_STATUS = frozenset({500, 502, 503, 504})


class ServiceUnavailable(CaresError, ConnectionError):
    """The router service could not be reached (or kept failing) after every retry."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""


class RemoteRouter(Router):
    """Route through a router service at ``url`` (its base URL, e.g. ``http://127.0.0.1:8000``).

    ``timeout``: seconds for a whole request (``connect_timeout`` to connect); ``retries``:
    extra attempts on transient failures, waiting ``backoff * 2**attempt`` seconds (jittered,
    at most ``max_backoff``); ``fallback``: a local router (or a name for ``load_router``) used
    when the service stays unreachable; its decisions carry a note saying so. ``max_items``
    splits large batches into several requests; ``max_connections`` bounds the pool.
    Other options (``target``, ``max_pixels``, ``fetch``) are the usual router options; the
    resolution policy is the service router's.
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
        self.attempts = 0
        """HTTP attempts made (first tries and retries)."""
        self.retried = 0
        """Attempts that were retries after a transient failure."""
        self.fallbacks = 0
        """Items decided by the fallback router."""
        self._info: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None
        self._start_lock = threading.Lock()

    # -- the service's description ---------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The service's ``GET /info`` (router name, view, limits), fetched once and kept."""
        if self._info is None:
            self._adopt(self._run(self._get_json("/info")))
        return self._info  # type: ignore[return-value]

    def _adopt(self, info: dict[str, Any]) -> None:
        """Take the service router's policy, so local :meth:`decide` calls agree with the service."""
        if isinstance(info.get("policy"), dict):
            self.policy = ResolutionPolicy(**info["policy"])
        self.free_detail = bool(info.get("free_detail", self.free_detail))
        self._info = info

    @property
    def view_spec(self) -> ViewSpec | None:
        """The service router's view (what is sent for each page)."""
        view = self.info().get("view")
        return None if view is None else ViewSpec(**view)

    # -- routing -------------------------------------------------------------------------------
    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """The service's raw predictions (for :meth:`predict` + :meth:`decide` with several targets)."""
        out = []
        for decision in _raise_first(self._run(self._route(images, queries, None))):
            if decision.probabilities is not None:
                out.append(Prediction(probabilities=decision.probabilities))
            else:
                out.append(Prediction(long_side=decision.raw_long_side))
        return out

    def route_batch(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                    target: str | None = ROUTER_TARGET) -> list[RouteDecision]:
        """Route on the service; raises the typed error of the first item that failed there."""
        return _raise_first(self.route_batch_results(images, queries, target=target))

    async def aroute_batch(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                           target: str | None = ROUTER_TARGET) -> list[RouteDecision]:
        """Async :meth:`route_batch` (the HTTP call runs on the shared loop; decoding in a thread)."""
        return _raise_first(await self.aroute_batch_results(images, queries, target=target))

    def route_batch_results(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                            target: str | None = ROUTER_TARGET) -> list[RouteDecision | Exception]:
        """One result per image: its decision, or the typed exception it alone failed with."""
        images, qs = _batch_args(images, queries)
        if not images:
            return []
        decoded = [self._load(img) for img in images]
        return self._run(self._route(decoded, qs, self.resolve_target(target)))

    async def aroute_batch_results(self, images: Sequence[ImageInput], queries: str | Sequence[str], *,
                                   target: str | None = ROUTER_TARGET) -> list[RouteDecision | Exception]:
        """Async :meth:`route_batch_results`."""
        images, qs = _batch_args(images, queries)
        if not images:
            return []
        decoded = await asyncio.to_thread(lambda: [self._load(img) for img in images])
        return await self._arun(self._route(decoded, qs, self.resolve_target(target)))

    def _load(self, image: ImageInput) -> DecodedImage:
        from ..core.payload import load_image

        return load_image(image, fetch=self.fetch, max_pixels=self.max_pixels, formats=self.formats)

    async def _route(self, decoded: list[DecodedImage], queries: list[str], target: str | None
                     ) -> list[RouteDecision | Exception]:
        try:
            if self._info is None:
                self._adopt(await self._get_json("/info"))
            views = await asyncio.to_thread(lambda: [self.view(d) for d in decoded])
            items = [{"image": encode_view(v.image), "page_size": list(d.size), "question": q, "target": target}
                     for v, d, q in zip(views, decoded, queries)]
            results: list[Any] = []
            for start in range(0, len(items), self.max_items):
                body = await self._post_json("/route", {"items": items[start:start + self.max_items]})
                got = body.get("results") if isinstance(body, dict) else None
                if not isinstance(got, list) or len(got) != len(items[start:start + self.max_items]):
                    raise ServiceUnavailable(f"{self.url}/route answered without one result per item")
                results.extend(got)
        except ServiceUnavailable as exc:
            if self.fallback is None:
                raise
            return await asyncio.to_thread(self._fall_back, decoded, queries, target, exc)
        out: list[RouteDecision | Exception] = []
        for d, result in zip(decoded, results):
            if isinstance(result, dict) and isinstance(result.get("decision"), dict):
                decision = RouteDecision(**result["decision"])
                out.append(decision.model_copy(update={"notes": list(d.notes) + list(decision.notes)}))
            else:
                out.append(error_from_wire((result or {}).get("error") if isinstance(result, dict) else result,
                                           f"router service {self.url}"))
        return out

    def _fall_back(self, decoded: list[DecodedImage], queries: list[str], target: str | None,
                   why: Exception) -> list[RouteDecision | Exception]:
        assert self.fallback is not None
        note = f"router service {self.url} unavailable ({why}); decided by the local fallback {self.fallback.name}"
        logger.warning("RemoteRouter: %s", note)
        decisions = self.fallback.route_batch(decoded, queries, target=target)
        self.fallbacks += len(decisions)
        return [d.model_copy(update={"notes": list(d.notes) + [note]}) for d in decisions]

    # -- HTTP on one shared background loop --------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="cares-remote-router", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    async def _arun(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()))

    async def _session_(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout),
                headers=self.headers,
            )
        return self._session

    async def _get_json(self, path: str) -> Any:
        return await self._request("GET", path, None)

    async def _post_json(self, path: str, payload: Any) -> Any:
        return await self._request("POST", path, payload)

    async def _request(self, method: str, path: str, payload: Any) -> Any:
        import aiohttp

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            self.attempts += 1
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
        """Close the connection pool and stop the background loop (a later call starts them again)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), loop).result(timeout=5)
            self._session = None
        loop.call_soon_threadsafe(loop.stop)
        self._loop = None

    def __enter__(self) -> "RemoteRouter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_loop=None, _session=None, _start_lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start_lock = threading.Lock()

    def __repr__(self) -> str:
        fb = None if self.fallback is None else self.fallback.name
        return f"RemoteRouter(url={self.url!r}, target={self.target!r}, retries={self.retries}, fallback={fb!r})"


def _raise_first(results: list[RouteDecision | Exception]) -> list[RouteDecision]:
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results  # type: ignore[return-value]
