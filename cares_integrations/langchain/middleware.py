"""``CaresMiddleware``: route every image an agent sends, before every model call.

``create_agent(model, tools, middleware=[CaresMiddleware()])`` resizes the images in each model
request (the user's, tool results', earlier turns') for the current question; the agent's state
keeps the originals, so a later, harder question re-routes from them. Needs the ``langchain``
1.x package: ``pip install 'cares-integrations[agents]'``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..core.optional import require

require("langchain.agents", "agents", purpose="CaresMiddleware")

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse  # noqa: E402

from ..core.conversation import DEFAULT_CACHE_SIZE  # noqa: E402
from ._component import OPTION_NAMES  # noqa: E402
from .agents import AgentRouting, build_resizer  # noqa: E402
from .messages import QuestionGetter  # noqa: E402
from .models import ToolImages  # noqa: E402
from .resizer import CaresImageResizer  # noqa: E402


class CaresMiddleware(AgentMiddleware):
    """Agent middleware that resizes every image in a model request for the current question.

    Sync and async (``wrap_model_call`` / ``awrap_model_call``). Only the request is rewritten
    (``request.override(messages=...)``); the agent's stored messages keep the original images.
    Decisions are cached per (image content, question, target, policy) in a bounded LRU of
    ``cache_size`` entries, so unchanged images are not routed again on later turns. The target
    is taken from the request's model (``ChatOpenAI``/``ChatAnthropic``/``ChatGoogleGenerativeAI``
    model names) when none is given. Each call dispatches the resizer's ``"cares_route"`` custom
    event and records the summary in the resizer run's metadata under ``"cares"``.

    ``tool_images`` (see :data:`~cares_integrations.langchain.models.ToolImages`): ``"auto"``
    moves images out of tool messages into a following user message for OpenAI chat completions,
    which takes only text in tool results; ``"user_message"`` always does; ``"keep"`` never does.

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            from cares_integrations.langchain import CaresMiddleware

            agent = create_agent("openai:gpt-4o", tools, middleware=[CaresMiddleware()])
    """

    def __init__(
        self,
        *,
        question_getter: QuestionGetter | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        tool_images: ToolImages = "auto",
        resizer: CaresImageResizer | None = None,
        **options: Any,
    ) -> None:
        """``options``: the routing options every component takes (:data:`OPTION_NAMES`:
        ``router``, ``target``, ``policy``, ``on_error``, ``image_format``, ``quality``,
        ``local_files``), checked by the resizer built from them; or a configured ``resizer``."""
        super().__init__()
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"CaresMiddleware got unknown options {unknown}; it takes {', '.join(OPTION_NAMES)}, "
                            "question_getter, cache_size, tool_images and resizer")
        if question_getter is not None:
            options["question_getter"] = question_getter
        self.routing = AgentRouting(build_resizer(resizer, cache_size, options), tool_images)

    @property
    def resizer(self) -> CaresImageResizer:
        """The resizer every request goes through (router, target, policy, cache)."""
        return self.routing.resizer

    @property
    def decision_cache(self) -> Any:
        """The :class:`~cares_integrations.core.conversation.DecisionCache` (None when disabled)."""
        return self.routing.cache

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        """Resize the request's images, then call the model."""
        messages = self.routing.route(request.messages, request.model)
        return handler(request.override(messages=messages))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        """Async :meth:`wrap_model_call`: routing runs off the event loop."""
        messages = await self.routing.aroute(request.messages, request.model)
        return await handler(request.override(messages=messages))
