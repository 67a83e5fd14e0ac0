"""Options shared by the LlamaIndex components: router, target, error policy, output format."""

from __future__ import annotations

from typing import Any, Literal, Optional

from llama_index.core.bridge.pydantic import BaseModel, Field
from pydantic import computed_field

from ..routers.registry import load_router
from ..core.formats import OutputFormat
from ..core.policy import ResolutionPolicy
from ..core.router import Router, target_or_router
from ..core.sources import LocalFilePolicy
from ._nodes import DEFAULT_METADATA_KEY


class CaresOptions(BaseModel):
    """Mixin of the pydantic fields every CARES LlamaIndex component takes.

    Mixed into LlamaIndex components (``BaseNodePostprocessor``, ``TransformComponent``); each sets
    its router in a private attribute ``_router`` through :meth:`_init_router`. The router's
    identity (source, target, policy; :meth:`Router.identity`) is part of the serialized form
    (``router_identity``), so LlamaIndex's ingestion cache sees a changed router as a new
    transformation.
    """

    policy: Optional[ResolutionPolicy] = Field(
        default=None,
        description="Resolution policy (bins, mode, clamps) used instead of the router's own; None keeps the router's.",
    )

    target: Optional[str] = Field(
        default=None,
        description="Target model whose token rules size the images (e.g. 'openai:gpt-4o'); None uses the router's own.",
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise",
        description="Corrupt or missing image: 'raise' an ImageDecodeError, or 'passthrough' the node unchanged with the reason recorded.",
    )
    image_format: OutputFormat = Field(
        default=None, description="Format of resized images ('PNG', 'JPEG', 'WEBP'); None keeps each image's own."
    )
    quality: int = Field(default=90, ge=1, le=100, description="Quality for lossy formats (JPEG, WEBP).")
    local_files: Optional[LocalFilePolicy] = Field(
        default=None,
        description="Folders that image_url / metadata file_path paths and file: URLs may be read from; None: "
        "never (node fields are untrusted). A node's own image_path is always read (a regular file under the byte limit).",
    )
    metadata_key: Optional[str] = Field(
        default=DEFAULT_METADATA_KEY,
        description="Node metadata key for the decision (excluded from LLM and embedding text); None records nothing.",
    )

    def _init_router(self, router: Router | str | None) -> None:
        """Check the target (UnknownTargetError names the known ones) and load the router."""
        if self.target is not None:
            from ..core.tokens import get_target

            get_target(self.target)
        loaded = router if isinstance(router, Router) else load_router(router)
        self._router = loaded.with_policy(self.policy)

    @property
    def router(self) -> Router:
        """The router that picks each image's size (carrying ``policy`` when one is set)."""
        return self._router  # type: ignore[attr-defined]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def router_identity(self) -> dict[str, Any]:
        """The router's :meth:`~cares_integrations.Router.identity`, serialized with the component."""
        return self.router.identity()

    def _target(self) -> Any:
        return target_or_router(self.target)

    def _target_name(self) -> Any:
        """The target images are sized for: ``target``, else the router's own."""
        return self.target or self.router.target

    def _route_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of the core's ``route_and_resize`` / ``route_images``."""
        return {"target": self._target(), "on_error": self.on_error, "fmt": self.image_format,
                "quality": self.quality, "local_files": self.local_files}
