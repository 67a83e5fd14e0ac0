"""Agent tools: wrap_tool keeps the tool's face and resizes its images; the page image tool
passes langchain-tests' standard tool tests."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_tests.unit_tests import ToolsUnitTests
from PIL import Image

from cares_integrations import ImageDecodeError
from cares_integrations.langchain import EVENT_NAME, CaresPageImageTool, make_page_image_tool, wrap_tool
from helpers import encode
from langchain_helpers import CORRUPT_B64, PAGE, PAGE_B64, PAGE_PNG, PAGE_URL, SMALL, CountingRouter


def _size(value: str) -> tuple[int, int]:
    payload = value.partition(",")[2] if value.startswith("data:") else value
    return Image.open(io.BytesIO(base64.b64decode(payload))).size


def make_reader():
    received: list[dict[str, Any]] = []

    @tool
    def read_page(page_image: str, question: str, pages: list[str] | None = None) -> str:
        """Answer a question about a page image (a data URL or base64)."""
        received.append({"page_image": page_image, "question": question, "pages": pages})
        return f"read {len(page_image)} chars"

    return read_page, received


def test_wrapped_tool_keeps_name_description_and_schema():
    inner, _ = make_reader()
    wrapped = wrap_tool(inner, router=CountingRouter())
    assert isinstance(wrapped, BaseTool)
    assert (wrapped.name, wrapped.description) == (inner.name, inner.description)
    assert wrapped.args_schema is inner.args_schema
    assert wrapped.tool_call_schema.model_json_schema() == inner.tool_call_schema.model_json_schema()
    assert wrapped.args == inner.args


def test_wrapped_tool_receives_resized_images_for_the_question():
    inner, received = make_reader()
    router = CountingRouter()
    wrapped = wrap_tool(inner, router=router)
    out = wrapped.invoke({"page_image": PAGE_URL, "question": "Total for item 3?", "pages": [PAGE_B64, "p2"]})
    assert out.startswith("read ")
    [args] = received
    assert max(_size(args["page_image"])) == SMALL and args["page_image"].startswith("data:image/png;base64,")
    assert args["pages"] == [PAGE_B64, "p2"]  # not an image argument by name, not a data URL
    assert router.calls == 1 and router.queries == [["Total for item 3?"]]


async def test_wrapped_tool_async_with_explicit_image_args_and_tool_call():
    inner, received = make_reader()
    router = CountingRouter()
    wrapped = wrap_tool(inner, router=router, image_args=["pages"], question_arg="question")
    msg = await wrapped.ainvoke(
        {"type": "tool_call", "name": "read_page", "id": "c1",
         "args": {"page_image": PAGE_URL, "question": "q", "pages": [PAGE_B64, PAGE_B64]}}
    )
    assert isinstance(msg, ToolMessage) and msg.tool_call_id == "c1"
    [args] = received
    assert args["page_image"] == PAGE_URL  # only the named arguments are resized
    assert [max(_size(p)) for p in args["pages"]] == [SMALL, SMALL]
    assert router.calls == 1 and router.queries == [["q", "q"]]


def test_wrapped_tool_question_getter_and_event():
    inner, received = make_reader()
    router = CountingRouter()
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append((name, data))

    wrapped = wrap_tool(inner, router=router, question_getter=lambda a: a["question"].upper())
    wrapped.invoke({"page_image": PAGE_B64, "question": "abc"}, config={"callbacks": [Catch()]})
    assert router.queries == [["ABC"]]
    assert max(_size(received[0]["page_image"])) == SMALL and not received[0]["page_image"].startswith("data:")
    [(name, data)] = events
    assert name == EVENT_NAME and data["tool"] == "read_page" and data["images"][0]["send_size"] == [90, SMALL]


def test_wrapped_tool_leaves_paths_and_errors_clearly(tmp_path):
    inner, received = make_reader()
    path = tmp_path / "page.png"
    path.write_bytes(PAGE_PNG)
    router = CountingRouter()
    wrap_tool(inner, router=router).invoke({"page_image": str(path), "question": "q"})
    assert received[0]["page_image"] == str(path) and router.calls == 0
    with pytest.raises(ImageDecodeError):
        wrap_tool(inner, router=router, image_args=["page_image"]).invoke({"page_image": CORRUPT_B64, "question": "q"})
    with pytest.raises(ImageDecodeError):
        wrap_tool(inner, router=router).invoke({"page_image": "data:image/png;base64," + CORRUPT_B64, "question": "q"})
    wrap_tool(inner, router=router, image_args=["page_image"], on_error="passthrough").invoke({"page_image": CORRUPT_B64, "question": "q"})
    assert received[-1]["page_image"] == CORRUPT_B64


def test_wrapped_content_and_artifact_tool_keeps_its_artifact():
    @tool(response_format="content_and_artifact")
    def measure(image: str) -> tuple[str, dict]:
        """Measure an image."""
        size = _size(image)
        return f"{size}", {"size": size}

    wrapped = wrap_tool(measure, router=CountingRouter())
    msg = wrapped.invoke({"type": "tool_call", "name": "measure", "id": "c9", "args": {"image": PAGE_B64}})
    assert msg.artifact == {"size": (90, SMALL)} and msg.content == "(90, 120)"
    with pytest.raises(TypeError, match="BaseTool"):
        wrap_tool(lambda x: x)  # type: ignore[arg-type]


# -- the page image tool --------------------------------------------------------------------------


class TestPageImageToolStandard(ToolsUnitTests):
    """langchain-tests' standard unit tests for the page image tool."""

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return CaresPageImageTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"pages": {"p1": PAGE_B64}, "router": CountingRouter(), "target": "openai:gpt-4o"}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"page": "p1", "question": "What is the revenue for item 10?"}


