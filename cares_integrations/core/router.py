"""The Router interface: (page image, question) in, a :class:`RouteDecision` out.

Concrete routers implement one method, :meth:`Router._predict`, over a batch of decoded images
and questions, returning class probabilities (or a long side directly). Everything else, decoding
every input form, the resolution policy, never upscaling, provider-aware sizing and token counts,
lives here once, so every router behaves the same way. A router that can gather concurrent async
callers into shared batches (the gate) overrides one more hook, :meth:`Router._apredict`.

``target=`` arguments default to :data:`ROUTER_TARGET`, "no target given": the router's own
``target`` is used. ``target=None`` asks for no provider-aware sizing at all.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .decision import RouteDecision
from .fetch import aprefetch
from .payload import DEFAULT_MAX_PIXELS, DecodedImage, FetchPolicy, ImageInput, load_image
from .policy import ResolutionPolicy
from .sizing import send_size
from .steps import plan
from .view import ViewSpec, apply_view

logging.getLogger("cares_integrations").addHandler(logging.NullHandler())
# The library logs under "cares_integrations.*" (decisions at DEBUG, passthroughs and fallbacks at
# WARNING); the NullHandler keeps it silent unless the application configures logging.
logger = logging.getLogger(__name__)


class _RouterTarget:
    """Type of :data:`ROUTER_TARGET` (a singleton)."""

    _instance: "_RouterTarget | None" = None

    def __new__(cls) -> "_RouterTarget":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ROUTER_TARGET"

    def __reduce__(self) -> str:
        return "ROUTER_TARGET"

    def __copy__(self) -> "_RouterTarget":
        return self

    def __deepcopy__(self, memo: dict) -> "_RouterTarget":
        return self


ROUTER_TARGET: Any = _RouterTarget()
"""The "no target given" sentinel: routing calls that get it use the router's own ``target``."""


def target_or_router(target: str | None) -> Any:
    """A component option where None means "the router's own target", as a routing argument:
    :data:`ROUTER_TARGET` for None, the name otherwise."""
    return ROUTER_TARGET if target is None else target


@dataclass(frozen=True)
class Prediction:
    """A router's raw output for one input: class probabilities over the policy's bins, or a
    long side in pixels when the router computes one directly."""

    probabilities: Sequence[float] | None = None
    long_side: float | None = None

    def __post_init__(self) -> None:
        if (self.probabilities is None) == (self.long_side is None):
            raise ValueError("a Prediction holds exactly one of probabilities or long_side")


def queries_for(queries: str | Sequence[str], n: int) -> list[str]:
    """One question per image: a single string repeated ``n`` times, or a checked list of ``n`` strings."""
    if isinstance(queries, str):
        return [queries] * n
    queries = list(queries)
    if len(queries) != n:
        raise ValueError(f"got {n} images but {len(queries)} queries; pass one query per image or a single string")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise TypeError(f"query {i} must be a string, got {type(q).__name__}")
    return queries


def normalize_batch(images: Sequence[ImageInput], queries: str | Sequence[str]) -> tuple[list[ImageInput], list[str]]:
    """A batch call's arguments, checked and as lists: ``(images, one question per image)``.

    ``images`` must be a sequence (a single ``str``/``bytes`` is refused: that is ``route()``'s
    job); ``queries`` is one string per image or a single string for all of them. Every
    ``route_batch``-like method uses it, including routers that override ``route_batch`` itself
    (``RemoteRouter``), so they all accept and refuse the same arguments.
    """
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError("a batch takes a sequence of images; use route()/aroute() for a single image")
    images = list(images)
    return images, queries_for(queries, len(images))


