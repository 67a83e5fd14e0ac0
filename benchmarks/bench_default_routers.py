"""What the two routers that need no model cost: ``load_router()`` (text-scale) and
``load_router("learned-default")``, on the example pages (1700x2200 PNG, 200-dpi letter).

    python benchmarks/bench_default_routers.py [--repeat 5] [--loads 3]

For each router it prints the median of:

- **load**: ``import cares_integrations`` + ``load_router(name)`` in a fresh Python process (wall);
- **decoded page**: ``router.route(pil_image, question)`` on a page already decoded in memory,
  per page (one question);
- **from a path**: ``router.route("page.png", question)``, per page: reading and decoding the PNG
  included;
- **per question, batch of 32**: ``router.route_batch([page] * 32, questions)`` on one decoded
  page with 32 different questions, divided by 32 (the learned router measures the page once
  for the batch; text-scale measures per question).

Times are wall-clock on whatever machine runs it; the line above the table says which.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from cares_integrations import load_router  # noqa: E402

PAGES = sorted((ROOT / "examples" / "pages").glob("*.png"))
QUESTIONS = ["What is the net amount?", "What is the title of this report?", 'What is the value of "Order No."?',
             "What does footnote 3 say?", "Which region had the highest revenue?", "Who signed the invoice?",
             "What is the due date?", "How many items are listed in the table?"]


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def load_seconds(name: str, loads: int) -> float:
    """Median seconds, in fresh processes, from before ``import cares_integrations`` to after
    ``load_router(name)`` (the interpreter's own start excluded)."""
    code = ("import time; t = time.perf_counter(); from cares_integrations import load_router; "
            f"load_router({name!r}); print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                 env=env).stdout) for _ in range(loads)]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per page (median)")
    parser.add_argument("--loads", type=int, default=3, help="fresh processes per router for the load time")
    args = parser.parse_args()

    pil_pages = [Image.open(p).convert("RGB") for p in PAGES]
    for img in pil_pages:
        img.load()
    questions32 = [f"{QUESTIONS[i % len(QUESTIONS)]} ({i})" for i in range(32)]
    print(f"{len(PAGES)} pages 1700x2200 PNG (examples/pages); median of {args.repeat} calls per page; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")
    print(f"{'router':<17} {'load (fresh process)':>21} {'decoded page':>13} {'from a path':>12} "
          f"{'per question, batch 32':>23}")
    for name in ("text-scale", "learned-default"):
        router = load_router(name)
        decoded = statistics.median(_median_ms(lambda img=img: router.route(img, QUESTIONS[0]), args.repeat)
                                    for img in pil_pages)
        from_path = statistics.median(_median_ms(lambda p=p: router.route(str(p), QUESTIONS[0]), args.repeat)
                                      for p in PAGES)
        batch = _median_ms(lambda: router.route_batch([pil_pages[0]] * 32, questions32), max(1, args.repeat // 2)) / 32
        load = load_seconds(name, args.loads)
        print(f"{name:<17} {load * 1000:>18.0f} ms {decoded:>10.1f} ms {from_path:>9.1f} ms {batch:>20.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
