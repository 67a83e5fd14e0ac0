"""The instrumentation event that reports every resize decision made for one query.

Attach a handler to LlamaIndex's root dispatcher
(``get_dispatcher().add_event_handler(handler)``) and filter on :class:`CaresResizeEvent` to log
sizes and visual tokens saved, without changing what the LLM is sent.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence

from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation.events import BaseEvent

from ..core.apply import ImageResult
from ..core.conversation import summarize


class CaresResizeEvent(BaseEvent):
    """Dispatched once per query (or per chat-message list) with the decision for every image.

    ``decisions`` holds one JSON-friendly dict per image, in order (``ImageResult.as_metadata()``
    plus where the image came from); token totals are None when no target was named.
    """

    source: Literal["postprocessor", "chat", "transform", "complete"] = Field(description="Which component routed the images.")
    query_str: str = Field(description="The question the images were routed for.")
    target: Optional[str] = Field(default=None, description="Target model that sized the images, if any.")
    decisions: list[dict[str, Any]] = Field(default_factory=list, description="One decision dict per image.")
    n_images: int = Field(default=0, description="Images seen.")
    n_resized: int = Field(default=0, description="Images whose bytes changed.")
    n_skipped: int = Field(default=0, description="Images left as they were (remote URL not fetched, or an error).")
    cache_hits: int = Field(default=0, description="Images answered from a decision cache instead of routed again.")
    tokens_before: Optional[int] = Field(default=None, description="Visual tokens of the originals, summed.")
    tokens_after: Optional[int] = Field(default=None, description="Visual tokens of what is sent, summed.")
    bytes_before: Optional[int] = Field(default=None, description="Encoded bytes of the originals, summed.")
    bytes_after: Optional[int] = Field(default=None, description="Encoded bytes of what is sent, summed.")

    @classmethod
    def class_name(cls) -> str:
        """Name used in serialization and by event handlers."""
        return "CaresResizeEvent"

    @property
    def tokens_saved(self) -> Optional[int]:
        """Visual tokens saved across all images, when a target was named."""
        if self.tokens_before is None or self.tokens_after is None:
            return None
        return self.tokens_before - self.tokens_after


def build_event(
    source: str,
    query_str: str,
    results: Sequence[ImageResult],
    decisions: Sequence[dict[str, Any]],
    target: Optional[str],
) -> CaresResizeEvent:
    """Summarise one batch of results as a :class:`CaresResizeEvent`."""
    targets = {r.decision.target for r in results if r.decision is not None}
    # Totals cover routed images only: a skipped image has no token count.
    return CaresResizeEvent(
        source=source,  # type: ignore[arg-type]
        query_str=query_str,
        target=targets.pop() if len(targets) == 1 else target,
        decisions=list(decisions),
        n_skipped=sum(1 for r in results if r.decision is None),
        **summarize(results),
        **_byte_totals(results),
    )


def _byte_totals(results: Sequence[ImageResult]) -> dict[str, Optional[int]]:
    """Bytes before/after over the routed images that have encoded bytes (None when none do)."""
    sized = [r.decision for r in results if r.decision is not None and r.decision.bytes_after is not None]
    if not sized:
        return {"bytes_before": None, "bytes_after": None}
    return {"bytes_before": sum(d.bytes_before or d.bytes_after for d in sized),
            "bytes_after": sum(d.bytes_after for d in sized)}