class Router(ABC):
    """Base class of every router.

    Options shared by all routers: ``policy`` (bins, continuous/discrete, clamps), ``target``
    (default target model for provider-aware sizing and token counts, overridable per call),
    ``free_detail`` (grow to the largest size costing the same tokens), ``max_pixels``
    (decompression-bomb guard; None lifts it), ``fetch`` (opt-in remote fetching) and
    ``formats`` (the decoder allow-list, default PNG, JPEG, WebP, GIF, BMP, TIFF).
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
        formats: Iterable[str] | None = None,
    ) -> None:
        self.policy = policy or ResolutionPolicy()
        self.target = target
        self.free_detail = free_detail
        self.max_pixels = max_pixels
        self.fetch = fetch
        self.source: str | None = None
        """The ``load_router`` source this router was built from (set by the registry), if any."""
        self.formats = None if formats is None else frozenset(f.upper() for f in formats)
        if target is not None:
            from .tokens import get_target

            get_target(target)  # fail early on an unknown name

    # -- what subclasses implement -------------------------------------------------------------
    @abstractmethod
    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """Predict for a batch of decoded images and their questions (same length, same order)."""

    async def _apredict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """Async :meth:`_predict`; by default the batch runs in a worker thread. A router that
        gathers concurrent callers into shared batches (the gate) overrides this."""
        return await asyncio.to_thread(self._predict, images, queries)

    @property
    def view_spec(self) -> ViewSpec | None:
        """The view of a page this router's prediction reads (None: the whole page as decoded).

        Routers override this to declare the smallest input they need (the gate: one tile; the
        text-scale router: its grayscale working size). Every prediction reads this view, so a
        client that sends only the view gets the same decision (see ``cares_integrations.serve``).
        """
        return None

    def view(self, decoded: DecodedImage) -> DecodedImage:
        """The :attr:`view_spec` view of a decoded page; keeps the page's size and notes."""
        return apply_view(decoded, self.view_spec)

    def _check_policy(self, policy: ResolutionPolicy) -> None:
        """Raise ValueError if ``policy`` does not fit this router (e.g. a different number of bins)."""

    # -- public API ----------------------------------------------------------------------------
    def route(self, image: ImageInput, query: str, *, target: str | None = ROUTER_TARGET) -> RouteDecision:
        """Route one image for one question."""
        return self.route_batch([image], [query], target=target)[0]

    def route_batch(
        self,
        images: Sequence[ImageInput],
        queries: str | Sequence[str],
        *,
        target: str | None = ROUTER_TARGET,
    ) -> list[RouteDecision]:
        """Route many images at once (one batched prediction); returns decisions in input order.

        ``queries`` is one question per image, or a single string used for all of them.
        """
        images, qs = normalize_batch(images, queries)
        if not images:
            return []
        decoded = [self._decode(img) for img in images]
        return self._decide_all(decoded, self._checked(self._predict(decoded, qs), decoded), target)

    async def aroute(self, image: ImageInput, query: str, *, target: str | None = ROUTER_TARGET) -> RouteDecision:
        """Async :meth:`route`; the work runs in worker threads so the event loop never blocks."""
        return (await self.aroute_batch([image], [query], target=target))[0]

    async def aroute_batch(
        self,
        images: Sequence[ImageInput],
        queries: str | Sequence[str],
        *,
        target: str | None = ROUTER_TARGET,
    ) -> list[RouteDecision]:
        """Async :meth:`route_batch`: decoding runs in a worker thread, the prediction through
        :meth:`_apredict` (a worker thread, or the router's shared batches)."""
        images, qs = normalize_batch(images, queries)
        if not images:
            return []
        images = await self._afetch(images)  # on the fetch pool: slow servers never hold these threads
        decoded = await asyncio.to_thread(lambda: [self._decode(img) for img in images])
        return self._decide_all(decoded, self._checked(await self._apredict(decoded, qs), decoded), target)

    def predict(self, images: Sequence[ImageInput], queries: str | Sequence[str]) -> list[Prediction]:
        """The raw predictions for a batch, before any sizing: pass each one to :meth:`decide` with
        the image (decoded by :func:`~cares_integrations.load_image`) and a target, as many times
        as there are targets, to size one page for several models with one prediction."""
        images, qs = normalize_batch(images, queries)
        if not images:
            return []
        decoded = [self._decode(img) for img in images]
        return self._checked(self._predict(decoded, qs), decoded)

    def with_policy(self, policy: ResolutionPolicy | None) -> "Router":
        """This router with another resolution policy (bins, mode, clamps); ``self`` for None.

        The copy shares the model and every other setting with ``self``; ValueError if the policy
        does not fit the router (a learned router's bins are fixed by its weights)."""
        if policy is None or policy == self.policy:
            return self
        if not isinstance(policy, ResolutionPolicy):
            raise TypeError(f"policy must be a ResolutionPolicy, got {type(policy).__name__}")
        self._check_policy(policy)
        routed = copy.copy(self)
        routed.policy = policy
        return routed

    def identity(self) -> dict[str, Any]:
        """What decides this router's outputs, as plain JSON-friendly data: its name and class,
        the ``load_router`` source, target and policy, plus what the router adds
        (:meth:`_identity`). Serialized components include it, so caches keyed on their
        serialized form change when the router does."""
        cls = type(self)
        return {
            "router": self.name,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "source": self.source,
            "target": self.target,
            "policy": self.policy.model_dump(mode="json"),
            "free_detail": self.free_detail,
            **self._identity(),
        }

    def _identity(self) -> dict[str, Any]:
        """Router-specific parts of :meth:`identity` (e.g. the weights it runs)."""
        return {}

    def resolve_target(self, target: str | None = ROUTER_TARGET) -> str | None:
        """The target a call sizes for: ``target``, or the router's own for :data:`ROUTER_TARGET`."""
        return self.target if target is ROUTER_TARGET else target

    async def _afetch(self, images: list[ImageInput]) -> list[ImageInput]:
        """``images`` with allowed remote URLs downloaded on the fetch pool (raises a fetch's error)."""
        fetched = await aprefetch(images, self.fetch)
        for img in fetched:
            if isinstance(img, BaseException):
                raise img
        return fetched

    # -- shared machinery ----------------------------------------------------------------------
    def _decode(self, image: ImageInput) -> DecodedImage:
        return self.view(load_image(image, fetch=self.fetch, max_pixels=self.max_pixels, formats=self.formats))

    def _checked(self, predictions: list[Prediction], decoded: list[DecodedImage]) -> list[Prediction]:
        if len(predictions) != len(decoded):
            raise RuntimeError(f"{self.name} returned {len(predictions)} predictions for {len(decoded)} images")
        return predictions

    def _decide_all(self, decoded: list[DecodedImage], predictions: list[Prediction], target: Any) -> list[RouteDecision]:
        # one target for all images, or (from the glue) one per image, e.g. capped by a block's detail
        per_image = target if isinstance(target, (list, tuple)) else [target] * len(decoded)
        if len(per_image) != len(decoded):
            raise ValueError(f"got {len(per_image)} targets for {len(decoded)} images")
        decisions = [
            self.decide(d, p, target=self.resolve_target(t)) for d, p, t in zip(decoded, predictions, per_image)
        ]
        if logger.isEnabledFor(logging.DEBUG):
            for decision in decisions:
                logger.debug("route: %s", decision.summary())
        return decisions

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
        extra: dict[str, Any] = {}
        if target is None:
            size = send_size(width, height, long_side)
        else:
            sized = plan(width, height, long_side, target, free_detail=self.free_detail)
            size, tokens_before, tokens_after = sized.send_size, sized.tokens_before, sized.tokens_after
            extra = {
                "step": sized.step.label,
                "request_knobs": sized.request_knobs,
                "processor_kwargs": sized.processor_kwargs,
                "cannot_save": sized.cannot_save,
            }
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
            **extra,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, policy={self.policy!r}, target={self.target!r})"
