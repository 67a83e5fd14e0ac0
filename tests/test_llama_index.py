"""CaresImagePostprocessor with REAL llama-index-core query engines, retrievers and docstores.

A recording multimodal chat LLM captures every ImageBlock the engines send; a router subclass
counts its batched calls. No network, no model download.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from typing import Any, List

import pytest

pytest.importorskip("llama_index.core")

from helpers import encode, loopback_server, render_page  # noqa: E402
from llama_index.core import Settings  # noqa: E402
from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler  # noqa: E402
from llama_index.core.llms import (  # noqa: E402
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CustomLLM,
    ImageBlock,
    LLMMetadata,
    TextBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.response_synthesizers import ResponseMode  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    ImageDocument,
    ImageNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from llama_index.core.storage.docstore import SimpleDocumentStore  # noqa: E402
from PIL import Image  # noqa: E402

from cares_integrations.core.errors import ImageDecodeError, UnknownTargetError  # noqa: E402
from cares_integrations.llama_index import CaresImagePostprocessor, CaresResizeEvent  # noqa: E402
from cares_integrations.core.payload import DecodedImage, FetchPolicy  # noqa: E402
from cares_integrations.core.router import Prediction  # noqa: E402
from cares_integrations.routers.fixed import FixedRouter  # noqa: E402

TARGET = "openai:gpt-4o"
QUESTION = "What was the revenue for item 10?"


# -- real framework stand-ins -------------------------------------------------------------------
class RecordingLLM(CustomLLM):
    """A multimodal chat LLM that records every message list it is sent and answers 'ok'."""

    _calls: list = PrivateAttr(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        # A large window so no synthesizer truncates or drops an image for lack of room.
        return LLMMetadata(is_chat_model=True, is_multi_modal=True, context_window=200_000, model_name="recorder")

    @property
    def calls(self) -> list:
        return self._calls

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="ok")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError

    @llm_chat_callback()
    def chat(self, messages, **kwargs: Any) -> ChatResponse:
        self._calls.append(list(messages))
        return ChatResponse(message=ChatMessage(role="assistant", content="ok"))

    @llm_chat_callback()
    async def achat(self, messages, **kwargs: Any) -> ChatResponse:
        self._calls.append(list(messages))
        return ChatResponse(message=ChatMessage(role="assistant", content="ok"))

    def sent_images(self) -> list[ImageBlock]:
        """Every ImageBlock of every call, in order."""
        return [b for msgs in self._calls for m in msgs for b in m.blocks if isinstance(b, ImageBlock)]

    def sent_text(self) -> str:
        return "\n".join(b.text for msgs in self._calls for m in msgs for b in m.blocks if isinstance(b, TextBlock))


class DocstoreRetriever(BaseRetriever):
    """Returns the given docstore nodes, in order, with decreasing scores (what a vector index does)."""

    def __init__(self, docstore: SimpleDocumentStore, node_ids: list[str]) -> None:
        self._docstore = docstore
        self._ids = node_ids
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        return [NodeWithScore(node=self._docstore.get_node(i), score=0.9 - 0.1 * k) for k, i in enumerate(self._ids)]


class CountingRouter(FixedRouter):
    """A FixedRouter that records each batched prediction: sizes, questions and thread."""

    def __init__(self, long_side: int = 512, **options: Any) -> None:
        super().__init__(long_side, **options)
        self.batches: list[tuple[int, list[str]]] = []
        self.threads: list[int] = []

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        self.batches.append((len(images), list(queries)))
        self.threads.append(threading.get_ident())
        return super()._predict(images, queries)


class Collect(BaseEventHandler):
    """Collects CaresResizeEvents from the root dispatcher."""

    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collect"

    def handle(self, event, **kwargs: Any) -> None:
        if isinstance(event, CaresResizeEvent):
            self.events.append(event)


# -- fixtures -------------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_block(block: ImageBlock) -> Image.Image:
    img = Image.open(block.resolve_image())
    img.load()
    return img


@pytest.fixture
def llm(monkeypatch) -> RecordingLLM:
    model = RecordingLLM()
    # NoText / ContextOnly synthesizers fall back to Settings.llm; keep them offline.
    monkeypatch.setattr(Settings, "_llm", model)
    return model


@pytest.fixture
def store(tmp_path, page_png):
    """A docstore with three page images in three forms and two text nodes, interleaved."""
    big = render_page(1275, 1650, text_px=21)
    jpeg_path = tmp_path / "page2.jpg"
    jpeg_path.write_bytes(encode(big, "JPEG", quality=90))
    nodes = [
        ImageNode(image=b64(page_png), image_mimetype="image/png", text="page 1", metadata={"page": 1}),
        TextNode(text="Revenue table notes: all figures in EUR.", metadata={"page": 1}),
        ImageNode(image_path=str(jpeg_path), text="page 2", metadata={"page": 2}),
        TextNode(text="Appendix text.", metadata={"page": 3}),
        ImageNode(image=b64(encode(render_page(600, 800), "PNG")), text="page 4"),
    ]
    docstore = SimpleDocumentStore()
    docstore.add_documents(nodes)
    snapshot = {n.node_id: docstore.get_node(n.node_id).model_dump() for n in nodes}
    return docstore, [n.node_id for n in nodes], snapshot


def assert_docstore_unchanged(docstore, snapshot) -> None:
    for node_id, dumped in snapshot.items():
        assert docstore.get_node(node_id).model_dump() == dumped
        assert "cares" not in docstore.get_node(node_id).metadata


def assert_results(response, retrieved: list[NodeWithScore], router: CountingRouter) -> None:
    """Order, scores and text nodes unchanged; image nodes resized copies with a decision."""
    got = response.source_nodes
    assert [n.node.node_id for n in got] == [n.node.node_id for n in retrieved]
    assert [n.score for n in got] == pytest.approx([n.score for n in retrieved])
    for new, old in zip(got, retrieved):
        if isinstance(old.node, ImageNode):
            decision = new.node.metadata["cares"]
            assert decision["router"] == router.name and decision["target"] == TARGET
            assert decision["tokens_after"] < decision["tokens_before"]
            w, h = Image.open(io.BytesIO(base64.b64decode(new.node.image))).size
            assert [w, h] == decision["send_size"] and max(w, h) <= 512 < max(decision["original_size"])
            assert new.node.image_path is None and new.node.image_url is None
        else:
            assert new.node.model_dump() == old.node.model_dump()  # text nodes pass through as they are


# -- RetrieverQueryEngine(multimodal=True) in every response mode ----------------------------------
ALL_MODES = list(ResponseMode)
SENDS_IMAGES = {m for m in ResponseMode if m not in (ResponseMode.GENERATION, ResponseMode.NO_TEXT, ResponseMode.CONTEXT_ONLY)}


@pytest.mark.parametrize("mode", ALL_MODES, ids=[m.value for m in ALL_MODES])
def test_retriever_query_engine_every_response_mode_sends_resized_pages(mode, llm, store):
    docstore, ids, snapshot = store
    retriever = DocstoreRetriever(docstore, ids)
    router = CountingRouter(512)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=llm, multimodal=True, response_mode=mode,
        node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)],
    )
    response = engine.query(QUESTION)

    assert router.batches == [(3, [QUESTION] * 3)]  # one batched router call for the three pages
    assert_results(response, retriever.retrieve(QUESTION), router)
    sent = llm.sent_images()
    if mode in SENDS_IMAGES:
        decided = sorted(tuple(n.node.metadata["cares"]["send_size"]) for n in response.source_nodes
                         if isinstance(n.node, ImageNode))
        assert sorted(decode_block(b).size for b in sent) == decided  # each page once, at its decided size
        assert "send_size" not in llm.sent_text() and "tokens_before" not in llm.sent_text()
        if mode not in (ResponseMode.TREE_SUMMARIZE,):
            assert "Revenue table notes" in llm.sent_text()
    else:
        assert sent == []
    assert_docstore_unchanged(docstore, snapshot)


async def test_retriever_query_engine_aquery_routes_off_the_event_loop(llm, store):
    docstore, ids, snapshot = store
    retriever = DocstoreRetriever(docstore, ids)
    router = CountingRouter(512)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=llm, multimodal=True,
        node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)],
    )
    response = await engine.aquery(QUESTION)
    assert router.batches == [(3, [QUESTION] * 3)]
    assert router.threads[0] != threading.get_ident()  # the router ran in a worker thread
    assert_results(response, retriever.retrieve(QUESTION), router)
    assert len(llm.sent_images()) == 3 and all(max(decode_block(b).size) <= 512 for b in llm.sent_images())
    assert_docstore_unchanged(docstore, snapshot)


async def test_concurrent_aqueries_each_get_their_own_decisions(llm, store):
    docstore, ids, _ = store
    router = CountingRouter(512)
    engine = RetrieverQueryEngine.from_args(
        DocstoreRetriever(docstore, ids), llm=llm, multimodal=True,
        node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)],
    )
    questions = ["What is the title?", "List every revenue figure."]
    responses = await asyncio.gather(*(engine.aquery(q) for q in questions))
    assert sorted(q for _, qs in router.batches for q in set(qs)) == sorted(questions)
    assert all(len(r.source_nodes) == 5 for r in responses)


# -- the legacy SimpleMultiModalQueryEngine and MultiModalVectorStoreIndex -------------------------
def test_simple_multimodal_query_engine_query_and_aquery(llm, store):
    from llama_index.core.query_engine import SimpleMultiModalQueryEngine

    docstore, ids, snapshot = store
    retriever = DocstoreRetriever(docstore, ids)
    router = CountingRouter(384)
    with pytest.warns(DeprecationWarning):
        engine = SimpleMultiModalQueryEngine(
            retriever, multi_modal_llm=llm,
            node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)],
        )
    responses = [engine.query(QUESTION), asyncio.run(engine.aquery(QUESTION))]
    assert router.batches == [(3, [QUESTION] * 3)] * 2
    decided = [tuple(n.node.metadata["cares"]["send_size"]) for r in responses for n in r.metadata["image_nodes"]]
    # gpt-4o charges per 512-px tile, so sizing grows 384 to the largest size with the same cost
    assert all(max(size) == 512 for size in decided) and len(decided) == 6
    assert [decode_block(b).size for b in llm.sent_images()] == decided
    assert "Revenue table notes" in llm.sent_text()
    assert_docstore_unchanged(docstore, snapshot)


def test_multimodal_vector_store_index_as_query_engine(llm, page_png):
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.embeddings.mock_embed_model import MockMultiModalEmbedding
    from llama_index.core.indices import MultiModalVectorStoreIndex

    pages = [ImageNode(image=b64(page_png), text=f"page {i}") for i in range(2)]
    texts = [TextNode(text="The report covers 2024.")]
    index = MultiModalVectorStoreIndex(
        pages + texts, embed_model=MockEmbedding(embed_dim=8), image_embed_model=MockMultiModalEmbedding(embed_dim=8)
    )
    router = CountingRouter(512)
    # top_k 3 so the (tied) mock similarities cannot leave the text node out
    engine = index.as_query_engine(
        llm=llm, similarity_top_k=3, node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)]
    )
    response = engine.query(QUESTION)
    assert router.batches == [(2, [QUESTION] * 2)]
    sent = llm.sent_images()
    assert len(sent) == 2 and all(max(decode_block(b).size) == 512 for b in sent)
    assert {n.node.node_id for n in response.source_nodes} == {n.node_id for n in pages + texts}
    for node in pages:  # the index's own nodes are untouched
        stored = index.docstore.get_node(node.node_id)
        assert stored.image == b64(page_png) and "cares" not in stored.metadata


def test_citation_query_engine_and_multimodal_context_chat_engine(llm, store):
    from llama_index.core.chat_engine.multi_modal_context import MultiModalContextChatEngine
    from llama_index.core.query_engine import CitationQueryEngine

    docstore, ids, snapshot = store
    router = CountingRouter(512)
    post = CaresImagePostprocessor(router=router, target=TARGET)
    citation = CitationQueryEngine.from_args(
        None, retriever=DocstoreRetriever(docstore, ids), llm=llm, multimodal=True, node_postprocessors=[post]
    )
    citation.query(QUESTION)
    chat = MultiModalContextChatEngine.from_defaults(
        retriever=DocstoreRetriever(docstore, ids), multi_modal_llm=llm, node_postprocessors=[post]
    )
    chat.chat(QUESTION)
    assert router.batches == [(3, [QUESTION] * 3)] * 2
    sent = llm.sent_images()
    assert len(sent) == 6 and all(max(decode_block(b).size) == 512 for b in sent)
    assert_docstore_unchanged(docstore, snapshot)


# -- decisions: instrumentation event, span, metadata -----------------------------------------------
@pytest.fixture
def collector():
    root = get_dispatcher()
    handler = Collect()
    spans = SimpleSpanHandler()
    root.add_event_handler(handler)
    root.add_span_handler(spans)
    yield handler, spans
    root.event_handlers.remove(handler)
    root.span_handlers.remove(spans)


def test_event_and_span_report_decisions_and_tokens(llm, store, collector):
    handler, spans = collector
    docstore, ids, _ = store
    engine = RetrieverQueryEngine.from_args(
        DocstoreRetriever(docstore, ids), llm=llm, multimodal=True,
        node_postprocessors=[CaresImagePostprocessor(router=CountingRouter(512), target=TARGET)],
    )
    response = engine.query(QUESTION)
    [event] = handler.events
    assert event.class_name() == "CaresResizeEvent" and event.source == "postprocessor"
    assert event.query_str == QUESTION and event.target == TARGET
    assert (event.n_images, event.n_resized, event.n_skipped) == (3, 3, 0)
    image_ids = [n.node.node_id for n in response.source_nodes if isinstance(n.node, ImageNode)]
    assert [d["node_id"] for d in event.decisions] == image_ids
    assert event.tokens_before == sum(d["tokens_before"] for d in event.decisions)
    assert event.tokens_after == sum(d["tokens_after"] for d in event.decisions) < event.tokens_before
    assert event.tokens_saved > 0
    assert event.bytes_after == sum(d["bytes_after"] for d in event.decisions) < event.bytes_before
    span_names = [s.id_.split("-")[0] for s in spans.completed_spans]
    assert "CaresImagePostprocessor._postprocess_nodes" in span_names
    assert event.span_id is not None and event.span_id.startswith("CaresImagePostprocessor._postprocess_nodes")


def test_decision_metadata_is_excluded_from_llm_and_embedding_text(store):
    docstore, ids, _ = store
    post = CaresImagePostprocessor(router=CountingRouter(512), target=TARGET)
    nodes = post.postprocess_nodes(DocstoreRetriever(docstore, ids).retrieve(QUESTION), query_str=QUESTION)
    node = nodes[0].node
    assert "cares" in node.metadata and node.metadata["page"] == 1
    assert "cares" in node.excluded_llm_metadata_keys and "cares" in node.excluded_embed_metadata_keys
    assert "send_size" not in node.get_metadata_str(MetadataMode.LLM)
    assert "send_size" not in node.get_metadata_str(MetadataMode.EMBED)
    assert "page: 1" in node.get_metadata_str(MetadataMode.LLM)
    blocks = node.get_content_blocks(MetadataMode.LLM)
    assert [type(b) for b in blocks] == [TextBlock, ImageBlock] and "send_size" not in blocks[0].text
    assert "send_size" in node.get_metadata_str(MetadataMode.ALL)  # still there for the application


def test_image_path_node_becomes_inline_bytes_and_keeps_its_origin(store):
    docstore, ids, snapshot = store
    post = CaresImagePostprocessor(router=CountingRouter(512), target=TARGET)
    [n] = post.postprocess_nodes([NodeWithScore(node=docstore.get_node(ids[2]), score=0.5)], query_str=QUESTION)
    original_path = docstore.get_node(ids[2]).image_path
    assert n.score == 0.5 and n.node.node_id == ids[2]
    assert n.node.image_path is None and n.node.image_mimetype == "image/jpeg"
    assert n.node.metadata["cares"]["source"] == {"field": "image_path", "image_path": original_path}
    block = n.node.get_content_blocks()[0]
    assert block.path is None and block.url is None and max(decode_block(block).size) <= 512
    assert_docstore_unchanged(docstore, snapshot)


def test_image_document_resource_is_resized(page_png):
    doc = ImageDocument(image=b64(page_png), image_mimetype="image/png", text="scan")
    post = CaresImagePostprocessor(router=CountingRouter(512), target=TARGET, image_format="JPEG", quality=80)
    [n] = post.postprocess_nodes([NodeWithScore(node=doc, score=1.0)], query_str=QUESTION)
    assert n.node is not doc and n.node.image_resource.mimetype == "image/jpeg"
    [block] = [b for b in n.node.get_content_blocks() if isinstance(b, ImageBlock)]
    img = decode_block(block)
    assert img.format == "JPEG" and max(img.size) <= 512
    assert doc.image_resource.data == b64(page_png).encode() and "cares" not in doc.metadata


# -- errors, remote URLs, batching --------------------------------------------------------------------
def corrupt_node() -> ImageNode:
    return ImageNode(image=b64(b"\x89PNG\r\n\x1a\n this is not really a png"), text="broken")


def test_corrupt_image_raises_by_default(llm, page_png):
    nodes = [NodeWithScore(node=ImageNode(image=b64(page_png)), score=1.0), NodeWithScore(node=corrupt_node(), score=0.5)]
    post = CaresImagePostprocessor(router=CountingRouter(512), target=TARGET)
    with pytest.raises(ImageDecodeError, match="not a recognisable image"):
        post.postprocess_nodes(nodes, query_str=QUESTION)


def test_corrupt_image_passes_through_with_the_reason(page_png):
    bad = corrupt_node()
    nodes = [NodeWithScore(node=ImageNode(image=b64(page_png)), score=1.0), NodeWithScore(node=bad, score=0.5),
             NodeWithScore(node=ImageNode(text="no image at all"), score=0.1)]
    router = CountingRouter(512)
    out = CaresImagePostprocessor(router=router, target=TARGET, on_error="passthrough").postprocess_nodes(
        nodes, query_str=QUESTION)
    assert router.batches == [(1, [QUESTION])]
    assert out[1].node.image == bad.image and out[1].node is not bad
    assert "not a recognisable image" in out[1].node.metadata["cares"]["error"]
    assert out[1].node.metadata["cares"]["changed"] is False
    assert "no image" in out[2].node.metadata["cares"]["error"]
    assert out[0].node.metadata["cares"]["changed"] is True


def test_node_without_any_image_raises_by_default():
    post = CaresImagePostprocessor(router=CountingRouter(512))
    with pytest.raises(ImageDecodeError, match="has no image"):
        post.postprocess_nodes([NodeWithScore(node=ImageNode(text="empty"), score=1.0)], query_str=QUESTION)


def test_remote_url_is_left_alone_unless_the_fetch_policy_allows_it(page_png):
    remote = ImageNode(image_url="https://example.com/page.png", text="remote page")
    router = CountingRouter(512)
    out = CaresImagePostprocessor(router=router, target=TARGET).postprocess_nodes(
        [NodeWithScore(node=remote, score=1.0), NodeWithScore(node=ImageNode(image=b64(page_png)), score=0.5)],
        query_str=QUESTION,
    )
    assert router.batches == [(1, [QUESTION])]  # only the local page was routed
    assert out[0].node.image_url == "https://example.com/page.png" and out[0].node.image is None
    assert "remote fetching is off" in out[0].node.metadata["cares"]["skipped_reason"]

    fenced = CountingRouter(512, fetch=FetchPolicy(allowed_hosts=["images.example.org"]))
    out = CaresImagePostprocessor(router=fenced).postprocess_nodes([NodeWithScore(node=remote, score=1.0)],
                                                                    query_str=QUESTION)
    assert "not allow-listed" in out[0].node.metadata["cares"]["skipped_reason"] and fenced.batches == []


@pytest.fixture
def local_server(page_png):
    """The loopback server serving page.png (no outside network needed)."""
    with loopback_server({"/page.png": page_png}) as server:
        yield server.url()


def test_allowed_remote_url_is_fetched_resized_and_inlined(local_server):
    remote = ImageNode(image_url=local_server, text="remote page")
    router = CountingRouter(512, fetch=FetchPolicy(allowed_hosts=["127.0.0.1"]))
    [out] = CaresImagePostprocessor(router=router, target=TARGET).postprocess_nodes(
        [NodeWithScore(node=remote, score=1.0)], query_str=QUESTION)
    assert router.batches == [(1, [QUESTION])]
    # the URL is cleared (LLM integrations would send it instead of the bytes) and kept in the decision
    assert out.node.image_url is None and out.node.metadata["cares"]["source"]["image_url"] == local_server
    assert max(decode_block(out.node.get_content_blocks()[0]).size) == 512
    assert remote.image_url == local_server and remote.image is None


def test_eight_pages_one_router_call(page_png):
    router = CountingRouter(768)
    nodes = [NodeWithScore(node=ImageNode(image=b64(page_png), text=f"p{i}"), score=1 - i / 10) for i in range(8)]
    out = CaresImagePostprocessor(router=router, target=TARGET).postprocess_nodes(nodes, query_str=QUESTION)
    assert router.batches == [(8, [QUESTION] * 8)]
    assert [n.score for n in out] == [n.score for n in nodes]
    assert [n.node.text for n in out] == [f"p{i}" for i in range(8)]


def test_nodes_without_images_make_no_router_call():
    router = CountingRouter(512)
    nodes = [NodeWithScore(node=TextNode(text="only text"), score=1.0)]
    assert CaresImagePostprocessor(router=router).postprocess_nodes(nodes, query_str=QUESTION) == nodes
    assert router.batches == []


# -- configuration -----------------------------------------------------------------------------------
def test_needs_a_query():
    post = CaresImagePostprocessor(router=CountingRouter(512))
    with pytest.raises(ValueError, match="query_bundle= or query_str="):
        post.postprocess_nodes([NodeWithScore(node=TextNode(text="x"), score=1.0)])


def test_unknown_target_and_bad_options_fail_at_construction():
    with pytest.raises(UnknownTargetError):
        CaresImagePostprocessor(router=CountingRouter(512), target="no-such-model")
    with pytest.raises(ValueError, match="on_error"):
        CaresImagePostprocessor(router=CountingRouter(512), on_error="ignore")
    with pytest.raises(ValueError, match="quality"):
        CaresImagePostprocessor(router=CountingRouter(512), quality=0)


def test_serializes_options_but_not_the_router():
    post = CaresImagePostprocessor(router="fixed:768", target=TARGET, on_error="passthrough")
    assert post.router.fixed_long_side == 768
    data = post.to_dict()
    assert data["class_name"] == "CaresImagePostprocessor" == CaresImagePostprocessor.class_name()
    assert data["target"] == TARGET and data["on_error"] == "passthrough" and "router" not in data
    assert "Cares" in CaresImagePostprocessor.__doc__ and CaresImagePostprocessor.model_fields["quality"].description


def test_default_router_end_to_end(llm, store):
    pytest.importorskip("cares_integrations.routers.textscale")
    from cares_integrations.routers.registry import load_router

    docstore, ids, snapshot = store
    router = load_router()
    engine = RetrieverQueryEngine.from_args(
        DocstoreRetriever(docstore, ids), llm=llm, multimodal=True,
        node_postprocessors=[CaresImagePostprocessor(router=router, target=TARGET)],
    )
    response = engine.query(QUESTION)
    decisions = [n.node.metadata["cares"] for n in response.source_nodes if isinstance(n.node, ImageNode)]
    assert len(decisions) == 3 and all(d["router"] == router.name for d in decisions)
    assert all(d["tokens_after"] <= d["tokens_before"] for d in decisions)
    sent = sorted(decode_block(b).size for b in llm.sent_images())
    assert sent == sorted(tuple(d["send_size"]) for d in decisions)
    assert_docstore_unchanged(docstore, snapshot)


def test_import_guard_names_the_extra(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "llama_index.core", None)
    for name in [m for m in sys.modules if m.startswith("cares_integrations.llama_index")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"cares-integrations\[llama-index\]"):
        importlib.import_module("cares_integrations.llama_index")


# -- serialization: the router is part of the component's identity ------------------------------------
def test_transformation_hash_changes_with_the_router():
    from llama_index.core.ingestion.pipeline import get_transformation_hash

    from cares_integrations import ResolutionPolicy
    from cares_integrations.llama_index import CaresImageTransform

    nodes = [ImageNode(image="aGVsbG8=", text="p1")]

    def digest(**kwargs):
        return get_transformation_hash(nodes, CaresImageTransform(query=QUESTION, **kwargs))

    small, large = digest(router="fixed:384"), digest(router="fixed:1024")
    assert small != large and small == digest(router="fixed:384")
    assert digest(router="fixed:384", target=TARGET) != small
    assert digest(router="fixed:384", policy=ResolutionPolicy(max_long_side=200)) != small
    data = CaresImagePostprocessor(router="fixed:384").to_dict()
    assert data["router_identity"]["source"] == "fixed:384" and data["router_identity"]["policy"]["bins"]


def test_the_components_take_a_policy(page_png):
    from cares_integrations import ResolutionPolicy

    post = CaresImagePostprocessor(router=CountingRouter(800), policy=ResolutionPolicy(max_long_side=300))
    [out] = post.postprocess_nodes([NodeWithScore(node=ImageNode(image=b64(page_png)), score=1.0)], query_str=QUESTION)
    assert out.node.metadata["cares"]["long_side"] == 300
    assert post.router.policy.max_long_side == 300
