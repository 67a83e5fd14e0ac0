"""What real provider clients send for a tool result holding an image, with and without the
middleware, recorded by a loopback server (docs/agents.md quotes these payloads)."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("langchain.agents")
pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

from langchain.agents import create_agent  # noqa: E402
from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from PIL import Image  # noqa: E402

from cares_integrations.langchain import CaresChatModel, CaresMiddleware, make_page_image_tool  # noqa: E402
from cares_integrations.langchain.messages import MOVED_IMAGE_TEXT  # noqa: E402
from langchain_helpers import PAGE_PNG, SMALL, CountingRouter  # noqa: E402
from recording_server import RecordingServer  # noqa: E402

SCRIPT = [{"tool": "get_page_image", "args": {"page": "p1", "question": "What is the total?"}}, "The total is 42."]


def _size(data_or_url: str) -> tuple[int, int]:
    payload = data_or_url.partition(",")[2] if data_or_url.startswith("data:") else data_or_url
    return Image.open(io.BytesIO(base64.b64decode(payload))).size


def _run(make_model, tool_images="auto"):
    with RecordingServer(list(SCRIPT)) as server:
        tool = make_page_image_tool({"p1": PAGE_PNG}, router=CountingRouter(long_side=1000))
        mw = CaresMiddleware(router=CountingRouter(free_detail=False), target="openai:gpt-4o", tool_images=tool_images)
        agent = create_agent(make_model(server.url), [tool], middleware=[mw])
        result = agent.invoke({"messages": [HumanMessage("What is the total?")]})
        return server.requests, result


def test_chat_completions_moves_tool_images_into_a_user_message():
    requests, result = _run(lambda url: ChatOpenAI(model="gpt-4o", api_key="test", base_url=url + "/v1", max_retries=0))
    messages = requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    tool, moved = messages[2], messages[3]
    assert tool["tool_call_id"] == "call_1"
    assert all(part["type"] == "text" for part in tool["content"])  # no image part in role "tool"
    assert MOVED_IMAGE_TEXT in [part["text"] for part in tool["content"]]
    images = [p for p in moved["content"] if p["type"] == "image_url"]
    assert len(images) == 1 and max(_size(images[0]["image_url"]["url"])) == SMALL
    # The agent's state keeps the tool result as the tool returned it.
    stored_tool = result["messages"][2]
    assert any(b.get("type") == "image" for b in stored_tool.content)


def test_keep_sends_the_image_in_the_tool_message():
    requests, _ = _run(lambda url: ChatOpenAI(model="gpt-4o", api_key="test", base_url=url + "/v1", max_retries=0),
                       tool_images="keep")
    tool = requests[1]["messages"][2]
    assert tool["role"] == "tool" and [p["type"] for p in tool["content"]] == ["text", "image_url"]
    assert max(_size(tool["content"][1]["image_url"]["url"])) == SMALL


def test_responses_api_keeps_input_image_in_function_call_output():
    requests, _ = _run(lambda url: ChatOpenAI(model="gpt-4o", api_key="test", base_url=url + "/v1", max_retries=0,
                                              use_responses_api=True))
    items = requests[1]["input"]
    output = next(i for i in items if i.get("type") == "function_call_output")
    assert [p["type"] for p in output["output"]] == ["input_text", "input_image"]
    assert max(_size(output["output"][1]["image_url"])) == SMALL
    assert not any(i.get("role") == "user" and i is not items[0] for i in items)


def test_anthropic_keeps_images_in_tool_result():
    requests, _ = _run(lambda url: ChatAnthropic(model="claude-sonnet-4-5", api_key="test", base_url=url, max_retries=0))
    last = requests[1]["messages"][-1]
    result = last["content"][0]
    assert last["role"] == "user" and result["type"] == "tool_result" and result["tool_use_id"] == "toolu_1"
    image = next(p for p in result["content"] if p["type"] == "image")
    assert max(_size(image["source"]["data"])) == SMALL


async def test_chat_model_wrapper_streams_and_calls_tools_through_the_real_client():
    with RecordingServer(list(SCRIPT) * 2) as server:
        inner = ChatOpenAI(model="gpt-4o-2024-08-06", api_key="test", base_url=server.url + "/v1", max_retries=0)
        llm = CaresChatModel(model=inner, router=CountingRouter(free_detail=False))
        assert llm.model_name == "gpt-4o-2024-08-06" and llm.profile == inner.profile
        tool = make_page_image_tool({"p1": PAGE_PNG}, router=CountingRouter(long_side=1000))
        agent = create_agent(llm, [tool])
        chunks = [c async for c in agent.astream({"messages": [HumanMessage("What is the total?")]}, stream_mode="messages")]
        ai_text = "".join(c[0].content for c in chunks if c[0].type == "AIMessageChunk" and isinstance(c[0].content, str))
        assert ai_text.count("The total is 42.") == 1  # each token once: the wrapped run is not streamed again
        sent = server.requests[1]
        assert sent["stream"] is True and sent["tools"][0]["function"]["name"] == "get_page_image"
        moved = sent["messages"][-1]
        assert moved["role"] == "user"
        url = next(p for p in moved["content"] if p["type"] == "image_url")["image_url"]["url"]
        assert max(_size(url)) == SMALL
