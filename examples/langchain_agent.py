"""Offline LangChain agent: ``create_agent`` + ``CaresMiddleware`` + a page tool.

The user attaches one page and asks about it; the agent looks at a second page through
``get_page_image`` (a :class:`CaresPageImageTool` over ``examples/pages``); later questions ride
on the same thread, so every model call resends every image in the history. A scripted
tool-calling fake model stands in for the LLM and records what it is sent. For each model call
the script prints the sizes sent (the agent's state keeps the 1700x2200 originals), the visual
tokens before and after for the target, and the middleware's cache hits.

Run: ``python examples/langchain_agent.py`` (no network, no GPU, no model download; needs the
``agents`` extra: ``pip install 'cares-integrations[agents]'``).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image
from pydantic import Field

from cares_integrations import load_router
from cares_integrations.langchain import EVENT_NAME, CaresMiddleware, make_page_image_tool
from cares_integrations.langchain.blocks import read_image_block

PAGES = Path(__file__).parent / "pages"
TARGET = "anthropic:claude-sonnet-4-5"


class ScriptedAgentModel(BaseChatModel):
    """Plays a tool-calling model: each call returns the next scripted reply and records the request."""

    script: list[AIMessage]
    sent: list[list[Any]] = Field(default_factory=list)

    def _reply(self, messages: list[Any]) -> AIMessage:
        self.sent.append(list(messages))
        return self.script[len(self.sent) - 1]

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        reply = self._reply(messages)
        chunks = [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                  for i, c in enumerate(reply.tool_calls)]
        yield ChatGenerationChunk(message=AIMessageChunk(content=reply.content, tool_call_chunks=chunks))

    def bind_tools(self, tools, **kwargs):
        return self.bind(**kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted"


class RouteLog(BaseCallbackHandler):
    """Keeps the middleware's ``cares_route`` events (the tool's own carry a ``"tool"`` key)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == EVENT_NAME and "tool" not in data:
            self.events.append(data)


def sizes(messages: list[Any]) -> list[str]:
    """``WxH`` of every image in a message list."""
    out = []
    for message in messages:
        for block in message.content if isinstance(message.content, list) else ():
            ref = read_image_block(block)
            if ref is not None and ref.source:
                payload = ref.source.partition(",")[2] if ref.source.startswith("data:") else ref.source
                w, h = Image.open(io.BytesIO(base64.b64decode(payload))).size
                out.append(f"{w}x{h}")
    return out


def tool_call(call_id: str, page: str, question: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "get_page_image", "id": call_id, "type": "tool_call",
                                              "args": {"page": page, "question": question}}])


def main() -> None:
    pages = {p.name: p.read_bytes() for p in sorted(PAGES.glob("*.png"))}
    router = load_router()
    tool = make_page_image_tool(pages, router=router, target=TARGET)
    model = ScriptedAgentModel(script=[
        tool_call("call_1", "invoice-table-footnotes.png", 'What is the value of "Order No."?'),
        AIMessage(content="TML-42791 on the report; RKL-20415 on the invoice."),
        AIMessage(content="The contract reference is C84544494."),
        AIMessage(content="TML-42791."),
    ])
    agent = create_agent(model, [tool], middleware=[CaresMiddleware(router=router, target=TARGET)],
                         checkpointer=InMemorySaver())
    log = RouteLog()
    config = {"configurable": {"thread_id": "demo"}, "callbacks": [log]}
    report = "data:image/png;base64," + base64.b64encode(pages["report-serif.png"]).decode()
    turns = [
        HumanMessage(content=[{"type": "text", "text": 'What is the value of "Order No." here and on the invoice?'},
                              {"type": "image_url", "image_url": {"url": report}}]),
        HumanMessage('According to footnote 1, what is the "Contract reference"?'),
        HumanMessage('What is the value of "Order No." here and on the invoice?'),
    ]
    print(f"target {TARGET}, router {router.name}")
    for turn, message in enumerate(turns, 1):
        before = len(model.sent)
        state = agent.invoke({"messages": [message]}, config)
        for call in range(before, len(model.sent)):
            event = log.events[call]
            saved = event["tokens_before"] - event["tokens_after"]
            print(f"turn {turn}, model call {call + 1}: sent {', '.join(sizes(model.sent[call]))}; "
                  f"visual tokens {event['tokens_before']} -> {event['tokens_after']} (saved {saved}); "
                  f"cache hits {event['cache_hits']}/{event['n_images']}")
    print(f"the agent state keeps what the user and the tool gave: {', '.join(sizes(state['messages']))}")


if __name__ == "__main__":
    main()