def test_page_tool_returns_content_blocks_and_the_decision():
    page = encode(Image.open(io.BytesIO(PAGE_PNG)).resize((850, 1100)), "JPEG")
    t = make_page_image_tool({"p1": page}, router=CountingRouter(512), target="openai:gpt-4o")
    msg = t.invoke({"type": "tool_call", "name": t.name, "id": "c1", "args": {"page": "p1", "question": "q"}})
    assert isinstance(msg, ToolMessage) and msg.status == "success"
    text, image = msg.content
    assert text["type"] == "text" and "visual tokens for openai:gpt-4o" in text["text"]
    assert image["type"] == "image" and image["mime_type"] == "image/jpeg"
    img = Image.open(io.BytesIO(base64.b64decode(image["base64"])))
    assert list(img.size) == msg.artifact["send_size"] and max(img.size) < 1100
    assert msg.artifact["page"] == "p1" and msg.artifact["tokens_after"] < msg.artifact["tokens_before"]


async def test_page_tool_folder_loader_and_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(PAGE_PNG)
    t = make_page_image_tool(tmp_path, router=CountingRouter(), image_block="image_url")
    msg = await t.ainvoke({"type": "tool_call", "name": t.name, "id": "c", "args": {"page": "a.png", "question": "q"}})
    assert max(_size(msg.content[1]["image_url"]["url"])) == SMALL
    assert "outside the page folder" in t.invoke({"page": "../etc/passwd", "question": "q"})
    assert "known pages: a.png" in t.invoke({"page": "b.png", "question": "q"})

    loader = make_page_image_tool(lambda p: {"x": PAGE}.get(p), router=CountingRouter())
    blocks = loader.invoke({"page": "x", "question": "q"})
    assert max(Image.open(io.BytesIO(base64.b64decode(blocks[1]["base64"]))).size) == SMALL
    assert "unknown page 'y'" in loader.invoke({"page": "y", "question": "q"})
    bad = make_page_image_tool({"b": CORRUPT_B64}, router=CountingRouter())
    msg = bad.invoke({"type": "tool_call", "name": bad.name, "id": "c", "args": {"page": "b", "question": "q"}})
    assert msg.status == "error" and "could not be read" in msg.content
