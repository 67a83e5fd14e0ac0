"""The one rule for which question a conversation's images are routed for, shared by the
LangChain and LlamaIndex glue: the text of the latest user turn that has any text."""

from __future__ import annotations

from collections.abc import Sequence


def latest_question_index(turns: Sequence[tuple[bool, str]]) -> int | None:
    """Index of the latest turn ``(is_user, text)`` spoken by the user with non-blank text, or
    None when there is none."""
    for i in range(len(turns) - 1, -1, -1):
        is_user, text = turns[i]
        if is_user and text.strip():
            return i
    return None


def latest_question(turns: Sequence[tuple[bool, str]]) -> str:
    """The question: the latest user turn's text (stripped), or ``""`` when no user turn has
    text (routers accept an empty question; a caller that knows the question passes it)."""
    i = latest_question_index(turns)
    return "" if i is None else turns[i][1].strip()
