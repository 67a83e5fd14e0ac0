"""LlamaIndex glue cost: one query with 8 retrieved pages, batched vs per-node routing.

    python benchmarks/bench_llamaindex.py [--pages 8] [--repeat 5] [--target qwen2.5-vl] [--no-gate]

For each router (the default text-scale router, and a tiny random CARES gate built offline from
``tests/tiny_models.py``, whose batch has a real per-call model overhead):

- batched:  ``CaresImagePostprocessor.postprocess_nodes(8 nodes)``: ONE ``route_batch`` call;
- per-node: 8 ``postprocess_nodes([node])`` calls: what a postprocessor routing node by node costs;
- core:     ``route_and_resize`` on the same 8 images directly, so ``batched - core`` is the
  LlamaIndex glue's own overhead (finding images, copying nodes, the event).

Runs are interleaved and the median of ``--repeat`` is reported; the gate's vision cache is
cleared before every run. Only ratios measured side by side in one run should be compared.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llama_index.core.schema import ImageNode, NodeWithScore, TextNode  # noqa: E402

from cares_integrations.core.apply import route_and_resize  # noqa: E402
from cares_integrations.llama_index import CaresImagePostprocessor  # noqa: E402
from cares_integrations.routers.registry import load_router  # noqa: E402
from cares_integrations.core.router import Router  # noqa: E402

from _pages import text_page_jpeg  # noqa: E402

QUERY = "What is the value of item 24 in region 3?"


def page_b64(i: int) -> str:
    """A 1275x1650 page (letter at 150 dpi) as base64 JPEG; text size varies by page."""
    return base64.b64encode(text_page_jpeg(i, 12 + 3 * (i % 5))).decode("ascii")


class Counting:
    """Wraps a router's ``_predict`` to count batched calls."""

    def __init__(self, router: Router) -> None:
        self.calls = 0
        inner = router._predict

        def predict(images: list, queries: list) -> list:
            self.calls += 1
            return inner(images, queries)

        router._predict = predict  # type: ignore[method-assign]


def tiny_gate() -> Router:
    """A CARES gate over a tiny random Idefics3 (built offline; weights are random)."""
    import torch
    from tiny_models import tiny_idefics3

    from cares_integrations.routers.gate import CaresGateRouter, GateHead, ProxyBackbone

    backbone = ProxyBackbone.from_pretrained(str(tiny_idefics3()), device="cpu")
    config = backbone.gate_config(hidden_dim=16)
    torch.manual_seed(0)
    return CaresGateRouter(backbone, GateHead(config.in_dim, config.hidden_dim, config.n_classes).eval(), config)


def time_once(fn: Callable[[], Any], before: Callable[[], None] | None) -> float:
    if before:
        before()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, router: Router, nodes: list[NodeWithScore], target: str, repeat: int,
          clear: Callable[[], None] | None) -> tuple[str, ...]:
    counter = Counting(router)
    post = CaresImagePostprocessor(router=router, target=target)
    images = [n.node.image for n in nodes if isinstance(n.node, ImageNode)]
    runs: dict[str, Callable[[], Any]] = {
        "batched": lambda: post.postprocess_nodes(nodes, query_str=QUERY),
        "per-node": lambda: [post.postprocess_nodes([n], query_str=QUERY) for n in nodes],
        "core": lambda: route_and_resize(router, images, QUERY, target=target),
    }
    runs["batched"]()  # warm-up (model load, fonts, first-call costs)
    times: dict[str, list[float]] = {k: [] for k in runs}
    calls: dict[str, int] = {}
    for _ in range(repeat):
        for key, fn in runs.items():
            before = counter.calls
            times[key].append(time_once(fn, clear))
            calls[key] = counter.calls - before
    med = {k: statistics.median(v) for k, v in times.items()}
    return (
        name,
        f"{med['batched'] * 1000:.0f} ms ({calls['batched']} call)",
        f"{med['per-node'] * 1000:.0f} ms ({calls['per-node']} calls)",
        f"{med['per-node'] / med['batched']:.2f}x",
        f"{(med['batched'] - med['core']) * 1000:+.1f} ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", default="qwen2.5-vl")
    parser.add_argument("--no-gate", action="store_true", help="skip the tiny gate (no torch model build)")
    args = parser.parse_args()

    nodes = [NodeWithScore(node=ImageNode(image=page_b64(i), image_mimetype="image/jpeg"), score=1 - i / 100)
             for i in range(args.pages)]
    nodes.insert(1, NodeWithScore(node=TextNode(text="a text chunk"), score=0.99))
    print(f"# bench_llamaindex: {args.pages} pages 1275x1650 JPEG + 1 text node, target={args.target}, "
          f"repeat={args.repeat}, cpu_count={os.cpu_count()}, machine={platform.machine()}")

    rows = [bench("text-scale (default)", load_router(), nodes, args.target, args.repeat, None)]
    if not args.no_gate:
        try:
            gate = tiny_gate()
        except Exception as exc:  # the gate package or its test model builder is missing
            print(f"tiny gate skipped: {type(exc).__name__}: {exc}")
        else:
            rows.append(bench("tiny CARES gate (random)", gate, nodes, args.target, args.repeat,
                              gate.backbone.cache.clear if hasattr(gate, "backbone") else None))

    header = ("router", "batched", "per-node", "per-node / batched", "glue overhead (batched - core)")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
