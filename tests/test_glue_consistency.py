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
