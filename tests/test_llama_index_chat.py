"""resize_chat_messages over real ChatMessage lists, and CaresImageTransform in a real IngestionPipeline."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("llama_index.core")

from helpers import encode, render_page  # noqa: E402
from llama_index.core.base.llms.types import (  # noqa: E402
    CachePoint,
    CacheControl,
    CitableBlock,
    DocumentBlock,
    ThinkingBlock,
)
from llama_index.core.ingestion import IngestionPipeline  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.llms import ChatMessage, ImageBlock, MessageRole, TextBlock  # noqa: E402
from llama_index.core.schema import ImageDocument, ImageNode, TextNode  # noqa: E402
from PIL import Image  # noqa: E402
from test_llama_index import TARGET, Collect, CountingRouter  # noqa: E402

from cares_integrations import LocalFilePolicy  # noqa: E402
from cares_integrations.core.errors import ImageDecodeError  # noqa: E402
from cares_integrations.llama_index import (  # noqa: E402
    CaresImageTransform,
    aresize_chat_messages,
    resize_chat_messages,
)

QUESTION = "What is the total on this invoice?"


def size_of(block: ImageBlock) -> tuple[int, int]:
    return Image.open(block.resolve_image()).size


@pytest.fixture
def conversation(page_png, tmp_path):
    """A multi-turn agent conversation with images in several places and many kinds of block."""
    path = tmp_path / "scan.jpg"
    path.write_bytes(encode(render_page(1275, 1650, text_px=21), "JPEG"))
    pdf = DocumentBlock(data=b"%PDF-1.4 tiny", document_mimetype="application/pdf", title="terms.pdf")
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="You read scanned documents."),
        ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="Here is last year's page."),
                                                   ImageBlock(path=path, detail="low")]),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[ThinkingBlock(content="looking"), TextBlock(text="Noted.")],
                    additional_kwargs={"tool_calls": [{"id": "c1"}]}),
        ChatMessage(role=MessageRole.USER, additional_kwargs={"name": "alice"}, blocks=[
            ImageBlock(image=page_png, image_mimetype="image/png", detail="high"),
            pdf,
            CachePoint(cache_control=CacheControl(type="ephemeral")),
            CitableBlock(title="p3", source="doc#3", content=[TextBlock(text="cited"), ImageBlock(image=page_png)]),
            TextBlock(text=QUESTION),
        ]),
    ]


def test_resizes_every_image_for_the_latest_question_and_keeps_everything_else(conversation, tmp_path):
    before = [m.model_dump() for m in conversation]
    router = CountingRouter(512)
    # message content is untrusted: the scan's path is read only because its folder is allowed
    out = resize_chat_messages(conversation, router=router, target=TARGET,
                               local_files=LocalFilePolicy(roots=[tmp_path]))

    assert router.batches == [(3, [QUESTION] * 3)]  # one batch, routed for the latest user question
    assert [m.role for m in out] == [m.role for m in conversation]
    assert [m.additional_kwargs for m in out] == [m.additional_kwargs for m in conversation]
    assert [m.model_dump() for m in conversation] == before  # input untouched
    for new, old in zip(out, conversation):
        assert [type(b) for b in new.blocks] == [type(b) for b in old.blocks]
        for nb, ob in zip(new.blocks, old.blocks):
            if not isinstance(ob, (ImageBlock, CitableBlock)):
                assert nb.model_dump() == ob.model_dump()
    scan, page, cited = out[1].blocks[1], out[3].blocks[0], out[3].blocks[3].content[1]
    assert scan.detail == "low" and page.detail == "high"
    assert scan.path is None and scan.image_mimetype == "image/jpeg"
    assert out[3].blocks[3].content[0].text == "cited" and out[3].blocks[3].title == "p3"
    for block in (scan, page, cited):
        assert max(size_of(block)) == 512
    assert size_of(conversation[3].blocks[0]) == (850, 1100)  # the input block still holds the original


def test_scope_turn_only_resizes_the_current_turn(conversation, page_png):
    router = CountingRouter(512)
    out = resize_chat_messages(conversation, router=router, scope="turn")
    assert router.batches[0][0] == 2
    assert out[1].blocks[1] is conversation[1].blocks[1]  # earlier turn left as it was
    assert max(size_of(out[3].blocks[0])) == 512


def test_explicit_query_and_tool_result_images(page_png):
    msgs = [
        ChatMessage(role="user", content="Open the report and tell me the title."),
        ChatMessage(role="tool", blocks=[ImageBlock(image=page_png)], additional_kwargs={"tool_call_id": "t1"}),
    ]
    router = CountingRouter(512)
    out = resize_chat_messages(msgs, router=router, scope="turn")
    assert router.batches == [(1, ["Open the report and tell me the title."])]
    assert out[1].additional_kwargs == {"tool_call_id": "t1"} and max(size_of(out[1].blocks[0])) == 512
    resize_chat_messages(msgs, router=router, query="Read the footnote")
    assert router.batches[-1] == (1, ["Read the footnote"])


def test_event_is_dispatched_with_chat_decisions(conversation, tmp_path):
    root = get_dispatcher()
    handler = Collect()
    root.add_event_handler(handler)
    try:
        resize_chat_messages(conversation, router=CountingRouter(512), target=TARGET,
                             local_files=LocalFilePolicy(roots=[tmp_path]))
    finally:
        root.event_handlers.remove(handler)
    [event] = handler.events
    assert event.source == "chat" and event.query_str == QUESTION and event.n_images == 3
    assert event.tokens_after < event.tokens_before
    assert [d["source"]["field"] for d in event.decisions] == ["path", "image", "image"]


async def test_async_variant(conversation):
    router = CountingRouter(768)
    out = await aresize_chat_messages(conversation, router=router, target=TARGET)
    assert len(router.batches) == 1 and max(size_of(out[3].blocks[0])) <= 1024


def test_bad_inputs_are_named(conversation, page_png):
    with pytest.raises(TypeError, match="message 1 is a dict"):
        resize_chat_messages([conversation[0], {"role": "user"}], router=CountingRouter(512))
    with pytest.raises(TypeError, match="single ChatMessage"):
        resize_chat_messages(conversation[0], router=CountingRouter(512))
    router = CountingRouter(512)  # no user text: routed for "" (as in LangChain), not an error
    resize_chat_messages([ChatMessage(role="user", blocks=[ImageBlock(image=page_png)])], router=router)
    assert router.batches == [(1, [""])]
    with pytest.raises(ValueError, match="scope"):
        resize_chat_messages(conversation, router=CountingRouter(512), scope="latest")


def test_corrupt_image_block_raises_or_passes_through(page_png):
    broken = ImageBlock(image=b"GIF89a but truncated", image_mimetype="image/gif")
    msgs = [ChatMessage(role="user", blocks=[broken, ImageBlock(image=page_png), TextBlock(text=QUESTION)])]
    with pytest.raises(ImageDecodeError):
        resize_chat_messages(msgs, router=CountingRouter(512))
    out = resize_chat_messages(msgs, router=CountingRouter(512), on_error="passthrough")
    assert out[0].blocks[0] is broken and max(size_of(out[0].blocks[1])) == 512


def test_remote_url_blocks_are_left_alone():
    block = ImageBlock(url="https://example.com/page.png")
    router = CountingRouter(512)
    out = resize_chat_messages([ChatMessage(role="user", blocks=[block, TextBlock(text=QUESTION)])], router=router)
    assert out[0].blocks[0] is block and router.batches == []


# -- ingestion transform ----------------------------------------------------------------------------
def test_transform_in_an_ingestion_pipeline(page_png):
    node = ImageNode(image=base64.b64encode(page_png).decode(), text="page")
    doc = ImageDocument(image=base64.b64encode(page_png).decode(), image_mimetype="image/png")
    text = TextNode(text="plain text")
    router = CountingRouter(512)
    transform = CaresImageTransform(query=QUESTION, router=router, target=TARGET)
    out = IngestionPipeline(transformations=[transform]).run(nodes=[node, text, doc])
    assert router.batches == [(2, [QUESTION] * 2)]
    assert [n.node_id for n in out] == [node.node_id, text.node_id, doc.node_id]
    assert max(Image.open(io.BytesIO(base64.b64decode(out[0].image))).size) == 512
    assert out[0].metadata["cares"]["tokens_after"] < out[0].metadata["cares"]["tokens_before"]
    assert out[1].text == "plain text" and "cares" not in out[1].metadata
    assert max(Image.open(io.BytesIO(base64.b64decode(out[2].image_resource.data))).size) == 512
    assert node.image == base64.b64encode(page_png).decode() and "cares" not in node.metadata
    assert CaresImageTransform.class_name() == transform.to_dict()["class_name"] and transform.to_dict()["query"] == QUESTION


async def test_transform_async(page_png):
    router = CountingRouter(512)
    out = await CaresImageTransform(query=QUESTION, router=router).acall([ImageNode(image=base64.b64encode(page_png).decode())])
    assert router.batches == [(1, [QUESTION])] and out[0].metadata["cares"]["changed"] is True


# -- per-request limits ------------------------------------------------------------------------------
def _many(n: int, size: tuple[int, int]) -> list[ChatMessage]:
    png = encode(render_page(*size, text_px=16, lines=20), "PNG")
    return [ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text=QUESTION),
                                                       *(ImageBlock(image=png, image_mimetype="image/png") for _ in range(n))])]


def test_more_than_20_images_for_claude_are_each_fitted_to_2000_px():
    from cares_integrations import FixedRouter

    out = resize_chat_messages(_many(21, (2400, 1200)), router=FixedRouter(2576), target="anthropic:claude-opus-4-7")
    sizes = {size_of(b) for b in out[0].blocks if isinstance(b, ImageBlock)}
    assert sizes == {(2000, 1000)}  # each image fitted, none dropped
    assert sum(isinstance(b, ImageBlock) for b in out[0].blocks) == 21


def test_too_many_images_raise_naming_the_limit_and_provider():
    from cares_integrations import FixedRouter, TooManyImagesError
    from cares_integrations.llama_index import CaresLLM
    from llama_index.core.llms import MockLLM

    router = CountingRouter()
    messages = _many(501, (64, 64))
    with pytest.raises(TooManyImagesError, match="501 images; OpenAI accepts at most 500 per request"):
        resize_chat_messages(messages, router=router, target="openai:gpt-4o")
    assert router.batches == []  # raised before anything was routed
    llm = CaresLLM(llm=MockLLM(), router=FixedRouter(512), target="openai:gpt-4o")
    with pytest.raises(TooManyImagesError):
        llm.chat(messages)
    with pytest.raises(TooManyImagesError, match="at most 500"):  # a multimodal complete() is one request too
        llm.complete("What is the total?", image_documents=[b for b in messages[0].blocks if isinstance(b, ImageBlock)])
