"""LangChain glue cost: batched vs one-by-one chains, and the resizer's overhead over routing.

    python benchmarks/bench_langchain.py [--inputs 16] [--repeat 5] [--target openai:gpt-4o]

1. ``chain.batch`` of N inputs (prompt | CaresImageResizer | fake chat model) against N
   ``chain.invoke`` calls on the same inputs, with the default router: median times, their
   ratio, and the number of router calls each makes.
2. Per image, with ``resizer.invoke`` on one conversation holding N pages: the router's own time
   (``route_batch``), the core pipeline (``route_and_resize``: decode, route, resize, encode) and
   the whole ``invoke``; the LangChain glue's overhead is ``invoke - route_and_resize`` and the
   resizer's overhead over routing is ``invoke - router``.
All numbers are measured side by side in one run; only ratios should be compared across machines.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate

from cares_integrations import load_image, load_router, route_and_resize
from cares_integrations.langchain import CaresImageResizer

from _pages import text_page_jpeg


def page_data_url(i: int, text_px: int) -> str:
    """A 1275x1650 page (letter at 150 dpi) as a JPEG data URL, text size varying by page."""
    return "data:image/jpeg;base64," + base64.b64encode(text_page_jpeg(i, text_px)).decode("ascii")


class NullChatModel(BaseChatModel):
    """Answers at once, so the chain's time is the resizer's."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

    @property
    def _llm_type(self) -> str:
        return "null"


def timed_router(target: str | None):
    """The default router, counting its calls and timing ``route_batch``."""
    router = load_router(target=target)
    base = type(router)

    class Timed(base):  # type: ignore[misc, valid-type]
        def route_batch(self, *args: Any, **kwargs: Any):
            start = time.perf_counter()
            try:
                return super().route_batch(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start

    router.__class__ = Timed
    router.calls, router.seconds = 0, 0.0
    return router


def paired_times(fns: list, repeat: int) -> list[list[float]]:
    """Wall times of each of ``fns``, run in turn ``repeat`` times (after one warm-up round), so
    that load from other processes hits every variant alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b."""
    return statistics.median(x / y for x, y in zip(a, b))


def main() -> None:
    """Run both measurements and print a small report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", default="openai:gpt-4o")
    args = parser.parse_args()

    pages = [page_data_url(i, 14 + 4 * (i % 6)) for i in range(args.inputs)]
    router = timed_router(args.target)
    prompt = ChatPromptTemplate.from_messages(
        [("human", [{"type": "text", "text": "{question}"}, {"type": "image_url", "image_url": {"url": "{page}"}}])]
    )
    chain = prompt | CaresImageResizer(router=router) | NullChatModel()
    inputs = [{"question": f"What does item {i} cost?", "page": p} for i, p in enumerate(pages)]

    router.calls = 0
    chain.batch(inputs)
    calls_batch, router.calls = router.calls, 0
    for x in inputs:
        chain.invoke(x)
    calls_loop = router.calls
    batch_t, loop_t = paired_times([lambda: chain.batch(inputs), lambda: [chain.invoke(x) for x in inputs]], args.repeat)
    print(f"router: {router.name}, target {args.target}, {args.inputs} inputs of one 1275x1650 JPEG page")
    print(f"chain.batch: {statistics.median(batch_t) * 1e3:8.1f} ms ({calls_batch} router call)")
    print(f"{args.inputs} x invoke: {statistics.median(loop_t) * 1e3:8.1f} ms ({calls_loop} router calls)")
    print(f"batch / invoke-loop time ratio (median of paired rounds): {median_ratio(batch_t, loop_t):.2f}")

    resizer = CaresImageResizer(router=router)
    convo = [HumanMessage([{"type": "text", "text": "Compare item costs."},
                           *({"type": "image_url", "image_url": {"url": p}} for p in pages)])]
    question = "Compare item costs."
    decoded = [load_image(p) for p in pages]
    router_t, core_t, invoke_t = paired_times(
        [lambda: router.route_batch(decoded, question), lambda: route_and_resize(router, pages, question),
         lambda: resizer.invoke(convo)],
        args.repeat,
    )
    n = len(pages)
    t_router, t_core, t_invoke = (statistics.median(t) / n * 1e3 for t in (router_t, core_t, invoke_t))
    print(f"\nper image ({n} pages in one conversation), median ms:")
    print(f"  router (route_batch on decoded pages): {t_router:7.2f}")
    print(f"  route_and_resize (decode+route+resize+encode): {t_core:7.2f}")
    print(f"  resizer.invoke: {t_invoke:7.2f}")
    print(f"  resizer overhead over the router: {t_invoke - t_router:7.2f} ms/image "
          f"(invoke / router ratio {median_ratio(invoke_t, router_t):.2f})")
    print(f"  LangChain glue (invoke - route_and_resize): {t_invoke - t_core:7.2f} ms/image "
          f"(invoke / route_and_resize ratio {median_ratio(invoke_t, core_t):.3f})")


if __name__ == "__main__":
    main()
