"""Resize the ``ImageBlock``s of a ``ChatMessage`` list for the latest user question.

For agents and workflows that call ``llm.chat`` / ``llm.achat`` directly (no retriever, so no
node postprocessor): every image block is routed for the question in one batch and replaced by a
copy holding the resized bytes. Every other block, field and message is kept as it was; the
input messages are never modified.
"""

from __future__ import annotations

from io import IOBase
from typing import Any, Literal, Optional, Sequence

from llama_index.core.base.llms.types import (
    BaseContentBlock,
    BaseRecursiveContentBlock,
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
)
from llama_index.core.instrumentation import get_dispatcher

from ..core.apply import ImageResult, OnError, check_on_error, failed_result
from ..core.budget import check_image_count
from ..core.conversation import DecisionCache, aroute_images, route_images
from ..core.codec import decode_base64
from ..core.errors import ImageDecodeError
from ..core.partial import PartialResults
from ..core.question import latest_question as core_latest_question
from ..core.question import latest_question_index
from ..routers.registry import load_router
from ..core.router import Router, target_or_router
from ..core.sources import LocalFilePolicy
from .events import build_event

dispatcher = get_dispatcher(__name__)

Scope = Literal["all", "turn"]


def _turns(messages: Sequence[ChatMessage]) -> list[tuple[bool, str]]:
    return [(msg.role == MessageRole.USER, "\n".join(b.text for b in msg.blocks if isinstance(b, TextBlock)))
            for msg in messages]


def latest_question(messages: Sequence[ChatMessage]) -> str:
    """The text of the last user message that has any text, or ``""`` when there is none: the
    question images are routed for (the rule of
    :func:`cares_integrations.core.question.latest_question`, as in the LangChain glue)."""
    return core_latest_question(_turns(messages))


def _check_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    if isinstance(messages, ChatMessage):
        raise TypeError("resize_chat_messages takes a list of ChatMessage, got a single ChatMessage")
    out = list(messages)
    for i, msg in enumerate(out):
        if not isinstance(msg, ChatMessage):
            raise TypeError(f"message {i} is a {type(msg).__name__}, not a llama_index ChatMessage")
    return out


def _first_in_scope(messages: list[ChatMessage], scope: str) -> int:
    if scope == "all":
        return 0
    if scope != "turn":
        raise ValueError(f"scope must be 'all' or 'turn', got {scope!r}")
    return latest_question_index(_turns(messages)) or 0


def _nested(block: BaseContentBlock) -> Optional[str]:
    """The field holding nested blocks (``CitableBlock.content``, ``CitationBlock.cited_content``)."""
    if isinstance(block, BaseRecursiveContentBlock) and not isinstance(block, ChatMessage):
        return block.nested_blocks_field_name()
    return None


def _walk(blocks: Sequence[Any], found: dict[int, ImageBlock]) -> None:
    for block in blocks:
        if isinstance(block, ImageBlock):
            found.setdefault(id(block), block)
        elif (field := _nested(block)) is not None:
            value = getattr(block, field, None)
            _walk(value if isinstance(value, list) else [value], found)


def has_image_blocks(messages: Sequence[ChatMessage]) -> bool:
    """Whether any message holds an ``ImageBlock`` (nested ones included)."""
    found: dict[int, ImageBlock] = {}
    for msg in messages:
        _walk(msg.blocks, found)
        if found:
            return True
    return False


def block_source(block: ImageBlock) -> Any:
    """The plain image input for an ImageBlock: raw bytes, or a path or URL string (untrusted)."""
    data = block.image
    if isinstance(data, IOBase):
        pos = data.tell()
        data.seek(0)
        raw = data.read()
        data.seek(pos)
        return raw
    if isinstance(data, (bytes, bytearray)) and data:
        try:  # a validated ImageBlock stores base64; one built with model_construct may hold raw bytes
            return decode_base64(bytes(data), "ImageBlock image")
        except ImageDecodeError:
            return bytes(data)
    if block.path is not None:
        return str(block.path)  # message content: read only under the local-file policy
    if block.url is not None:
        return str(block.url)
    raise ImageDecodeError("ImageBlock has no image, path or url")


