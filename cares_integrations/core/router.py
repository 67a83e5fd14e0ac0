"""The Router interface: (page image, question) in, a :class:`RouteDecision` out.

Concrete routers implement one method, :meth:`Router._predict`, over a batch of decoded images
and questions, returning class probabilities (or a long side directly). Everything else, decoding
every input form, the resolution policy, never upscaling, provider-aware sizing and token counts,
lives here once, so every router behaves the same way.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from .decision import RouteDecision
from .payload import DEFAULT_MAX_PIXELS, DecodedImage, FetchPolicy, ImageInput, load_image
from .policy import ResolutionPolicy
from .resize import fit_long_side

_UNSET: Any = object()


@dataclass(frozen=True)
class Prediction:
    """A router's raw output for one input: class probabilities over the policy's bins, or a
    long side in pixels when the router computes one directly."""

    probabilities: Sequence[float] | None = None
    long_side: float | None = None

    def __post_init__(self) -> None:
        if (self.probabilities is None) == (self.long_side is None):
            raise ValueError("a Prediction holds exactly one of probabilities or long_side")


def _as_queries(queries: str | Sequence[str], n: int) -> list[str]:
    if isinstance(queries, str):
        return [queries] * n
    queries = list(queries)
    if len(queries) != n:
        raise ValueError(f"got {n} images but {len(queries)} queries; pass one query per image or a single string")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"query {i} must be a string, got {type(q).__name__}")
    return queries


def _batch_args(images: Sequence[ImageInput], queries: str | Sequence[str]) -> tuple[list[ImageInput], list[str]]:
    """Check a batch's arguments: a sequence of images and one query each (or one for all)."""
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError("a batch takes a sequence of images; use route()/aroute() for a single image")
    images = list(images)
    return images, _as_queries(queries, len(images))


class Router(ABC):
    """Base class of every router.

    Options shared by all routers: ``policy`` (bins, continuous/discrete, clamps), ``target``
    (default target model for provider-aware sizing and token counts, overridable per call),
    ``free_detail`` (grow to the largest size costing the same tokens), ``max_pixels``
    (decompression-bomb guard) and ``fetch`` (opt-in remote fetching).
    """

    name: str = "router"

    def __init__(
        self,
        *,
        policy: ResolutionPolicy | None = None,
        target: str | None = None,
        free_detail: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        fetch: FetchPolicy | None = None,
    ) -> None:
        self.policy = policy or ResolutionPolicy()
        self.target = target
        self.free_detail = free_detail
        self.max_pixels = max_pixels
        self.fetch = fetch
        if target is not None:
            from .tokens import get_target

            get_target(target)  # fail early on an unknown name

    # -- what subclasses implement -------------------------------------------------------------
    @abstractmethod
    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """Predict for a batch of decoded images and their questions (same length, same order)."""

    # -- public API ----------------------------------------------------------------------------
    def route(self, image: ImageInput, query: str, *, target: str | None = _UNSET) -> RouteDecision:
        """Route one image for one question."""
        return self.route_batch([image], [query], target=target)[0]

    def route_batch(
        self,
        images: Sequence[ImageInput],
        queries: str | Sequence[str],
        *,
        target: str | None = _UNSET,
    ) -> list[RouteDecision]:
        """Route many images at once (one batched prediction); returns decisions in input order.

        ``queries`` is one question per image, or a single string used for all of them.
        """
        images, qs = _batch_args(images, queries)
        if not images:
            return []
        decoded = [self._decode(img) for img in images]
        predictions = self._predict(decoded, qs)
        if len(predictions) != len(decoded):
            raise RuntimeError(f"{self.name} returned {len(predictions)} predictions for {len(decoded)} images")
        chosen = self.target if target is _UNSET else target
        return [self.decide(d, p, target=chosen) for d, p in zip(decoded, predictions)]

    async def aroute(self, image: ImageInput, query: str, *, target: str | None = _UNSET) -> RouteDecision:
        """Async :meth:`route`; the work runs in a worker thread so the event loop never blocks."""
        return (await self.aroute_batch([image], [query], target=target))[0]

    async def aroute_batch(
        self,
        images: Sequence[ImageInput],
        queries: str | Sequence[str],
        *,
        target: str | None = _UNSET,
    ) -> list[RouteDecision]:
        """Async :meth:`route_batch`, run in a worker thread."""
        return await asyncio.to_thread(self.route_batch, list(images), queries, target=target)

    # -- shared machinery ----------------------------------------------------------------------
    def _decode(self, image: ImageInput) -> DecodedImage:
        return load_image(image, fetch=self.fetch, max_pixels=self.max_pixels)

    def decide(self, decoded: DecodedImage, prediction: Prediction, *, target: str | None = None) -> RouteDecision:
        """Turn a prediction into a decision: policy, clamps, never-upscale, provider sizing, tokens."""
        width, height = decoded.size
        image_long = max(width, height)
        probabilities = None
        bins = None
        if prediction.probabilities is not None:
            probabilities = [float(p) for p in prediction.probabilities]
            raw = self.policy.raw_long_side(probabilities)
            bins = list(self.policy.bins)
            mode = self.policy.mode
        else:
            raw = float(prediction.long_side)  # type: ignore[arg-type]
            mode = "direct"
        long_side = self.policy.clamp(raw, image_long)
        tokens_before = tokens_after = None
        if target is None:
            size = fit_long_side(width, height, long_side)
        else:
            from .sizing import send_size
            from .tokens import visual_tokens

            size = send_size(width, height, long_side, target, free_detail=self.free_detail)
            tokens_before = visual_tokens(target, width, height)
            tokens_after = visual_tokens(target, *size)
        return RouteDecision(
            router=self.name,
            long_side=long_side,
            original_size=(width, height),
            send_size=tuple(size),
            target=target,
            tokens_before=tokens_before,
            tokens_after=tokens_after,
            probabilities=probabilities,
            bins=bins,
            mode=mode,
            raw_long_side=raw,
            notes=list(decoded.notes),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, policy={self.policy!r}, target={self.target!r})"
