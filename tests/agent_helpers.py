"""Helpers for the agent tests: a scripted tool-calling chat model that records what it is sent,
and a way to read the size of every image in a message list."""

from __future__ import annotations

import json
from typing import Any, Iterator

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from cares_integrations.langchain.messages import find_images, role_and_content
from langchain_helpers import RecordingChatModel, decode


class ScriptedToolModel(RecordingChatModel):
    """The tests' recording chat model, answering with the next scripted AIMessage (tool calls or
    text). Streaming yields one chunk per reply with its tool-call chunks, as real clients do."""

    script: list[AIMessage] = Field(default_factory=list)
    bound_tools: list[Any] = Field(default_factory=list)
    model_name: str = "gpt-4o"

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        with self._lock:
            self.received.append(list(messages))
            turn = len(self.received) - 1
        return self.script[turn] if turn < len(self.script) else AIMessage(content="done", id=f"ai_{turn + 1}")

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages)
        chunks = [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                  for i, c in enumerate(reply.tool_calls)]
        yield ChatGenerationChunk(message=AIMessageChunk(content=reply.content, tool_call_chunks=chunks, id=reply.id))

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        self.bound_tools = list(tools)
        return self.bind(tools=[getattr(t, "name", t) for t in tools], **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted-openai"


def call(name: str, call_id: str, **args: Any) -> AIMessage:
    """A scripted reply that calls one tool."""
    return AIMessage(content="", id=f"ai_{call_id}", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])


def image_sizes(messages: list[Any]) -> list[tuple[int, int]]:
    """(width, height) of every image block in a message list, in order."""
    sizes = []
    for loc in find_images(messages):
        block = role_and_content(messages[loc.message_index])[1][loc.block_index]
        sizes.append(decode(block).size)
    return sizes


def shape(messages: list[Any]) -> list[tuple[str, Any, Any]]:
    """(type, id or tool_call_id, tool calls) of each message: what routing must not change."""
    return [(m.type, getattr(m, "tool_call_id", None) or m.id,
             [(c["name"], c["id"], c["args"]) for c in getattr(m, "tool_calls", [])]) for m in messages]
