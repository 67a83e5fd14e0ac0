"""Finding page images and their questions in a conversation, and writing resized images back.

Works on what flows between a prompt and a chat model: :class:`~langchain_core.messages.BaseMessage`
objects and the other message-like forms chat models accept (``{"role": ..., "content": ...}``
dicts, ``(role, content)`` pairs, bare strings). Nothing here mutates its input: messages that
change are rebuilt with ``model_copy(update=...)`` (or a new dict/tuple); the others are returned
as the very same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from langchain_core.messages import BaseMessage, ChatMessage, HumanMessage

from ..core.apply import ImageResult
from ..core.question import latest_question as core_latest_question
from .blocks import ImageBlockRef, needs_write, read_image_block, write_image_block

QuestionGetter = Callable[[Sequence[Any], int], str]
"""``(messages, message_index) -> question`` for the image(s) in ``messages[message_index]``."""

_HUMAN_ROLES = frozenset({"human", "user"})
_TEXT_TYPES = frozenset({"text", "input_text"})


@dataclass(frozen=True)
class LocatedImage:
    """An image block at ``messages[message_index].content[block_index]``."""

    message_index: int
    block_index: int
    ref: ImageBlockRef


def role_and_content(message: Any) -> tuple[str, Any]:
    """The role and content of any message-like item; TypeError for anything else."""
    if isinstance(message, BaseMessage):
        if isinstance(message, HumanMessage):
            return "human", message.content
        if isinstance(message, ChatMessage):
            return message.role, message.content
        return message.type, message.content
    if isinstance(message, str):
        return "human", message
    if isinstance(message, dict):
        if "content" not in message:
            raise TypeError(f"message dict has no 'content' key (keys: {sorted(message)})")
        return str(message.get("role") or message.get("type") or ""), message["content"]
    if isinstance(message, (tuple, list)) and len(message) == 2 and isinstance(message[0], str):
        return message[0], message[1]
    raise TypeError(
        f"unsupported message type {type(message).__name__}; expected a BaseMessage, a "
        "{'role', 'content'} dict, a (role, content) pair or a string"
    )


def with_content(message: Any, content: list[Any]) -> Any:
    """A new message like ``message`` with ``content``; every other field is kept."""
    if isinstance(message, BaseMessage):
        return message.model_copy(update={"content": content})
    if isinstance(message, dict):
        return {**message, "content": content}
    return type(message)((message[0], content))


def message_text(content: Any) -> str:
    """All text of a message's content (strings and text blocks), joined by newlines."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") in _TEXT_TYPES and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(p for p in parts if p.strip())


def is_human(message: Any) -> bool:
    """Whether a message-like item is the user speaking."""
    return role_and_content(message)[0].lower() in _HUMAN_ROLES


def latest_question(messages: Sequence[Any]) -> str:
    """The text of the latest human message that has any text, or ``""`` when there is none
    (the rule of :func:`cares_integrations.core.question.latest_question`)."""
    return core_latest_question([(is_human(m), message_text(role_and_content(m)[1])) for m in messages])


def default_question(messages: Sequence[Any], message_index: int) -> str:
    """The question an image is routed for: the latest human text in the conversation.

    For an image in the latest human turn that is the text of its own message; for an image in
    an earlier turn it is the follow-up question, so the page is re-routed for what is asked
    now. ``""`` when no human message has text (routers accept an empty question).
    """
    return latest_question(messages)


def find_images(messages: Sequence[Any]) -> list[LocatedImage]:
    """Every image block in the conversation, in order."""
    found: list[LocatedImage] = []
    for i, message in enumerate(messages):
        content = role_and_content(message)[1]
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            ref = read_image_block(block)
            if ref is not None:
                found.append(LocatedImage(i, j, ref))
    return found


def rewrite(messages: Sequence[Any], located: Sequence[LocatedImage], results: Sequence[ImageResult | None]) -> list[Any]:
    """A new message list with each changed image written back in its own block form.

    Messages with no changed image are the same objects as in ``messages``.
    """
    changes: dict[int, dict[int, tuple[ImageBlockRef, ImageResult]]] = {}
    for loc, result in zip(located, results):
        if needs_write(result):
            changes.setdefault(loc.message_index, {})[loc.block_index] = (loc.ref, result)
    out = list(messages)
    for i, blocks in changes.items():
        content = list(role_and_content(messages[i])[1])
        for j, (ref, result) in blocks.items():
            content[j] = write_image_block(content[j], ref, result)
        out[i] = with_content(messages[i], content)
    return out


MOVED_IMAGE_TEXT = "[image moved to the next user message]"
"""What a tool message says in place of an image moved by :func:`move_tool_images`."""


def move_tool_images(messages: Sequence[Any]) -> list[Any]:
    """A new list in which images inside tool messages are moved into a user message that follows
    each run of tool results (the API still gets every tool result right after its tool call).

    Each moved image leaves :data:`MOVED_IMAGE_TEXT` in its place; the user message names the tool
    call ids. Messages without tool images are the same objects.
    """
    out: list[Any] = []
    pending: list[Any] = []
    ids: list[str] = []

    def flush() -> None:
        if pending:
            head = {"type": "text", "text": f"Images returned by tool call {', '.join(ids)}:"}
            out.append(HumanMessage(content=[head, *pending]))
            pending.clear()
            ids.clear()

    for message in messages:
        role, content = role_and_content(message)
        if role != "tool":
            flush()
            out.append(message)
            continue
        if not isinstance(content, list) or not any(read_image_block(b) is not None for b in content):
            out.append(message)
            continue
        kept = []
        for block in content:
            if read_image_block(block) is not None:
                pending.append(block)
                kept.append({"type": "text", "text": MOVED_IMAGE_TEXT})
            else:
                kept.append(block)
        ids.append(str(getattr(message, "tool_call_id", None) or (message.get("tool_call_id") if isinstance(message, dict) else "?")))
        out.append(with_content(message, kept))
    flush()
    return out
