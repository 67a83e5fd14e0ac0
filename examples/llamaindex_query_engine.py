"""Offline multimodal RAG with LlamaIndex: every retrieved page is resized for its query.

A ``MultiModalVectorStoreIndex`` (mock embeddings, so no model download) holds a few page images
and a text note. A multimodal ``RetrieverQueryEngine`` (``multimodal=True``) retrieves them and
sends the pages to a stand-in multimodal chat LLM that records the ``ImageBlock``s it receives.
One node postprocessor, :class:`CaresImagePostprocessor`, resizes each page for the query. For
each query and two target models it prints the size chosen and the visual tokens before and
after, read from a LlamaIndex instrumentation event handler, and checks them against what the
LLM was actually sent. (A target that downscales large pages itself, such as Claude, saves few
tokens from a 200-dpi page; the upload still shrinks.)

Run: ``python examples/llamaindex_query_engine.py`` (no network, no GPU, no model download).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.embeddings.mock_embed_model import MockMultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CustomLLM,
    ImageBlock,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, TextNode
from PIL import Image, ImageDraw, ImageFont

from cares_integrations import load_router
from cares_integrations.llama_index import CaresImagePostprocessor, CaresResizeEvent

PAGES_DIR = Path(__file__).parent / "pages"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
TARGETS = ["qwen2.5-vl", "anthropic:claude-sonnet-4"]
QUERIES = ["What is the title of this report?", "What does the footnote on the invoice say?"]


class RecordingVLM(CustomLLM):
    """Stands in for a multimodal chat model: records the size of every image it is sent.

    ``RetrieverQueryEngine(multimodal=True)`` needs a chat model (``is_chat_model=True``);
    ``is_multi_modal`` documents that it accepts ImageBlocks.
    """

    _sent: list = PrivateAttr(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=True, is_multi_modal=True, context_window=200_000, model_name="recording-vlm")

    def take_sent(self) -> list[tuple[int, int]]:
        """Sizes of the images sent since the last call."""
        sent, self._sent = self._sent, []
        return sent

    @llm_chat_callback()
    def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
        for message in messages:
            for block in message.blocks:
                if isinstance(block, ImageBlock):
                    self._sent.append(Image.open(block.resolve_image()).size)
        return ChatResponse(message=ChatMessage(role="assistant", content="(answer)"))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="(answer)")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError


class PrintDecisions(BaseEventHandler):
    """Keeps the CaresResizeEvents dispatched through LlamaIndex instrumentation."""

    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "PrintDecisions"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, CaresResizeEvent):
            self.events.append(event)


def page_files(workdir: Path) -> list[Path]:
    """The example pages shipped in ``examples/pages``, or three rendered with Pillow."""
    shipped = sorted(PAGES_DIR.glob("*.png"))
    if shipped:
        return shipped
    paths = []
    for i, title in enumerate(["Annual report 2024", "Invoice 1182", "Sales by region"]):
        img = Image.new("RGB", (1700, 2200), "white")
        draw = ImageDraw.Draw(img)
        draw.text((120, 120), title, fill="black", font=ImageFont.truetype(FONT, 64))
        for row in range(20):
            draw.text((120, 320 + row * 68), f"Item {row}: {1000 + 37 * row} EUR", fill="black",
                      font=ImageFont.truetype(FONT, 34))
        draw.text((120, 2080), "Footnote: prices exclude VAT.", fill="black", font=ImageFont.truetype(FONT, 16))
        path = workdir / f"page{i}.png"
        img.save(path)
        paths.append(path)
    return paths


def main() -> None:
    handler = PrintDecisions()
    get_dispatcher().add_event_handler(handler)
    vlm = RecordingVLM()
    router = load_router()  # the embedded default router: no download, no GPU

    with tempfile.TemporaryDirectory() as tmp:
        pages = [ImageNode(image_path=str(p), metadata={"file_name": p.name}) for p in page_files(Path(tmp))]
        notes = [TextNode(text="All amounts are in EUR.")]
        index = MultiModalVectorStoreIndex(
            pages + notes, embed_model=MockEmbedding(embed_dim=8), image_embed_model=MockMultiModalEmbedding(embed_dim=8)
        )
        retriever = index.as_retriever(similarity_top_k=1, image_similarity_top_k=len(pages))
        for target in TARGETS:
            engine = RetrieverQueryEngine.from_args(
                retriever, llm=vlm, multimodal=True,
                node_postprocessors=[CaresImagePostprocessor(router=router, target=target)],
            )
            print(f"\n=== target {target} ===")
            for query in QUERIES:
                response = engine.query(query)
                event = handler.events[-1]
                sent = vlm.take_sent()
                print(f"Q: {query}")
                names = {n.node.node_id: n.node.metadata.get("file_name", "text") for n in response.source_nodes}
                for d in event.decisions:
                    (ow, oh), (sw, sh) = d["original_size"], d["send_size"]
                    print(f"   {names[d['node_id']]:<28} {f'{ow}x{oh}':>9} -> {f'{sw}x{sh}':>9}   "
                          f"tokens {d['tokens_before']:>5} -> {d['tokens_after']:>5}")
                saved = event.tokens_before - event.tokens_after
                print(f"   total visual tokens {event.tokens_before} -> {event.tokens_after} "
                      f"({100 * saved / event.tokens_before:.0f}% saved)")
                assert sorted(sent) == sorted(tuple(d["send_size"]) for d in event.decisions), "LLM got other sizes"
    get_dispatcher().event_handlers.remove(handler)


if __name__ == "__main__":
    main()
