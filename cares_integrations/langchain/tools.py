"""Agent tools: wrap a tool so its image arguments are resized for the question, and a tool that
hands an agent a page image at the size its question needs."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.tools import BaseTool, ToolException
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ..core.apply import ImageResult, aroute_and_resize, route_and_resize
from ..core.codec import encode_base64, is_data_url, looks_like_base64_image, make_data_url
from ..core.conversation import summarize
from ..core.errors import ImageDecodeError
from ..core.fetch import is_remote_url
from ..core.payload import encode_image
from ..core.sources import ANY_LOCAL_FILE, LocalFilePolicy
from ._component import CaresOptions
from .resizer import EVENT_NAME

QUESTION_ARG_NAMES = ("question", "query", "prompt", "instruction", "task")
"""Argument names searched, in order, for the question when ``wrap_tool`` is given none."""


def _child_config(config: RunnableConfig | None, run_manager: Any) -> RunnableConfig:
    if run_manager is None:
        return config or {}
    return patch_config(config, callbacks=run_manager.get_child())


def _looks_like_image(value: Any, *, named: bool = False) -> bool:
    """Whether a tool argument value is an image to hand to the core.

    Inline data (data URL, bytes, PIL image, base64 of an image) and http(s) URLs are; so are
    strings that look like paths or ``file:`` URLs, which the core reads only under the
    wrapper's ``local_files`` policy and otherwise passes on untouched with the reason
    recorded. Any other string is when the argument was named in ``image_args`` (so a corrupt
    payload fails loudly).
    """
    if isinstance(value, (bytes, bytearray, Image.Image)):
        return True
    if not isinstance(value, str) or not value:
        return False
    if named or is_data_url(value) or is_remote_url(value) or looks_like_base64_image(value):
        return True
    return value[:5].lower() == "file:" or ("/" in value or "\\" in value) and len(value) < 4096


# -- wrap_tool --------------------------------------------------------------------------------


class CaresToolWrapper(CaresOptions, BaseTool):
    """A tool that resizes its image arguments for the question, then calls the wrapped tool.

    Built by :func:`wrap_tool`; it has the wrapped tool's name, description, args schema,
    response format and ``return_direct``. Routing options are :class:`CaresOptions`'s; paths
    and ``file:`` URLs in arguments go to the tool untouched unless ``local_files`` allows them
    (tool arguments come from the model, so they are untrusted).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    wrapped: BaseTool
    """The tool that receives the resized images."""

    image_args: tuple[str, ...] | None = None
    """Arguments holding images (a string or a list of them). None: every argument whose name
    contains ``"image"`` or whose value is a ``data:`` URL."""

    question_arg: str | None = None
    """Argument holding the question. None: the first of :data:`QUESTION_ARG_NAMES` present."""

    question_getter: Callable[[dict[str, Any]], str] | None = None
    """``(tool arguments) -> question``; overrides ``question_arg``."""

    # -- argument handling --------------------------------------------------------------------
    def _question(self, arguments: dict[str, Any]) -> str:
        if self.question_getter is not None:
            question = self.question_getter(arguments)
        elif self.question_arg is not None:
            if self.question_arg not in arguments:
                raise ValueError(f"tool {self.name!r} was called without its question argument {self.question_arg!r}")
            question = arguments[self.question_arg]
        else:
            question = next((arguments[n] for n in QUESTION_ARG_NAMES if isinstance(arguments.get(n), str)), "")
        if not isinstance(question, str):
            raise TypeError(f"the question for tool {self.name!r} must be a string, got {type(question).__name__}")
        return question

    def _slots(self, arguments: dict[str, Any]) -> list[tuple[str, int | None, Any]]:
        """(argument, list index or None, image value) for every image argument value."""
        slots: list[tuple[str, int | None, Any]] = []
        for name, value in arguments.items():
            named = self.image_args is not None
            if named:
                chosen = name in self.image_args  # type: ignore[operator]
            else:
                chosen = "image" in name.lower() or (isinstance(value, str) and value[:11].lower() == "data:image/")
            if not chosen:
                continue
            if isinstance(value, (list, tuple)):
                slots.extend((name, k, v) for k, v in enumerate(value) if _looks_like_image(v, named=named))
            elif _looks_like_image(value, named=named):
                slots.append((name, None, value))
        return slots

    @staticmethod
    def _apply(arguments: dict[str, Any], slots: list[tuple[str, int | None, Any]], results: list[ImageResult]) -> dict[str, Any]:
        new = dict(arguments)
        for (name, index, _), result in zip(slots, results):
            if index is None:
                new[name] = result.output
            else:
                seq = list(new[name])
                seq[index] = result.output
                new[name] = type(arguments[name])(seq) if isinstance(arguments[name], tuple) else seq
        return new

    def _report(self, slots: list[tuple[str, int | None, Any]], results: list[ImageResult], question: str) -> dict[str, Any]:
        return {
            "tool": self.name,
            "question": question,
            "images": [{"argument": n, "index": k, **r.as_metadata()} for (n, k, _), r in zip(slots, results)],
        }

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if args:
            if len(args) != 1 or kwargs:
                raise TypeError(f"tool {self.name!r} got positional arguments {args!r}; expected keyword arguments")
            return {"__arg1": args[0]}, True
        return dict(kwargs), False

    def _call_args(self, arguments: dict[str, Any], positional: bool) -> Any:
        return arguments["__arg1"] if positional else arguments

    def _tool_call(self, tool_input: Any) -> Any:
        if self.wrapped.response_format != "content_and_artifact":
            return tool_input
        args = tool_input if isinstance(tool_input, dict) else {"__arg1": tool_input}
        return {"type": "tool_call", "name": self.wrapped.name, "args": args, "id": f"cares-{uuid.uuid4().hex}"}

    def _result(self, output: Any) -> Any:
        if self.wrapped.response_format == "content_and_artifact" and isinstance(output, ToolMessage):
            return output.content, output.artifact
        return output

    def _run(self, *args: Any, config: RunnableConfig, run_manager: Any = None, **kwargs: Any) -> Any:
        arguments, positional = self._arguments(args, kwargs)
        slots = self._slots(arguments)
        child = _child_config(config, run_manager)
        if slots:
            question = self._question(arguments)
            results = route_and_resize(self._router(), [s[2] for s in slots], question, **self._route_kwargs())
            arguments = self._apply(arguments, slots, results)
            if run_manager is not None:
                dispatch_custom_event(EVENT_NAME, self._report(slots, results, question), config=child)
        output = self.wrapped.invoke(self._tool_call(self._call_args(arguments, positional)), config=child)
        return self._result(output)

    async def _arun(self, *args: Any, config: RunnableConfig, run_manager: Any = None, **kwargs: Any) -> Any:
        arguments, positional = self._arguments(args, kwargs)
        slots = self._slots(arguments)
        child = _child_config(config, run_manager)
        if slots:
            question = self._question(arguments)
            results = await aroute_and_resize(self._router(), [s[2] for s in slots], question, **self._route_kwargs())
            arguments = self._apply(arguments, slots, results)
            if run_manager is not None:
                await adispatch_custom_event(EVENT_NAME, self._report(slots, results, question), config=child)
        output = await self.wrapped.ainvoke(self._tool_call(self._call_args(arguments, positional)), config=child)
        return self._result(output)


