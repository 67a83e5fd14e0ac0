"""Offline multimodal RAG with LangChain: every retrieved page is resized for its question.

A tiny retriever returns page images (rendered here with Pillow, 200 dpi letter pages with
normal body text and a small-print footnote), a ``ChatPromptTemplate`` puts the page next to
the question, :class:`CaresImageResizer` resizes the page for that question, and a fake chat
model records what it would have been sent. For each question and two target models it prints
the size chosen and the visual tokens before and after.

Run: ``python examples/langchain_rag.py`` (no network, no GPU, no model download).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from cares_integrations import load_router
from cares_integrations.langchain import EVENT_NAME, CaresImageResizer

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def render_page(title: str, rows: list[tuple[str, str]], footnote: str = "", body_px: int = 34) -> str:
    """A 1700x2200 page (letter at 200 dpi): a title, a table in ``body_px`` text, a small footnote."""
    img = Image.new("RGB", (1700, 2200), "white")
    draw = ImageDraw.Draw(img)

    def font(px: int) -> Any:
        try:
            return ImageFont.truetype(FONT, px)
        except OSError:
            return ImageFont.load_default()

    draw.text((120, 120), title, fill="black", font=font(64))
    y = 320
    for label, value in rows:
        draw.text((120, y), label, fill="black", font=font(body_px))
        draw.text((1000, y), value, fill="black", font=font(body_px))
        y += body_px * 2
    if footnote:
        draw.text((120, 2080), footnote, fill="black", font=font(16))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


PAGES = {
    "revenue": render_page(
        "Quarterly revenue 2024",
        [(f"Region {r}", f"{1200 + 37 * i} kEUR") for i, r in enumerate("ABCDEFGHIJ")],
        "* Region F includes a one-off licence payment of 212 kEUR booked in March; excluding it, growth was 3.1%.",
    ),
    "staff": render_page(  # a slide: large text only
        "Headcount by site",
        [(f"Site {s}", f"{40 + 3 * i} people") for i, s in enumerate(["Lyon", "Graz", "Turin", "Porto", "Ghent"])],
        body_px=96,
    ),
}
SUMMARIES = {"revenue": "revenue by region, quarterly, licence payment", "staff": "headcount staff people by site"}


class PageRetriever(BaseRetriever):
    """Returns the page whose summary shares the most words with the question, image in metadata."""

    pages: dict[str, str] = Field(default_factory=dict)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = set(query.lower().replace("?", "").split())
        best = max(self.pages, key=lambda p: len(words & set(SUMMARIES[p].split())))
        return [Document(SUMMARIES[best], metadata={"page": best, "image": self.pages[best]})]


class RecordingChatModel(BaseChatModel):
    """A stand-in chat model: records the messages it is sent and answers with the image size."""

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        url = messages[-1].content[1]["image_url"]["url"]
        size = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).size
        return ChatResult(generations=[ChatGeneration(message=AIMessage(f"(saw a {size[0]}x{size[1]} page)"))])

    @property
    def _llm_type(self) -> str:
        return "recording"


class DecisionLog(BaseCallbackHandler):
    """Collects the resizer's ``cares_route`` events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == EVENT_NAME:
            self.events.append(data)


PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer from the page image only."),
        ("human", [{"type": "text", "text": "{question}"},
                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,{image}", "detail": "high"}}]),
    ]
)

QUESTIONS = [
    "What is the revenue of region C?",
    "What does the footnote say about the licence payment in the revenue table?",
    "How many people work at the Graz site?",
]


def build_chain(retriever: BaseRetriever, resizer: CaresImageResizer, model: BaseChatModel):
    """question -> retrieve the page -> prompt with the image -> resize for the question -> model."""
    first_image = retriever | (lambda docs: docs[0].metadata["image"])
    return {"question": RunnablePassthrough(), "image": first_image} | PROMPT | resizer | model


def main() -> None:
    """Run every question through the chain for two targets and print the decisions."""
    retriever = PageRetriever(pages=PAGES)
    router = load_router()  # the embedded default router: no download, no GPU
    for target in ("openai:gpt-4o", "qwen2.5-vl"):
        model = RecordingChatModel()
        chain = build_chain(retriever, CaresImageResizer(router=router, target=target), model)
        log = DecisionLog()
        answers = chain.batch(QUESTIONS, config={"callbacks": [log]})  # one router call for all
        print(f"\n== target {target} (router {router.name}) ==")
        events = sorted(log.events, key=lambda e: QUESTIONS.index(e["images"][0]["question"]))
        for question, event, answer in zip(QUESTIONS, events, answers):
            img = event["images"][0]
            (ow, oh), (sw, sh) = img["original_size"], img["send_size"]
            print(f"- {question}\n    {ow}x{oh} -> {sw}x{sh} px; visual tokens {event['tokens_before']} -> "
                  f"{event['tokens_after']} ({img.get('step')}); model {answer.content}")
            if img.get("cannot_save"):
                print(f"    why nothing was saved: {img['cannot_save']}")
        before = sum(e["tokens_before"] for e in events)
        after = sum(e["tokens_after"] for e in events)
        print(f"  total visual tokens: {before} -> {after} ({100 * (before - after) / before:.0f}% fewer)")


if __name__ == "__main__":
    main()
