"""The Ray Serve deployment: any router the library loads, behind an HTTP ingress, with
``@serve.batch`` dynamic batching across every caller, replicas, GPU fractions and autoscaling.

Run it with ``cares serve ROUTER`` or ``serve run cares_integrations.serve.app:app_builder
router=text-scale`` (or a config file; see docs/serving.md). Endpoints: ``POST /route``,
``GET /info``, ``GET /healthz``, ``GET /stats`` (see :mod:`.wire`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from ..core.optional import require

require("ray.serve", "serve", purpose="the Ray Serve deployment")
from ray import serve  # noqa: E402
from ray.serve import metrics  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from ..core.payload import FetchPolicy  # noqa: E402
from ..routers.registry import load_router  # noqa: E402
from .service import ParsedItem, RouterService  # noqa: E402
from .wire import error_to_wire  # noqa: E402

__all__ = ["CaresRouterDeployment", "app_builder", "build_app"]

MAX_BODY_BYTES = 64 * 1024 * 1024
_BATCH_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
_LATENCY_BOUNDS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


@serve.deployment(name="cares-router", max_ongoing_requests=128, health_check_period_s=5,
                  health_check_timeout_s=30, ray_actor_options={"num_cpus": 1})
class CaresRouterDeployment:
    """One replica: a router loaded once (its vision-feature cache is per replica), items from
    concurrent requests gathered by ``@serve.batch`` into bounded batches (``max_batch_size``,
    ``batch_wait_ms``), one batched prediction per batch in a worker thread."""

    def __init__(self, router: str = "default", router_options: dict[str, Any] | None = None,
                 device: str | None = None, max_batch_size: int = 16, batch_wait_ms: float = 10.0,
                 fetch_hosts: list[str] | None = None, max_items: int = 256) -> None:
        self.service = RouterService(load_router(router, device=device, **dict(router_options or {})),
                                     fetch=FetchPolicy(fetch_hosts) if fetch_hosts else None, max_items=max_items)
        self._route_items.set_max_batch_size(int(max_batch_size))
        self._route_items.set_batch_wait_timeout_s(float(batch_wait_ms) / 1000.0)
        tags = {"router": self.service.router.name}
        self._m_items = metrics.Counter("cares_routed_items", description="Items routed.", tag_keys=("router",))
        self._m_calls = metrics.Counter("cares_model_calls", description="Batched predictions.", tag_keys=("router",))
        self._m_hits = metrics.Counter("cares_vision_cache_hits", description="Vision-cache hits.", tag_keys=("router",))
        self._m_misses = metrics.Counter("cares_vision_cache_misses", description="Vision-cache misses.",
                                         tag_keys=("router",))
        self._m_batch = metrics.Histogram("cares_batch_size", description="Items per batched prediction.",
                                          boundaries=_BATCH_BOUNDS, tag_keys=("router",))
        self._m_latency = metrics.Histogram("cares_batch_latency_ms", description="Batched prediction time (ms).",
                                            boundaries=_LATENCY_BOUNDS_MS, tag_keys=("router",))
        for m in (self._m_items, self._m_calls, self._m_hits, self._m_misses, self._m_batch, self._m_latency):
            m.set_default_tags(dict(tags))  # Ray adds its own tags to the dict it gets
        self._cache_seen = self.service.cache_counters()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _route_items(self, items: list[ParsedItem]) -> list[Any]:
        start = time.perf_counter()
        results = await asyncio.to_thread(self.service.route, items)
        self._m_latency.observe((time.perf_counter() - start) * 1000.0)
        self._m_batch.observe(len(items))
        self._m_items.inc(len(items))
        self._m_calls.inc()
        hits, misses = self.service.cache_counters()
        if hits > self._cache_seen[0]:
            self._m_hits.inc(hits - self._cache_seen[0])
        if misses > self._cache_seen[1]:
            self._m_misses.inc(misses - self._cache_seen[1])
        self._cache_seen = (hits, misses)
        return results

    async def route(self, body: Any) -> dict[str, Any]:
        """Route a parsed JSON body: every good item joins the shared batches; results in order."""
        parsed = await asyncio.to_thread(self.service.parse, body)
        good = [p for p in parsed if isinstance(p, ParsedItem)]
        routed = iter(await asyncio.gather(*(self._route_items(p) for p in good)))
        results = []
        for p in parsed:
            outcome = next(routed) if isinstance(p, ParsedItem) else p
            if isinstance(outcome, Exception):
                results.append({"error": error_to_wire(outcome)})
            else:
                results.append({"decision": outcome.model_dump(mode="json")})
        return {"results": results}

    async def __call__(self, request: Request) -> JSONResponse:
        """The HTTP ingress (paths are relative to the application's route prefix)."""
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and path == "info":
            return JSONResponse(self.service.info())
        if request.method == "GET" and path == "healthz":
            return JSONResponse({"ready": True, "pid": os.getpid(), "router": self.service.router.name})
        if request.method == "GET" and path == "stats":
            return JSONResponse({**self.service.stats(), "pid": os.getpid()})
        if request.method == "POST" and path == "route":
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                return JSONResponse({"error": {"type": "ValueError", "message": "request body too large"}}, 413)
            try:
                body = json.loads(raw)
                return JSONResponse(await self.route(body))
            except ValueError as exc:  # bad JSON or a malformed body as a whole
                return JSONResponse({"error": error_to_wire(exc)}, status_code=400)
        return JSONResponse({"error": {"type": "ValueError", "message": f"no endpoint {request.method} {path}"}}, 404)

    def check_health(self) -> None:
        """Ray Serve's health check: raising marks the replica unhealthy and it is replaced."""
        if not self.service.healthy:
            raise RuntimeError("the router failed every item of 20 batches in a row")


def build_app(router: str = "default", *, replicas: int | None = 1, num_gpus: float = 0.0, num_cpus: float = 1.0,
              max_batch_size: int = 16, batch_wait_ms: float = 10.0, autoscaling: dict[str, Any] | None = None,
              device: str | None = None, router_options: dict[str, Any] | None = None,
              fetch_hosts: list[str] | None = None, max_items: int = 256) -> Any:
    """The Serve application for ``router``: ``replicas`` fixed replicas, or ``autoscaling``
    (a Ray Serve ``autoscaling_config`` dict: ``min_replicas``, ``max_replicas``,
    ``target_ongoing_requests``...); each replica gets ``num_gpus`` (a fraction shares a GPU)
    and ``num_cpus``."""
    actor = {"num_cpus": float(num_cpus)}
    if num_gpus:
        actor["num_gpus"] = float(num_gpus)
    options: dict[str, Any] = {"ray_actor_options": actor}
    if autoscaling:
        options["autoscaling_config"] = dict(autoscaling)
        options["num_replicas"] = "auto"
    else:
        options["num_replicas"] = int(replicas or 1)
    if device is None and num_gpus:
        device = "cuda"
    return CaresRouterDeployment.options(**options).bind(
        router=router, router_options=router_options, device=device, max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms, fetch_hosts=fetch_hosts, max_items=max_items,
    )


def app_builder(args: dict[str, Any]) -> Any:
    """Application builder for ``serve run`` and config files: ``args`` are :func:`build_app`'s
    keywords (strings from the command line are converted)."""
    args = dict(args)
    conv = {"replicas": int, "num_gpus": float, "num_cpus": float, "max_batch_size": int, "batch_wait_ms": float,
            "max_items": int}
    for key, fn in conv.items():
        if key in args and args[key] is not None:
            args[key] = fn(args[key])
    if isinstance(args.get("fetch_hosts"), str):
        args["fetch_hosts"] = [h for h in args["fetch_hosts"].split(",") if h]
    return build_app(args.pop("router", "default"), **args)
