"""CaresLLM inside real LlamaIndex agents, with the real llama-index OpenAI client against a
recording loopback server."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("llama_index.llms.openai")

from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent  # noqa: E402
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from llama_index.llms.openai import OpenAI  # noqa: E402
from PIL import Image  # noqa: E402

from cares_integrations.llama_index import CaresLLM  # noqa: E402
from cares_integrations.llama_index.chat import MOVED_IMAGE_TEXT  # noqa: E402
from langchain_helpers import PAGE, PAGE_PNG, SMALL, CountingRouter  # noqa: E402
from recording_server import RecordingServer  # noqa: E402

SCRIPT = [{"tool": "get_page", "args": {"page": "p1"}}, "The total is 42."]


def get_page(page: str) -> list:
    """Look at one page of the document."""
    return [TextBlock(text=f"Page {page}"), ImageBlock(image=PAGE_PNG, image_mimetype="image/png")]


def user_msg() -> ChatMessage:
    return ChatMessage(role="user", blocks=[TextBlock(text="What is the total?"),
                                            ImageBlock(image=PAGE_PNG, image_mimetype="image/png")])


def wire_images(request: dict) -> list[tuple[str, tuple[int, int]]]:
    """(role, size) of every image part in a recorded chat-completions request."""
    found = []
    for message in request["messages"]:
        for part in message["content"] if isinstance(message.get("content"), list) else ():
            if part.get("type") == "image_url":
                payload = part["image_url"]["url"].partition(",")[2]
                found.append((message["role"], Image.open(io.BytesIO(base64.b64decode(payload))).size))
    return found


def make_llm(server: RecordingServer, router, **options) -> CaresLLM:
    inner = OpenAI(model="gpt-4o", api_key="test", api_base=server.url + "/v1", max_retries=0)
    return CaresLLM(llm=inner, router=router, target="openai:gpt-4o", **options)


async def test_function_agent_routes_every_turn_and_memory_keeps_originals():
    router = CountingRouter(free_detail=False)
    with RecordingServer(list(SCRIPT)) as server:
        llm = make_llm(server, router)
        assert llm.metadata.is_function_calling_model and llm.metadata.context_window == 128000
        agent = FunctionAgent(llm=llm, tools=[FunctionTool.from_defaults(get_page)])
        handler = agent.run(user_msg=user_msg())
        assert str(await handler) == "The total is 42."
        first, second = server.requests
    assert wire_images(first) == [("user", (90, SMALL))]
    # Turn 2: the user's page again, and the tool's page moved into a user message after the
    # tool result (this client sends tool results as text only).
    assert wire_images(second) == [("user", (90, SMALL)), ("user", (90, SMALL))]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]
    assert second["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][2]["tool_call_id"] == "call_1" and MOVED_IMAGE_TEXT in second["messages"][2]["content"]
    assert second["tools"][0]["function"]["name"] == "get_page"
    # The same page for the same question was routed once; the agent's memory keeps the originals.
    assert router.calls == 1 and llm.decision_cache.hits == 2
    memory = await handler.ctx.store.get("memory")
    stored = [b for m in await memory.aget_all() for b in m.blocks if isinstance(b, ImageBlock)]
    assert len(stored) == 2
    assert all(Image.open(io.BytesIO(base64.b64decode(b.image))).size == PAGE.size for b in stored)


async def test_agent_workflow_with_keep_leaves_tool_images_in_place():
    with RecordingServer(list(SCRIPT)) as server:
        llm = make_llm(server, CountingRouter(free_detail=False), tool_images="keep")
        agent = FunctionAgent(name="reader", description="Reads pages.", llm=llm, tools=[FunctionTool.from_defaults(get_page)])
        out = await AgentWorkflow(agents=[agent], root_agent="reader").run(user_msg=user_msg())
        assert "The total is 42." in str(out)
        assert [m["role"] for m in server.requests[-1]["messages"]][-1] == "tool"


async def test_chat_achat_and_streams_send_the_same():
    sent = {}
    for mode in ("chat", "achat", "stream_chat", "astream_chat"):
        with RecordingServer(["ok"]) as server:
            llm = make_llm(server, CountingRouter(free_detail=False))
            messages = [user_msg()]
            if mode == "chat":
                llm.chat(messages)
            elif mode == "achat":
                await llm.achat(messages)
            elif mode == "stream_chat":
                list(llm.stream_chat(messages))
            else:
                [r async for r in await llm.astream_chat(messages)]
            sent[mode] = server.requests[0]["messages"]
            assert messages[0].blocks[1].image == base64.b64encode(PAGE_PNG)  # the caller's message is untouched
    assert sent["chat"] == sent["achat"] == sent["stream_chat"] == sent["astream_chat"]
    assert max(wire_images({"messages": sent["chat"]})[0][1]) == SMALL


def test_complete_passes_through():
    with RecordingServer(["fine"]) as server:
        llm = make_llm(server, CountingRouter())
        assert llm.complete("Say fine").text == "fine"
        assert server.requests[0]["messages"][-1]["content"] == "Say fine"


class MultiModalOpenAI(OpenAI):
    """The real llama-index OpenAI client with the ``complete(prompt, image_documents)`` of the
    llama-index-multi-modal-llms-* classes (``OpenAIMultiModal`` is this, deprecated): images
    and prompt go in one user message."""

    def _message(self, prompt, image_documents):
        from llama_index.core.base.llms.generic_utils import image_node_to_image_block
        from llama_index.core.schema import ImageNode

        blocks = [image_node_to_image_block(d) if isinstance(d, ImageNode) else d for d in image_documents]
        return [ChatMessage(role="user", blocks=[*blocks, TextBlock(text=prompt)])]

    def complete(self, prompt, image_documents, **kwargs):
        from llama_index.core.base.llms.generic_utils import chat_response_to_completion_response

        return chat_response_to_completion_response(self.chat(self._message(prompt, image_documents), **kwargs))

    async def acomplete(self, prompt, image_documents, **kwargs):
        from llama_index.core.base.llms.generic_utils import chat_response_to_completion_response

        return chat_response_to_completion_response(await self.achat(self._message(prompt, image_documents), **kwargs))


async def test_complete_resizes_the_image_documents_of_a_multimodal_llm():
    """complete() used to pass image_documents on untouched: the full-size pages were sent."""
    from llama_index.core.schema import ImageNode

    node = ImageNode(image=base64.b64encode(PAGE_PNG).decode(), image_mimetype="image/png")
    block = ImageBlock(image=PAGE_PNG, image_mimetype="image/png")
    router = CountingRouter(free_detail=False)
    sent = {}
    for mode in ("keyword", "positional", "async"):
        with RecordingServer(["42"]) as server:
            inner = MultiModalOpenAI(model="gpt-4o", api_key="test", api_base=server.url + "/v1", max_retries=0)
            llm = CaresLLM(llm=inner, router=router, target="openai:gpt-4o")
            if mode == "keyword":
                out = llm.complete("What is the total?", image_documents=[node, block])
            elif mode == "positional":
                out = llm.complete("What is the total?", [node, block])
            else:
                out = await llm.acomplete("What is the total?", image_documents=[node, block])
            assert out.text == "42"
            sent[mode] = server.requests[0]["messages"]
    assert wire_images({"messages": sent["keyword"]}) == [("user", (90, SMALL)), ("user", (90, SMALL))]
    assert sent["keyword"] == sent["positional"] == sent["async"]
    assert sent["keyword"][0]["content"][-1] == {"type": "text", "text": "What is the total?"}
    assert router.queries[0] == ["What is the total?"] * 2
    # The caller's documents are untouched.
    assert base64.b64decode(node.image) == PAGE_PNG and block.image == base64.b64encode(PAGE_PNG)


def test_complete_image_document_errors_follow_on_error():
    from llama_index.core.schema import ImageNode

    from cares_integrations.core.errors import ImageDecodeError

    with RecordingServer(["ok"]) as server:
        inner = MultiModalOpenAI(model="gpt-4o", api_key="test", api_base=server.url + "/v1", max_retries=0)
        with pytest.raises(ImageDecodeError, match="has no image"):
            CaresLLM(llm=inner, router=CountingRouter()).complete("q", image_documents=[ImageNode()])
        from langchain_helpers import CORRUPT_B64

        good = ImageBlock(image=PAGE_PNG, image_mimetype="image/png")
        llm = CaresLLM(llm=inner, router=CountingRouter(free_detail=False), on_error="passthrough")
        llm.complete("q", image_documents=[ImageNode(image=CORRUPT_B64, image_mimetype="image/png"), good])
        parts = [p["image_url"]["url"].partition(",")[2] for p in server.requests[0]["messages"][0]["content"]
                 if p["type"] == "image_url"]
        assert parts[0] == CORRUPT_B64  # the corrupt page goes on as it was, the good one resized
        assert Image.open(io.BytesIO(base64.b64decode(parts[1]))).size == (90, SMALL)
        with pytest.raises(TypeError, match="ImageNode / ImageBlock"):
            llm.complete("q", image_documents=["not an image document"])
