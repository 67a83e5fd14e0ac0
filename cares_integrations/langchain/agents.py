"""Shared by the agent components: one configured resizer per target, and the request rewrite.

:class:`CaresMiddleware` and :class:`CaresChatModel` both hand an agent's message list to a
:class:`CaresImageResizer` (the one LangChain message-list router, which calls the core's cached
:func:`~cares_integrations.core.conversation.route_images`) and, where the API takes no images in
tool results, move tool images into a user message.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

from langchain_core.runnables import RunnableConfig

from ..core.conversation import DEFAULT_CACHE_SIZE, DecisionCache
from .messages import move_tool_images
from .models import ToolImages, should_move_tool_images, target_for_chat_model
from .resizer import METADATA_KEY, CaresImageResizer, routing_summary


def build_resizer(
    resizer: CaresImageResizer | None, cache_size: int, options: dict[str, Any]
) -> CaresImageResizer:
    """The resizer an agent component routes with: ``resizer`` as given, or one built from
    ``options`` (router, target, policy ...), with a shared :class:`DecisionCache` of
    ``cache_size`` entries (0: no cache) when it has none."""
    fields = {k: v for k, v in options.items() if v is not None}
    if resizer is not None:
        if fields:
            raise TypeError(f"pass either resizer= or resizer options, not both (got {sorted(fields)})")
        if resizer.cache is None and cache_size:
            resizer = resizer.model_copy(update={"cache": DecisionCache(cache_size)})
        return resizer
    if cache_size:
        fields["cache"] = DecisionCache(cache_size)
    return CaresImageResizer(**fields)


class AgentRouting:
    """Routes an agent's messages for the model they go to: target from the model when the
    resizer names none (one resizer copy per target, all sharing one cache), then tool images."""

    def __init__(self, resizer: CaresImageResizer, tool_images: ToolImages) -> None:
        should_move_tool_images(tool_images, None)  # validate the mode now
        self.resizer = resizer
        self.tool_images = tool_images
        self._per_target: dict[str | None, CaresImageResizer] = {}
        self._lock = threading.Lock()

    @property
    def cache(self) -> DecisionCache | None:
        """The decision cache shared by every target's resizer."""
        return self.resizer.cache

    def resizer_for(self, model: Any) -> CaresImageResizer:
        """The resizer for ``model``: ours when it names a target, else a copy sized for the model."""
        if self.resizer.target is not None:
            return self.resizer
        target = target_for_chat_model(model)
        if target is None:
            return self.resizer
        with self._lock:
            if target not in self._per_target:
                self._per_target[target] = self.resizer.model_copy(update={"target": target})
            return self._per_target[target]

    def _after(self, messages: Sequence[Any], model: Any) -> list[Any]:
        messages = list(messages)
        if not should_move_tool_images(self.tool_images, model):
            return messages
        summary = routing_summary(messages)
        moved = move_tool_images(messages)
        if summary is not None and routing_summary(moved) is None:  # keep the summary on the last message
            last = moved[-1]
            moved[-1] = last.model_copy(update={"response_metadata": {**last.response_metadata, METADATA_KEY: summary}})
        return moved

    def route(self, messages: Sequence[Any], model: Any, config: RunnableConfig | None = None) -> list[Any]:
        """The messages to send ``model``: images resized, tool images placed for its API."""
        routed = self.resizer_for(model).invoke(list(messages), config=config)
        return self._after(routed, model)

    async def aroute(self, messages: Sequence[Any], model: Any, config: RunnableConfig | None = None) -> list[Any]:
        """Async :meth:`route`."""
        routed = await self.resizer_for(model).ainvoke(list(messages), config=config)
        return self._after(routed, model)


__all__ = ["DEFAULT_CACHE_SIZE", "AgentRouting", "build_resizer"]
