"""``CaresLLM``: an LLM wrapper that resizes the images of every chat request, for agents.

LlamaIndex agents (``FunctionAgent``, ``AgentWorkflow``, ``ReActAgent``) call ``llm.chat`` /
``llm.astream_chat`` (through ``chat_with_tools``) with the whole history each turn. Wrapping the
LLM routes every ``ImageBlock`` for the latest question (decisions cached across turns) and
leaves everything else to the wrapped LLM: metadata, tool preparation and tool-call parsing.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, Union

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM
from llama_index.core.llms.function_calling import FunctionCallingLLM

from ..core.conversation import DEFAULT_CACHE_SIZE, DecisionCache
from ..core.router import Router
from ._component import CaresOptions
from ..core.model_target import provider_of
from .chat import Scope, aresize_chat_messages, has_image_blocks, move_tool_images, resize_chat_messages


class CaresLLM(CaresOptions, FunctionCallingLLM):
    """Wrap a LlamaIndex LLM so the ``ImageBlock``s it is sent are resized for the question.

    ``chat``, ``achat``, ``stream_chat`` and ``astream_chat`` resize (one router batch per call,
    repeated images answered from a bounded decision cache) and then call the wrapped LLM;
    ``complete`` and its variants pass straight through (a prompt string holds no image blocks).
    ``metadata`` (context window, ``is_function_calling_model``) and tool calling
    (``_prepare_chat_with_tools``, ``get_tool_calls_from_response``) are the wrapped LLM's, so
    ``FunctionAgent(llm=CaresLLM(llm=OpenAI(...)), tools=...)`` works unchanged. Each call
    dispatches a :class:`~cares_integrations.llama_index.CaresResizeEvent`.
    """

    llm: LLM = Field(description="The LLM that receives the resized messages.")
    scope: Scope = Field(default="all", description="'all' resizes every message's images; 'turn' only the latest turn's.")
    cache_size: int = Field(default=DEFAULT_CACHE_SIZE, ge=0, description="Decisions kept across turns; 0 disables the cache.")
    tool_images: Literal["auto", "user_message", "keep"] = Field(
        default="auto",
        description="Images in tool results: 'user_message' moves them into a user message after the tool results, "
        "'keep' leaves them, 'auto' moves them for OpenAI clients (llama-index-llms-openai sends tool results as text).",
    )

    _router: Router = PrivateAttr()
    _cache: Optional[DecisionCache] = PrivateAttr(default=None)

    def __init__(self, llm: LLM, router: Router | str | None = None, **kwargs: Any) -> None:
        super().__init__(llm=llm, callback_manager=llm.callback_manager, **kwargs)
        self._init_router(router)
        self._cache = DecisionCache(self.cache_size) if self.cache_size else None

    @classmethod
    def class_name(cls) -> str:
        """Name used in serialization."""
        return "CaresLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata (context window, function calling, model name)."""
        return self.llm.metadata

    @property
    def decision_cache(self) -> Optional[DecisionCache]:
        """The decision cache (None when ``cache_size=0``)."""
        return self._cache

    def _options(self) -> dict[str, Any]:
        return {"router": self._router, "target": self.target, "scope": self.scope, "on_error": self.on_error,
                "image_format": self.image_format, "quality": self.quality, "local_files": self.local_files,
                "cache": self._cache}

    def _placed(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        move = self.tool_images == "user_message" or (
            self.tool_images == "auto" and provider_of(type(self.llm).__name__ + " " + self.llm.class_name()) == "openai")
        return move_tool_images(messages) if move else messages

    def _resize(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if not self._has_images(messages):
            return list(messages)
        return self._placed(resize_chat_messages(messages, **self._options()))

    async def _aresize(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if not self._has_images(messages):
            return list(messages)
        return self._placed(await aresize_chat_messages(messages, **self._options()))

    @staticmethod
    def _has_images(messages: Sequence[ChatMessage]) -> bool:
        # A chat without images is passed on as it is (resizing would ask for a user question).
        return has_image_blocks(messages)

    # -- chat ------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Resize, then the wrapped LLM's ``chat``."""
        return self.llm.chat(self._resize(messages), **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Resize, then the wrapped LLM's ``stream_chat``."""
        return self.llm.stream_chat(self._resize(messages), **kwargs)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Resize off the event loop, then the wrapped LLM's ``achat``."""
        return await self.llm.achat(await self._aresize(messages), **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Resize off the event loop, then the wrapped LLM's ``astream_chat``."""
        return await self.llm.astream_chat(await self._aresize(messages), **kwargs)

    # -- completion: a prompt string, passed through -----------------------------------------------
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's ``complete``."""
        return self.llm.complete(prompt, formatted=formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """The wrapped LLM's ``stream_complete``."""
        return self.llm.stream_complete(prompt, formatted=formatted, **kwargs)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's ``acomplete``."""
        return await self.llm.acomplete(prompt, formatted=formatted, **kwargs)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """The wrapped LLM's ``astream_complete``."""
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)

    # -- tool calling: the wrapped LLM's ------------------------------------------------------------
    def _function_llm(self) -> FunctionCallingLLM:
        if not isinstance(self.llm, FunctionCallingLLM):
            raise TypeError(f"{type(self.llm).__name__} does not support tool calling (not a FunctionCallingLLM)")
        return self.llm

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[list[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return self._function_llm()._prepare_chat_with_tools_compat(
            tools, user_msg=user_msg, chat_history=chat_history, verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls, tool_required=tool_required, **kwargs)

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[Any],
                                           allow_parallel_tool_calls: bool = False, **kwargs: Any) -> ChatResponse:
        return self._function_llm()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs)

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[Any]:
        """The wrapped LLM's tool calls in ``response``."""
        return self._function_llm().get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)
