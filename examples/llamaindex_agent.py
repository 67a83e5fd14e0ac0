"""Offline LlamaIndex agent: ``FunctionAgent(llm=CaresLLM(llm=...))`` with a page tool.

The user attaches one page and asks about it; the agent calls ``get_page`` for a second page
(from ``examples/pages``), and a follow-up question rides on the same context, so every LLM call
resends every image in the history. A scripted function-calling LLM stands in for the model and
records what it is sent. For each LLM call the script prints the sizes sent, the visual tokens
before and after for the target (from :class:`CaresResizeEvent`), and the cache hits.

Run: ``python examples/llamaindex_agent.py`` (no network, no GPU, no model download).
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any, Sequence

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    LLMMetadata,
    TextBlock,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools import FunctionTool
from llama_index.core.memory import ChatMemoryBuffer
from PIL import Image

from cares_integrations import load_router
from cares_integrations.llama_index import CaresLLM, CaresResizeEvent

PAGES = Path(__file__).parent / "pages"
TARGET = "anthropic:claude-sonnet-4-5"


class ScriptedLLM(FunctionCallingLLM):
    """Plays a function-calling model: each call returns the next scripted reply and records the request."""

    script: list[Any] = Field(default_factory=list)
    sent: list[list[ChatMessage]] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_function_calling_model=True, is_chat_model=True, model_name="scripted")

    def _reply(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        self.sent.append(list(messages))
        step = self.script[len(self.sent) - 1]
        if isinstance(step, dict):  # a tool call
            return ChatResponse(message=ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [step]}))
        return ChatResponse(message=ChatMessage(role="assistant", content=step), delta=step)

    def chat(self, messages, **kwargs):
        return self._reply(messages)

    async def achat(self, messages, **kwargs):
        return self._reply(messages)

    def stream_chat(self, messages, **kwargs):
        yield self._reply(messages)

    async def astream_chat(self, messages, **kwargs):
        reply = self._reply(messages)

        async def gen():
            yield reply

        return gen()

    def complete(self, prompt, formatted=False, **kwargs):
        return CompletionResponse(text="")

    async def acomplete(self, prompt, formatted=False, **kwargs):
        return CompletionResponse(text="")

    def stream_complete(self, prompt, formatted=False, **kwargs):
        yield CompletionResponse(text="")

    async def astream_complete(self, prompt, formatted=False, **kwargs):
        async def gen():
            yield CompletionResponse(text="")

        return gen()

    def _prepare_chat_with_tools(self, tools, user_msg=None, chat_history=None, verbose=False,
                                 allow_parallel_tool_calls=False, tool_required=False, **kwargs):
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(user_msg if isinstance(user_msg, ChatMessage) else ChatMessage(role="user", content=user_msg))
        return {"messages": messages, "tools": tools}

    def get_tool_calls_from_response(self, response, error_on_no_tool_call=True, **kwargs):
        calls = response.message.additional_kwargs.get("tool_calls", [])
        return [ToolSelection(tool_id=c["id"], tool_name=c["name"], tool_kwargs=c["args"]) for c in calls]


class RouteLog(BaseEventHandler):
    """Keeps every :class:`CaresResizeEvent`."""

    events: list[Any] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RouteLog"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, CaresResizeEvent):
            self.events.append(event)


def sizes(messages: Sequence[ChatMessage]) -> list[str]:
    """``WxH`` of every image block in a message list."""
    out = []
    for message in messages:
        for block in message.blocks:
            if isinstance(block, ImageBlock) and block.image:
                w, h = Image.open(io.BytesIO(base64.b64decode(block.image))).size
                out.append(f"{w}x{h}")
    return out


async def main() -> None:
    pages = {p.name: p.read_bytes() for p in sorted(PAGES.glob("*.png"))}

    def get_page(page: str) -> list:
        """Look at one page of the document (the file name of the page)."""
        return [TextBlock(text=f"Page {page}."), ImageBlock(image=pages[page], image_mimetype="image/png")]

    scripted = ScriptedLLM(script=[
        {"id": "call_1", "name": "get_page", "args": {"page": "invoice-table-footnotes.png"}},
        "TML-42791 on the report; RKL-20415 on the invoice.",
        "The contract reference is C84544494.",
    ])
    router = load_router()
    llm = CaresLLM(llm=scripted, router=router, target=TARGET)
    log = RouteLog()
    get_dispatcher().add_event_handler(log)
    agent = FunctionAgent(llm=llm, tools=[FunctionTool.from_defaults(get_page)])
    memory = ChatMemoryBuffer.from_defaults(token_limit=1_000_000)  # one conversation across runs
    turns = [
        ChatMessage(role="user", blocks=[TextBlock(text='What is the value of "Order No." here and on the invoice?'),
                                         ImageBlock(image=pages["report-serif.png"], image_mimetype="image/png")]),
        ChatMessage(role="user", content='According to footnote 1, what is the "Contract reference"?'),
    ]
    print(f"target {TARGET}, router {router.name}")
    for turn, message in enumerate(turns, 1):
        before = len(scripted.sent)
        await agent.run(user_msg=message, memory=memory)
        for call in range(before, len(scripted.sent)):
            event = log.events[call]
            print(f"turn {turn}, LLM call {call + 1}: sent {', '.join(sizes(scripted.sent[call]))}; "
                  f"visual tokens {event.tokens_before} -> {event.tokens_after} (saved {event.tokens_saved}); "
                  f"cache hits {event.cache_hits}/{event.n_images}")
    print(f"the agent memory keeps the originals: {', '.join(sizes(memory.get_all()))}")


if __name__ == "__main__":
    asyncio.run(main())
