"""The LangChain and LlamaIndex glue follow one rule for the question and one check of
``image_format`` (they used to differ: "" vs an error, "jpeg" rejected in one component,
"gif-ish" silently sent as PNG in another)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.schema import ImageNode, NodeWithScore

from cares_integrations import FixedRouter, route_and_resize
from cares_integrations.langchain import CaresDocumentTransformer, CaresImageResizer
from cares_integrations.langchain.messages import latest_question as lc_question
from cares_integrations.langchain.tools import CaresPageImageTool
from cares_integrations.llama_index import CaresImagePostprocessor, CaresImageTransform
from cares_integrations.llama_index.chat import latest_question as li_question

CONVERSATIONS = [
    [("user", "  What is the total?  "), ("assistant", "Let me look."), ("user", " ")],
    [("assistant", "Hello")],
    [],
    [("user", "first"), ("assistant", "x"), ("user", "second\nline")],
]


def _lc(turns):
    return [HumanMessage(content=t) if r == "user" else AIMessage(content=t) for r, t in turns]


def _li(turns):
    return [ChatMessage(role=MessageRole.USER if r == "user" else MessageRole.ASSISTANT, blocks=[TextBlock(text=t)])
            for r, t in turns]


@pytest.mark.parametrize("turns", CONVERSATIONS)
def test_latest_question_is_the_same_in_both_frameworks(turns):
    assert lc_question(_lc(turns)) == li_question(_li(turns))
    assert li_question(_li(turns)) == {0: "What is the total?", 1: "", 2: "", 3: "second\nline"}[CONVERSATIONS.index(turns)]


def _components(image_format):
    router = FixedRouter(300)
    return [
        lambda: CaresImageResizer(router=router, image_format=image_format),
        lambda: CaresDocumentTransformer(router=router, image_format=image_format),
        lambda: CaresPageImageTool(pages={}, router=router, image_format=image_format),
        lambda: CaresImagePostprocessor(router=router, image_format=image_format),
        lambda: CaresImageTransform(router=router, query="q", image_format=image_format),
    ]


@pytest.mark.parametrize("given, stored", [("jpeg", "JPEG"), ("JPG", "JPEG"), ("webp", "WEBP"), ("PNG", "PNG"), (None, None)])
def test_image_format_accepted_everywhere(given, stored):
    for build in _components(given):
        assert build().image_format == stored


def test_an_unknown_image_format_is_a_clear_error_everywhere(page_png):
    for build in _components("gif-ish"):
        with pytest.raises(ValueError, match="image_format must be one of PNG, JPEG, WEBP.*'gif-ish'"):
            build()
    with pytest.raises(ValueError, match="image_format must be one of"):
        route_and_resize(FixedRouter(300), [page_png], "q", fmt="gif-ish")
    from cares_integrations.llama_index import resize_chat_messages

    msgs = [ChatMessage(role="user", blocks=[ImageBlock(image=page_png), TextBlock(text="q")])]
    with pytest.raises(ValueError, match="image_format must be one of"):
        resize_chat_messages(msgs, router=FixedRouter(300), image_format="gif-ish")
    out = CaresImagePostprocessor(router=FixedRouter(300), image_format="jpeg").postprocess_nodes(
        [NodeWithScore(node=ImageNode(image=__import__("base64").b64encode(page_png).decode()), score=1.0)], query_str="q")
    assert out[0].node.image_mimetype == "image/jpeg"


# -- one set of routing options ---------------------------------------------------------------
# Every component takes the same routing options with the same checks. Before the LangChain
# mixin, CaresDocumentTransformer and the tools rejected ``policy``, CaresChatModel and
# CaresMiddleware rejected ``local_files``, no LangChain component took a router source string,
# and an unknown target was accepted at construction (failing only on the first image).


def _look(image: str, question: str) -> str:
    """Look at an image."""
    return "ok"


def _build(name, **options):
    """The component ``name`` built with ``options`` (for CaresChatModel and CaresMiddleware: the
    resizer they built from them)."""
    from langchain_core.tools import tool
    from llama_index.core.llms import MockLLM

    from cares_integrations.langchain import CaresChatModel, wrap_tool
    from cares_integrations.langchain.middleware import CaresMiddleware
    from cares_integrations.llama_index import CaresLLM
    from langchain_helpers import RecordingChatModel

    builders = {
        "CaresImageResizer": lambda: CaresImageResizer(**options),
        "CaresDocumentTransformer": lambda: CaresDocumentTransformer(**options),
        "wrap_tool": lambda: wrap_tool(tool(_look), **options),
        "CaresPageImageTool": lambda: CaresPageImageTool(pages={}, **options),
        "CaresChatModel": lambda: CaresChatModel(model=RecordingChatModel(), **options)._routing.resizer,
        "CaresMiddleware": lambda: CaresMiddleware(**options).resizer,
        "CaresImagePostprocessor": lambda: CaresImagePostprocessor(**options),
        "CaresImageTransform": lambda: CaresImageTransform(query="q", **options),
        "CaresLLM": lambda: CaresLLM(llm=MockLLM(), **options),
    }
    return builders[name]()


COMPONENTS = ["CaresImageResizer", "CaresDocumentTransformer", "wrap_tool", "CaresPageImageTool", "CaresChatModel",
              "CaresMiddleware", "CaresImagePostprocessor", "CaresImageTransform", "CaresLLM"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_component_takes_the_same_routing_options(name, tmp_path):
    from cares_integrations import LocalFilePolicy, ResolutionPolicy

    policy = ResolutionPolicy(max_long_side=256)
    files = LocalFilePolicy(roots=[tmp_path])
    component = _build(name, router="fixed:384", target="openai:gpt-4o", policy=policy, on_error="passthrough",
                       image_format="jpg", quality=70, local_files=files)
    assert component.router.name == "fixed-384"
    assert (component.target, component.policy, component.on_error) == ("openai:gpt-4o", policy, "passthrough")
    assert (component.image_format, component.quality, component.local_files) == ("JPEG", 70, files)


@pytest.mark.parametrize("name", COMPONENTS)
def test_option_errors_are_the_same_everywhere(name):
    from cares_integrations import UnknownTargetError

    with pytest.raises(UnknownTargetError, match="did you mean 'openai:gpt-4o'"):
        _build(name, router=FixedRouter(300), target="openai:gpt-4oo")
    with pytest.raises(ValueError, match="image_format must be one of"):
        _build(name, router=FixedRouter(300), image_format="gif-ish")
    with pytest.raises(ValueError, match="on_error"):
        _build(name, router=FixedRouter(300), on_error="ignore")
    with pytest.raises(ValueError, match="quality"):
        _build(name, router=FixedRouter(300), quality=0)


def test_policy_is_applied_by_the_document_transformer_and_the_tools(page_png):
    """``policy`` was not an option of these three; now it caps what they send."""
    from langchain_core.documents import Document
    from langchain_core.tools import tool

    from cares_integrations import ResolutionPolicy
    from cares_integrations.langchain import wrap_tool

    policy = ResolutionPolicy(max_long_side=256)
    doc = Document(page_content="p", metadata={"image": page_png})
    out = CaresDocumentTransformer(router="fixed:768", policy=policy).transform_documents([doc], query="q")
    assert max(out[0].metadata["cares"]["send_size"]) == 256

    seen = {}

    @tool
    def look(image: bytes, question: str) -> str:
        """Look at an image."""
        from PIL import Image
        import io

        seen["size"] = Image.open(io.BytesIO(image)).size
        return "ok"

    wrap_tool(look, router="fixed:768", policy=policy).invoke({"image": page_png, "question": "q"})
    assert max(seen["size"]) == 256
    content, artifact = CaresPageImageTool(pages={"p1": page_png}, router="fixed:768", policy=policy)._run(
        "p1", "q", config={})
    assert max(artifact["send_size"]) == 256 and "198x256" in content[0]["text"]


def test_page_tool_on_error_raise_is_a_tool_error_passthrough_a_text_answer():
    """The page tool's ``on_error`` used to be ignored (always a tool error)."""
    from langchain_core.tools import ToolException

    from langchain_helpers import CORRUPT_B64

    pages = {"bad": CORRUPT_B64}
    with pytest.raises(ToolException, match="could not be read"):
        CaresPageImageTool(pages=pages, router=FixedRouter(300))._run("bad", "q", config={})
    content, artifact = CaresPageImageTool(pages=pages, router=FixedRouter(300), on_error="passthrough")._run(
        "bad", "q", config={})
    assert [b["type"] for b in content] == ["text"] and "could not be read" in content[0]["text"]
    assert "ImageDecodeError" in artifact["error"]