def resized_block(block: ImageBlock, result: ImageResult) -> ImageBlock:
    """A copy of ``block`` holding ``result``'s resized bytes (``detail`` and other fields kept)."""
    payload, mime = result.base64 or "", result.mime_type
    # model_copy keeps detail and any other field; path/url are cleared so the bytes are what is sent.
    return block.model_copy(update={"image": payload.encode("ascii"), "image_mimetype": mime, "path": None, "url": None})


def _rebuild_block(block: Any, replace: dict[int, ImageBlock]) -> Any:
    if id(block) in replace:
        return replace[id(block)]
    field = _nested(block)
    if field is None:
        return block
    value = getattr(block, field, None)
    if isinstance(value, list):
        new = [_rebuild_block(b, replace) for b in value]
        changed = any(a is not b for a, b in zip(new, value))
    else:
        new = _rebuild_block(value, replace)
        changed = new is not value
    return block.model_copy(update={field: new}) if changed else block


class _ChatPlan:
    """Which image blocks to route, their inputs, and failures found before routing.

    ``n_request`` counts every image the request holds (those outside ``scope`` too): the
    provider's per-request limits count them all."""

    def __init__(self, messages: list[ChatMessage], scope: str, on_error: OnError) -> None:
        start = _first_in_scope(messages, scope)
        found: dict[int, ImageBlock] = {}
        for msg in messages[start:]:
            _walk(msg.blocks, found)
        self.blocks = list(found.values())
        every = dict(found)  # and the images before the scope, each message walked once
        for msg in messages[:start]:
            _walk(msg.blocks, every)
        self.n_request = len(every)
        self.sources: list[Any] = []
        self.results: PartialResults[ImageResult] = PartialResults(len(self.blocks))
        for i, block in enumerate(self.blocks):
            try:
                self.sources.append(block_source(block))
            except ImageDecodeError as exc:
                if on_error == "raise":
                    raise
                self.sources.append(None)
                self.results.settle(i, failed_result(block, exc))

    def finish(self, messages: list[ChatMessage], results: list[ImageResult], query: str,
               target: Optional[str]) -> list[ChatMessage]:
        replace = {id(b): resized_block(b, r) for b, r in zip(self.blocks, results) if r.changed}
        decisions = []
        for block, result in zip(self.blocks, results):
            meta = result.as_metadata()
            meta["source"] = {"field": "image" if block.image else "path" if block.path else "url"}
            if result.changed and result.mime_type:
                meta["mime_type"] = result.mime_type
            decisions.append(meta)
        if self.blocks:
            dispatcher.event(build_event("chat", query, results, decisions, target))
        return [
            msg.model_copy(update={
                "blocks": [_rebuild_block(b, replace) for b in msg.blocks],
                "additional_kwargs": dict(msg.additional_kwargs),
            })
            for msg in messages
        ]


def _prepare(messages: Sequence[ChatMessage], router: Router | str | None, query: Optional[str],
             scope: str, on_error: OnError, target: Optional[str]) -> tuple[list[ChatMessage], Router, str, _ChatPlan]:
    check_on_error(on_error)
    msgs = _check_messages(messages)
    query = latest_question(msgs) if query is None else query
    router = router if isinstance(router, Router) else load_router(router)
    plan = _ChatPlan(msgs, scope, on_error)
    if plan.n_request:  # one message list is one provider request
        check_image_count(target or router.target, plan.n_request)
    return msgs, router, query, plan