def wrap_tool(tool: BaseTool, *, image_args: Sequence[str] | None = None, **options: Any) -> BaseTool:
    """A tool with ``tool``'s name, description and args schema that resizes its image arguments
    for the question before calling ``tool`` (sync and async).

    Image arguments (``image_args``, or by default every argument whose name contains
    ``"image"`` or whose value is a ``data:image/`` URL; a list of images works too) holding a
    data URL, base64, bytes or a PIL image are resized and passed on in the same form. Local
    paths and ``file:`` URLs are passed on untouched, with the reason in the event, unless
    ``local_files`` names their folder (tool arguments come from the model, so they are
    untrusted); http(s) URLs are passed on too unless the router's fetch policy allows them. The question comes from ``question_getter(arguments)``,
    ``arguments[question_arg]``, or the first of :data:`QUESTION_ARG_NAMES` present, else ``""``.

    ``options``: :class:`CaresToolWrapper`'s fields: ``question_arg``, ``question_getter`` and the
    routing options every component takes (``router``, ``target``, ``policy``, ``on_error``,
    ``image_format``, ``quality``, ``local_files``).
    """
    if not isinstance(tool, BaseTool):
        raise TypeError(f"wrap_tool takes a langchain BaseTool, got {type(tool).__name__}")
    return CaresToolWrapper(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        response_format=tool.response_format,
        return_direct=tool.return_direct,
        tags=tool.tags,
        metadata=tool.metadata,
        extras=tool.extras,
        wrapped=tool,
        image_args=tuple(image_args) if image_args is not None else None,
        **options,
    )


