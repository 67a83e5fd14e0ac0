"""``CaresChatModel``: a chat model that resizes its input's images, then calls the model it wraps.

Goes anywhere a chat model goes (``create_agent``, LangGraph nodes, LCEL and legacy chains):
``bind_tools``, ``with_structured_output``, streaming, async, ``model_name``, ``profile`` and
callbacks all reach the wrapped model; only the messages it is sent have smaller images.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from ..core.conversation import DEFAULT_CACHE_SIZE
from ._component import CaresOptions
from .agents import AgentRouting, build_resizer
from .messages import QuestionGetter
from .models import ToolImages, model_name_of
from .resizer import METADATA_KEY, CaresImageResizer, add_run_metadata, routing_summary

STANDARD_PARAMS = ("temperature", "max_tokens", "timeout", "max_retries", "stop", "streaming", "api_key", "base_url")
"""Standard chat-model parameters the wrapper takes and sets on (a rebuilt copy of) the wrapped model."""


def _with_params(model: BaseChatModel, params: dict[str, Any]) -> BaseChatModel:
    """A new ``model`` of the same class, built from its set fields plus ``params`` (names or
    aliases), so clients that read them at construction (timeouts, keys) see them too."""
    fields = type(model).model_fields
    by_alias = {f.alias: name for name, f in fields.items() if f.alias}
    named: dict[str, Any] = {}
    for key, value in params.items():
        if key == "stop" and "stop" not in fields and "stop_sequences" in fields:
            key = "stop_sequences"
        name = key if key in fields else by_alias.get(key)
        if name is None:
            raise ValueError(f"{type(model).__name__} has no parameter {key!r}")
        named[name] = value
    kept = {name: getattr(model, name) for name in model.model_fields_set if name not in named}
    return type(model).model_validate({**kept, **named})


NOSTREAM_TAG = "nostream"
"""LangGraph's tag for runs whose tokens are not streamed: the wrapped model's run carries it, so
``stream_mode="messages"`` shows each token once (from this wrapper's run)."""


def _child(run_manager: Any) -> RunnableConfig:
    """Config for the calls made inside this run: its handlers, tags and metadata, as children.

    Without a run manager (``BaseChatModel.stream`` passes none to ``_stream``) the calls inherit
    the ambient config and only carry the no-stream tag."""
    if run_manager is None:
        return {"tags": [NOSTREAM_TAG]}
    cls = AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
    manager = cls(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_tags([NOSTREAM_TAG], inherit=False)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


def _summary_metadata(routed: list[Any], run_manager: Any) -> dict[str, Any] | None:
    """``{"cares": summary}`` for the wrapped model's run, also added to this wrapper's own run
    in every tracer; None when no image was routed."""
    summary = routing_summary(routed)
    if summary is None:
        return None
    meta = {METADATA_KEY: summary}
    add_run_metadata(run_manager, meta)
    return meta


class CaresChatModel(CaresOptions, BaseChatModel):
    """Wrap a chat model so every image it is sent is first resized for the question.

    ``CaresChatModel(model=ChatOpenAI(model="gpt-4o"))`` routes with the default router for
    ``"openai:gpt-4o"`` (target taken from the wrapped model when none is given), caching
    decisions across turns, and moves tool images into a user message for APIs that take none
    in tool results (``tool_images``, as in :class:`~cares_integrations.langchain.CaresMiddleware`).
    Standard parameters (``temperature``, ``max_tokens``, ``timeout``, ``max_retries``, ``stop``,
    ``streaming``) given here are set on a copy of the wrapped model. Routing options are
    :class:`CaresOptions`'s (``target`` None: taken from ``model``'s provider and name); those
    given build the resizer, or pass a configured ``resizer=`` instead of them.

    Example:
        .. code-block:: python

            llm = CaresChatModel(model=ChatAnthropic(model="claude-sonnet-4-5"))
            agent = create_agent(llm, tools)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model: BaseChatModel
    """The chat model that receives the resized messages."""

    question_getter: QuestionGetter | None = None
    """``(messages, message_index) -> question``; default: the latest human text."""

    cache_size: int = Field(default=DEFAULT_CACHE_SIZE, ge=0)
    """Decisions kept for reuse across turns; 0 routes every image on every call."""

    tool_images: ToolImages = "auto"
    """Where images in tool results go (``"auto"``, ``"user_message"``, ``"keep"``)."""

    resizer: CaresImageResizer | None = None
    """A configured resizer to use instead of the options above."""

    temperature: float | None = None
    """Set on the wrapped model when given."""
    max_tokens: int | None = None
    """Set on the wrapped model when given."""
    timeout: float | None = None
    """Set on the wrapped model when given."""
    max_retries: int | None = None
    """Set on the wrapped model when given."""
    stop: list[str] | None = None
    """Set on the wrapped model when given (as its ``stop``/``stop_sequences``)."""
    streaming: bool | None = None
    """Set on the wrapped model when given."""
    api_key: SecretStr | None = None
    """Set on the wrapped model when given (its ``api_key``)."""
    base_url: str | None = None
    """Set on the wrapped model when given (its ``base_url``)."""

    _routing: AgentRouting = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        """Apply standard parameters to the wrapped model, copy its profile, build the routing."""
        overrides = {k: getattr(self, k) for k in STANDARD_PARAMS if getattr(self, k) is not None}
        if overrides:
            self.model = _with_params(self.model, overrides)
        if self.profile is None:
            self.profile = self.model.profile
        options = self._options_given()
        if self.question_getter is not None:
            options["question_getter"] = self.question_getter
        self._routing = AgentRouting(build_resizer(self.resizer, self.cache_size, options), self.tool_images)

    # -- what the wrapped model says about itself ----------------------------------------------
    @property
    def model_name(self) -> str | None:
        """The wrapped model's name."""
        return model_name_of(self.model)

    @property
    def decision_cache(self) -> Any:
        """The decision cache (None when ``cache_size=0``)."""
        return self._routing.cache

    @property
    def _llm_type(self) -> str:
        return f"cares-{self.model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"cares": True, **self.model._identifying_params}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.model._get_ls_params(stop=stop, **kwargs)

    # -- calls ----------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        config = _child(run_manager)
        routed = self._routing.route(messages, self.model, config)
        meta = _summary_metadata(routed, run_manager)
        result = self.model.generate([routed], stop=stop, callbacks=config.get("callbacks"),
                                     tags=config.get("tags"), metadata=meta, **kwargs)
        return ChatResult(generations=result.generations[0], llm_output=result.llm_output)  # type: ignore[arg-type]

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        config = _child(run_manager)
        routed = await self._routing.aroute(messages, self.model, config)
        meta = _summary_metadata(routed, run_manager)
        result = await self.model.agenerate([routed], stop=stop, callbacks=config.get("callbacks"),
                                            tags=config.get("tags"), metadata=meta, **kwargs)
        return ChatResult(generations=result.generations[0], llm_output=result.llm_output)  # type: ignore[arg-type]

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        config = _child(run_manager)
        routed = self._routing.route(messages, self.model, config)
        config = {**config, "metadata": _summary_metadata(routed, run_manager) or {}}
        for chunk in self.model.stream(routed, config=config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=chunk)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        config = _child(run_manager)
        routed = await self._routing.aroute(messages, self.model, config)
        config = {**config, "metadata": _summary_metadata(routed, run_manager) or {}}
        async for chunk in self.model.astream(routed, config=config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=chunk)

    # -- tools and structured output ------------------------------------------------------------
    def _bound_like(self, bound: Runnable) -> Runnable:
        """``bound`` (a binding of the wrapped model) as the same binding of this wrapper."""
        if isinstance(bound, RunnableBinding) and bound.bound is self.model:
            return self.bind(**bound.kwargs)
        return self._routing.resizer_for(self.model) | bound

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: str | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """The wrapped model's ``bind_tools``, bound on this wrapper so its input is still resized."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self._bound_like(self.model.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Runnable:
        """The wrapped model's ``with_structured_output`` behind this wrapper's image routing."""
        structured = self.model.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return self._routing.resizer_for(self.model) | structured