@dispatcher.span
def resize_chat_messages(
    messages: Sequence[ChatMessage],
    *,
    router: Router | str | None = None,
    target: Optional[str] = None,
    query: Optional[str] = None,
    scope: Scope = "all",
    on_error: OnError = "raise",
    image_format: Optional[str] = None,
    quality: int = 90,
    local_files: Optional[LocalFilePolicy] = None,
    cache: Optional[DecisionCache] = None,
) -> list[ChatMessage]:
    """Return copies of ``messages`` whose ``ImageBlock``s are resized for the latest question.

    ``query`` defaults to the text of the last user message that has text. ``scope="all"``
    resizes the images of every message (all of them are resent on each call); ``"turn"`` only
    those from that last user message on (its own images and later tool results). All images go
    through ONE router batch. Each resized block keeps ``detail`` and every other field and holds
    the resized bytes (``path``/``url`` cleared); roles, ``additional_kwargs`` and all other blocks
    are kept. Remote URLs stay as they are unless the router's ``FetchPolicy`` allows them;
    ``path`` and ``file:`` URLs stay as they are, with the reason in the event, unless
    ``local_files`` names their folder (message content is untrusted).
    Decisions are dispatched as a :class:`CaresResizeEvent`. ``target`` None uses the router's.
    The message list is one provider request: more images than its provider accepts raise
    :class:`~cares_integrations.TooManyImagesError` before anything is routed, and per-request
    size rules apply (Anthropic: each image fitted to 2000x2000 px above 20 images).
    With a ``cache`` (:class:`~cares_integrations.core.conversation.DecisionCache`), an image
    already routed for the same question, target and policy is not routed again.
    """
    msgs, router, query, plan = _prepare(messages, router, query, scope, on_error, target)
    todo = plan.results.todo
    routed = route_images(router, [plan.sources[i] for i in todo], query,
                          target=target_or_router(target), cache=cache, on_error=on_error,
                          fmt=image_format, quality=quality, local_files=local_files,
                          images_per_request=plan.n_request) if todo else []
    return plan.finish(msgs, plan.results.merge(routed), query, target or router.target)


@dispatcher.span
async def aresize_chat_messages(
    messages: Sequence[ChatMessage],
    *,
    router: Router | str | None = None,
    target: Optional[str] = None,
    query: Optional[str] = None,
    scope: Scope = "all",
    on_error: OnError = "raise",
    image_format: Optional[str] = None,
    quality: int = 90,
    local_files: Optional[LocalFilePolicy] = None,
    cache: Optional[DecisionCache] = None,
) -> list[ChatMessage]:
    """Async :func:`resize_chat_messages`; decoding, routing and resizing run off the event loop."""
    msgs, router, query, plan = _prepare(messages, router, query, scope, on_error, target)
    todo = plan.results.todo
    routed = await aroute_images(router, [plan.sources[i] for i in todo], query,
                                 target=target_or_router(target), cache=cache, on_error=on_error,
                                 fmt=image_format, quality=quality, local_files=local_files,
                                 images_per_request=plan.n_request) if todo else []
    return plan.finish(msgs, plan.results.merge(routed), query, target or router.target)


MOVED_IMAGE_TEXT = "[image moved to the next user message]"
"""What a tool message says in place of an image moved by :func:`move_tool_images`."""


def move_tool_images(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """A new list in which ``ImageBlock``s of tool messages are moved into a user message that
    follows each run of tool results; each leaves :data:`MOVED_IMAGE_TEXT` in its place.

    For clients that drop images in tool results (llama-index-llms-openai sends a tool message's
    content as text only). Messages without tool images are the same objects.
    """
    out: list[ChatMessage] = []
    pending: list[ImageBlock] = []
    ids: list[str] = []

    def flush() -> None:
        if pending:
            head = TextBlock(text=f"Images returned by tool call {', '.join(ids)}:")
            out.append(ChatMessage(role=MessageRole.USER, blocks=[head, *pending]))
            pending.clear()
            ids.clear()

    for msg in messages:
        if msg.role != MessageRole.TOOL:
            flush()
            out.append(msg)
            continue
        images = [b for b in msg.blocks if isinstance(b, ImageBlock)]
        if not images:
            out.append(msg)
            continue
        pending.extend(images)
        ids.append(str(msg.additional_kwargs.get("tool_call_id", "?")))
        blocks = [TextBlock(text=MOVED_IMAGE_TEXT) if isinstance(b, ImageBlock) else b for b in msg.blocks]
        out.append(msg.model_copy(update={"blocks": blocks, "additional_kwargs": dict(msg.additional_kwargs)}))
    flush()
    return out