# -- the page image tool ----------------------------------------------------------------------


class PageImageInput(BaseModel):
    """Arguments of :class:`CaresPageImageTool`."""

    page: str = Field(description="Id of the page to look at, as listed in the context (or its file name).")
    question: str = Field(description="The question you want to answer from this page.")


PageSource = Mapping[str, Any] | Callable[[str], Any] | str | os.PathLike
"""Where pages come from: a mapping of page id to image, a loader ``page_id -> image``, or a folder."""


def _inline(result: ImageResult) -> tuple[str, str] | None:
    """(mime type, base64) of an inline image output, or None for a URL left as is."""
    if isinstance(result.output, Image.Image):
        return "image/png", encode_base64(encode_image(result.output, "PNG"))
    if result.data is not None:
        return result.mime_type or "image/png", result.base64  # type: ignore[return-value]
    return None


class CaresPageImageTool(CaresOptions, BaseTool):
    """Agent tool: look at a document page, sized for the question being asked.

    The agent calls it with a page id and its question; the tool routes the page for the
    question and returns content blocks (``response_format="content_and_artifact"``): a text
    line with the size sent, and the image as a LangChain v1 standard image block
    (``{"type": "image", "base64": ..., "mime_type": ...}``, which every provider package
    translates into its own tool-result form) or, with ``image_block="image_url"``, an OpenAI
    ``image_url`` block with a data URL. The artifact holds the page id and the decision.
    Unknown pages come back to the agent as a tool error; so do unreadable images with
    ``on_error="raise"`` (with ``"passthrough"`` the agent gets a text block saying why the page
    could not be read, and the error in the artifact).

    Routing options are :class:`CaresOptions`'s, except that ``local_files=None`` here means: the
    page folder itself when ``pages`` is a folder; any regular file for paths a mapping or loader
    returns (the program chose those, the agent only names a page id).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str = "get_page_image"
    """Tool name shown to the model."""

    description: str = (
        "Look at one document page as an image. Give the page id and the exact question you want "
        "to answer from it; the page is returned at a resolution suited to that question."
    )
    """Tool description shown to the model."""

    args_schema: type[BaseModel] = PageImageInput
    """The tool's arguments: ``page`` and ``question``."""

    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    """Content blocks for the model, the decision as the artifact."""

    handle_tool_error: bool | str | Callable[[ToolException], str] | None = True
    """Unknown pages and unreadable images are reported to the agent instead of raised."""

    pages: PageSource
    """A mapping ``page id -> image`` (any form ``load_image`` reads), a loader callable, or a folder
    whose files the agent names (paths may not leave the folder)."""

    image_block: Literal["standard", "image_url"] = "standard"
    """Block form of the returned image."""

    def _files(self) -> LocalFilePolicy:
        if self.local_files is not None:
            return self.local_files
        if isinstance(self.pages, (str, os.PathLike)):
            return LocalFilePolicy(roots=[self.pages])
        return ANY_LOCAL_FILE

    def _load_page(self, page: str) -> Any:
        pages = self.pages
        if isinstance(pages, (str, os.PathLike)):
            root = Path(pages).resolve()
            path = (root / page).resolve()
            if not path.is_relative_to(root):
                raise ToolException(f"page {page!r} is outside the page folder")
            if not path.is_file():
                known = sorted(p.name for p in root.iterdir() if p.is_file())[:20]
                raise ToolException(f"unknown page {page!r}; known pages: {', '.join(known)}")
            return str(path)
        if isinstance(pages, Mapping):
            if page not in pages:
                known = [str(k) for k in list(pages)[:20]]
                raise ToolException(f"unknown page {page!r}; known pages: {', '.join(known)}")
            return pages[page]
        try:
            image = pages(page)
        except (KeyError, FileNotFoundError) as exc:
            raise ToolException(f"unknown page {page!r}: {exc}") from exc
        if image is None:
            raise ToolException(f"unknown page {page!r}")
        return image

    def _answer(self, page: str, result: ImageResult) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if result.error:  # on_error="passthrough": say so instead of sending the unreadable bytes
            text = f"Page {page} could not be read: {result.error}"
            return [{"type": "text", "text": text}], {"page": page, **result.as_metadata()}
        decision = result.decision
        if decision is not None:
            w, h = decision.send_size
            text = f"Page {page}, sent at {w}x{h} px for the question"
            if decision.tokens_after is not None:
                text += f" ({decision.tokens_after} visual tokens for {decision.target})"
        else:
            text = f"Page {page} ({result.skipped_reason})"
        inline = _inline(result)
        if self.image_block == "image_url":
            url = make_data_url(inline[1], inline[0]) if inline else result.output
            block: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
        elif inline:
            block = {"type": "image", "base64": inline[1], "mime_type": inline[0]}
        else:
            block = {"type": "image", "url": result.output}
        return [{"type": "text", "text": text + "."}, block], {"page": page, **result.as_metadata()}

    def _report(self, page: str, question: str, result: ImageResult) -> dict[str, Any]:
        """The ``"cares_route"`` event payload: the same shape as the resizer's and ``wrap_tool``'s."""
        target = result.decision.target if result.decision is not None else self.target
        return {"tool": self.name, "question": question, "target": target, "router": self.router.name,
                **summarize([result]), "images": [{"page": page, **result.as_metadata()}]}

    def _run(self, page: str, question: str, config: RunnableConfig,
             run_manager: Any = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        image = self._load_page(page)
        try:
            result = route_and_resize(self._router(), [image], question, **self._route_kwargs(local_files=self._files()))[0]
        except ImageDecodeError as exc:
            raise ToolException(f"page {page!r} could not be read: {exc}") from exc
        if run_manager is not None:
            dispatch_custom_event(EVENT_NAME, self._report(page, question, result), config=_child_config(config, run_manager))
        return self._answer(page, result)

    async def _arun(
        self, page: str, question: str, config: RunnableConfig, run_manager: Any = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        image = await asyncio.to_thread(self._load_page, page)
        try:
            result = (await aroute_and_resize(self._router(), [image], question,
                                              **self._route_kwargs(local_files=self._files())))[0]
        except ImageDecodeError as exc:
            raise ToolException(f"page {page!r} could not be read: {exc}") from exc
        if run_manager is not None:
            await adispatch_custom_event(EVENT_NAME, self._report(page, question, result),
                                         config=_child_config(config, run_manager))
        return self._answer(page, result)


def make_page_image_tool(
    pages: PageSource, *, name: str = "get_page_image", description: str | None = None, **options: Any
) -> CaresPageImageTool:
    """A :class:`CaresPageImageTool` over ``pages`` (mapping, loader callable or folder);
    ``options`` are its fields (``router``, ``target``, ``policy``, ``image_block`` ...)."""
    fields: dict[str, Any] = {"pages": pages, "name": name, **options}
    if description is not None:
        fields["description"] = description
    return CaresPageImageTool(**fields)
