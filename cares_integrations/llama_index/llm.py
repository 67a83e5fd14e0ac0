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

from llama_index.core.base.llms.types import ImageBlock
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.schema import BaseNode

from ..core.apply import ImageResult, failed_result
from ..core.budget import check_image_count
from ..core.conversation import DEFAULT_CACHE_SIZE, DecisionCache, aroute_images, route_images
from ..core.errors import ImageDecodeError
from ..core.model_target import provider_of
from ..core.partial import PartialResults
from ..core.router import Router
from ._component import CaresOptions
from ._nodes import image_source, record, with_result
from .chat import (
    Scope,
    aresize_chat_messages,
    block_source,
    has_image_blocks,
    move_tool_images,
    resize_chat_messages,
    resized_block,
)
from .events import build_event

dispatcher = get_dispatcher(__name__)


class _Documents:
    """The ``image_documents`` of one ``complete`` call: each one's image input, early failures,
    and the copies written back in the caller's own types (``ImageNode`` or ``ImageBlock``)."""

    def __init__(self, documents: Sequence[Any], on_error: str) -> None:
        if isinstance(documents, (str, bytes, BaseNode, ImageBlock)):
            raise TypeError(f"image_documents must be a list of ImageNode / ImageBlock, got one {type(documents).__name__}")
        self.documents = list(documents)
        self.sources: list[Any] = []
        self.fields: list[str] = []
        early: dict[int, ImageResult] = {}
        for i, doc in enumerate(self.documents):
            try:
                field, source = self._source(doc)
            except ImageDecodeError as exc:
                if on_error == "raise":
                    raise
                field, source = "none", None
                early[i] = failed_result(doc, exc)
            self.fields.append(field)
            self.sources.append(source)
        self.results: PartialResults[ImageResult] = PartialResults(len(self.documents), early)

    @staticmethod
    def _source(doc: Any) -> tuple[str, Any]:
        if isinstance(doc, ImageBlock):
            return "image" if doc.image else "path" if doc.path else "url", block_source(doc)
        if isinstance(doc, BaseNode):
            found = image_source(doc)
            if found is None:
                raise ImageDecodeError(f"{type(doc).__name__} {doc.node_id!r} in image_documents carries no image")
            return found.field, found.value
        raise TypeError(f"image_documents hold ImageNode / ImageBlock objects, got a {type(doc).__name__}")

    def finish(self, routed: list[ImageResult], query: str, target: Optional[str], key: Optional[str]) -> list[Any]:
        """Copies of the documents holding the resized images (the caller's are untouched)."""
        results = self.results.merge(routed)
        out: list[Any] = []
        decisions: list[dict[str, Any]] = []
        for doc, field, result in zip(self.documents, self.fields, results):
            if isinstance(doc, BaseNode):
                meta = record(doc, field, result)
                out.append(with_result(doc, field, result, meta, key))
            else:
                meta = {**result.as_metadata(), "source": {"field": field}}
                out.append(resized_block(doc, result) if result.changed else doc)
            decisions.append(meta)
        if self.documents:
            dispatcher.event(build_event("complete", query, results, decisions, target))
        return out


class CaresLLM(CaresOptions, FunctionCallingLLM):
    """Wrap a LlamaIndex LLM so the ``ImageBlock``s it is sent are resized for the question.

    ``chat``, ``achat``, ``stream_chat`` and ``astream_chat`` resize (one router batch per call,
    repeated images answered from a bounded decision cache) and then call the wrapped LLM.
    ``complete`` and its variants resize the ``image_documents`` multimodal LLMs take
    (``complete(prompt, image_documents)``, ``ImageNode`` or ``ImageBlock``) for the prompt and
    pass them on in the same types; a plain prompt string is passed straight through.
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

    # -- completion: a prompt, with image documents for multimodal LLMs ---------------------------
    def _complete_args(self, formatted: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Optional[_Documents]]:
        """The wrapped ``complete``'s keyword arguments and the image documents to resize, if any.

        Multimodal LLMs (``OpenAIMultiModal`` and the other ``llama-index-multi-modal-llms-*``
        classes) take ``complete(prompt, image_documents)``: the documents come by keyword or as
        the second positional argument (where plain LLMs take ``formatted``)."""
        documents = kwargs.pop("image_documents", None)
        if not isinstance(formatted, bool) and formatted is not None:
            if documents is not None:
                raise TypeError("complete() got image documents both positionally and as image_documents=")
            documents, formatted = formatted, False
        if documents is None:
            return {"formatted": formatted, **kwargs}, None
        # Multimodal complete() has no `formatted`; pass it on only when set.
        return ({"formatted": True} if formatted else {}) | kwargs, _Documents(documents, self.on_error)

    def _request_size(self, plan: _Documents) -> int:
        """The image documents of one ``complete`` call: one request, checked against its limit."""
        n = len(plan.sources)
        if n:
            check_image_count(self._target_name(), n)
        return n

    def _route_documents(self, prompt: str, plan: _Documents) -> list[Any]:
        n = self._request_size(plan)
        todo = plan.results.todo
        routed = route_images(self.router, [plan.sources[i] for i in todo], prompt, cache=self._cache,
                              **self._route_kwargs(), images_per_request=n) if todo else []
        return plan.finish(routed, prompt, self._target_name(), self.metadata_key)

    async def _aroute_documents(self, prompt: str, plan: _Documents) -> list[Any]:
        n = self._request_size(plan)
        todo = plan.results.todo
        routed = await aroute_images(self.router, [plan.sources[i] for i in todo], prompt, cache=self._cache,
                                     **self._route_kwargs(), images_per_request=n) if todo else []
        return plan.finish(routed, prompt, self._target_name(), self.metadata_key)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's ``complete``; ``image_documents`` (``ImageNode`` / ``ImageBlock``, for
        multimodal LLMs) are first resized for ``prompt`` in one router batch."""
        args, plan = self._complete_args(formatted, kwargs)
        if plan is not None:
            args["image_documents"] = self._route_documents(prompt, plan)
        return self.llm.complete(prompt, **args)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """The wrapped LLM's ``stream_complete``, image documents resized as in :meth:`complete`."""
        args, plan = self._complete_args(formatted, kwargs)
        if plan is not None:
            args["image_documents"] = self._route_documents(prompt, plan)
        return self.llm.stream_complete(prompt, **args)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's ``acomplete``, image documents resized off the event loop."""
        args, plan = self._complete_args(formatted, kwargs)
        if plan is not None:
            args["image_documents"] = await self._aroute_documents(prompt, plan)
        return await self.llm.acomplete(prompt, **args)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """The wrapped LLM's ``astream_complete``, image documents resized off the event loop."""
        args, plan = self._complete_args(formatted, kwargs)
        if plan is not None:
            args["image_documents"] = await self._aroute_documents(prompt, plan)
        return await self.llm.astream_complete(prompt, **args)

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
