"""A 10-turn agent conversation over 3 page images: tokens sent with and without CaresMiddleware
for two targets, the middleware's added latency per turn, and its cache hits.

The user attaches the three example pages (``examples/pages``, 1700x2200) on turn 1 and asks ten
questions about them (two asked twice); every model call resends all three. A fake chat model
answers at once, so a ratio to its call time would mean nothing: the middleware's own time is
reported in milliseconds (wall time inside ``wrap_model_call`` minus the model call).

Run: ``python benchmarks/bench_agent.py`` (CPU, offline, default router).
"""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver

from cares_integrations import load_router
from cares_integrations.core.tokens import visual_tokens
from cares_integrations.langchain import CaresMiddleware

PAGES = Path(__file__).resolve().parent.parent / "examples" / "pages"
TARGETS = ("openai:gpt-4o", "anthropic:claude-sonnet-4-5")
QUESTIONS = [
    'What is the value of "Order No." on the report?',
    'According to footnote 1, what is the "Contract reference"?',
    'In the table, what is the value in row "Nozzles" and column "Price"?',
    'Which code comes right after "pallet tag" in the text?',
    'What is the value of "Order No." on the report?',
    'According to footnote 3, what is the "Licence key"?',
    'What is the value of "Branch code"?',
    'Which code comes right after "voucher" in the text?',
    'According to footnote 1, what is the "Contract reference"?',
    "Which page has a chart?",
]


class AnswerModel(BaseChatModel):
    """Answers "ok" at once and keeps nothing."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

    @property
    def _llm_type(self) -> str:
        return "answer"


class TimedMiddleware(CaresMiddleware):
    """CaresMiddleware that records its own time per call (excluding the model call) and what it sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.own_ms: list[float] = []
        self.tokens_sent: list[int] = []

    def wrap_model_call(self, request, handler):
        model_s = 0.0

        def timed(req):
            nonlocal model_s
            self.tokens_sent.append(sum(
                visual_tokens(self.resizer.target, *size) for size in _sizes(req.messages)))
            t = time.perf_counter()
            out = handler(req)
            model_s += time.perf_counter() - t
            return out

        start = time.perf_counter()
        out = super().wrap_model_call(request, timed)
        self.own_ms.append((time.perf_counter() - start - model_s) * 1000)
        return out


def _sizes(messages) -> list[tuple[int, int]]:
    import io

    from PIL import Image

    from cares_integrations.langchain.blocks import read_image_block

    out = []
    for m in messages:
        for b in m.content if isinstance(m.content, list) else ():
            ref = read_image_block(b)
            if ref is not None and ref.source:
                out.append(Image.open(io.BytesIO(base64.b64decode(ref.source.partition(",")[2]))).size)
    return out


def run(target: str, router) -> dict[str, Any]:
    pages = [p.read_bytes() for p in sorted(PAGES.glob("*.png"))]
    first = HumanMessage(content=[{"type": "text", "text": QUESTIONS[0]}] + [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(p).decode()}}
        for p in pages])
    mw = TimedMiddleware(router=router, target=target)
    agent = create_agent(AnswerModel(), [], middleware=[mw], checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": target}}
    hits = []
    for turn, question in enumerate(QUESTIONS):
        before = mw.decision_cache.hits
        agent.invoke({"messages": [first if turn == 0 else HumanMessage(question)]}, cfg)
        hits.append(mw.decision_cache.hits - before)
    original = sum(visual_tokens(target, 1700, 2200) for _ in pages) * len(QUESTIONS)
    return {"without": original, "with": sum(mw.tokens_sent), "ms": mw.own_ms, "hits": hits}


def main() -> None:
    router = load_router()
    print(f"10 turns, 3 pages of 1700x2200 resent every turn, router {router.name}")
    for target in TARGETS:
        r = run(target, router)
        saved = 1 - r["with"] / r["without"]
        print(f"{target}: visual tokens without {r['without']}, with {r['with']} ({saved:.0%} fewer)")
        print("  middleware ms per turn: " + ", ".join(f"{ms:.0f}" for ms in r["ms"])
              + f" (median {statistics.median(r['ms']):.0f})")
        print("  cache hits per turn (of 3): " + ", ".join(str(h) for h in r["hits"]))


if __name__ == "__main__":
    main()
