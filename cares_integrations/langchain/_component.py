"""Options shared by the LangChain components: router, target, policy, error policy, output format,
local files (the same names and checks as the LlamaIndex components' ``CaresOptions``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.formats import OutputFormat
from ..core.policy import ResolutionPolicy
from ..core.router import Router, target_or_router
from ..core.sources import LocalFilePolicy
from ..routers.registry import load_router

OPTION_NAMES: tuple[str, ...] = ("router", "target", "policy", "on_error", "image_format", "quality", "local_files")
"""The routing options every CARES LangChain component takes (fields of :class:`CaresOptions`)."""


class CaresOptions(BaseModel):
    """Mixin of the pydantic fields every CARES LangChain component takes.

    Mixed into ``CaresImageResizer``, ``CaresDocumentTransformer``, the tools and
    ``CaresChatModel`` (``CaresMiddleware`` passes the same names to its resizer), so each option
    has one name, one default and one check across them and the LlamaIndex components:
    ``router`` takes a :class:`Router` or any :func:`~cares_integrations.load_router` source
    (``"fixed:768"``, a folder, None for the default); an unknown ``target`` is an
    :class:`~cares_integrations.UnknownTargetError` at construction; ``image_format`` is checked
    by :func:`cares_integrations.core.formats.output_format`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Router = Field(default_factory=load_router)
    """The router that picks each image's size: a :class:`Router` or a ``load_router`` source
    (``"fixed:768"``, a gate folder, ``"hub:org/gate"``); default: :func:`cares_integrations.load_router`."""

    target: str | None = None
    """Target model (e.g. ``"openai:gpt-4o"``) for provider-aware sizing and token counts; None
    uses the router's own."""

    policy: ResolutionPolicy | None = None
    """Resolution policy (bins, mode, clamps) used instead of the router's own; None keeps the router's."""

    on_error: Literal["raise", "passthrough"] = "raise"
    """A corrupt or missing image raises :class:`~cares_integrations.ImageDecodeError`
    (``"raise"``), or is passed on unchanged with the reason recorded (``"passthrough"``)."""

    image_format: OutputFormat = None
    """Format resized images are written in (``"PNG"``, ``"JPEG"``, ``"WEBP"``, any case); None
    keeps each image's own."""

    quality: int = Field(default=90, ge=1, le=100)
    """JPEG/WebP quality of re-encoded images."""

    local_files: LocalFilePolicy | None = None
    """Folders that paths and ``file:`` URLs in image inputs may be read from. None (the default):
    message content, tool arguments and document metadata are untrusted, such images pass
    through with the reason recorded."""

    def __init__(self, **data: Any) -> None:
        """Load ``router`` from its source and check ``target`` first, so their errors are the
        library's own (``UnknownTargetError`` ...), as in the LlamaIndex components."""
        if "router" in data and not isinstance(data["router"], Router):
            data["router"] = load_router(data["router"])
        if isinstance(data.get("target"), str):
            from ..core.tokens import get_target

            get_target(data["target"])  # UnknownTargetError names the known ones
        super().__init__(**data)

    def _router(self) -> Router:
        """The router to call: ``router``, carrying ``policy`` when one is set."""
        return self.router.with_policy(self.policy)

    def _target(self) -> Any:
        """``target`` as a routing argument (the router's own when None)."""
        return target_or_router(self.target)

    def _target_name(self) -> Any:
        """The target images are sized for: ``target``, else the router's own."""
        return self._router().target if self.target is None else self.target

    def _route_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The options as keyword arguments of :func:`~cares_integrations.route_and_resize` (and
        the core's ``route_images``), with ``overrides`` replacing some."""
        kwargs = {"target": self._target(), "on_error": self.on_error, "fmt": self.image_format,
                  "quality": self.quality, "local_files": self.local_files}
        return {**kwargs, **overrides}

    def _options_given(self) -> dict[str, Any]:
        """The options set explicitly on this component (to hand on to the resizer it builds)."""
        return {name: getattr(self, name) for name in OPTION_NAMES if name in self.model_fields_set}
