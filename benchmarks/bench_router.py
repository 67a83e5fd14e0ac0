"""Benchmark of the CARES gate router on SmolVLM-256M-Instruct's exact architecture (random weights).

Measured side by side in one run and reported as ratios:

(a) our gate path (one 512-px tile, text layers above the middle one removed) vs the research
    code's path (processor defaults: long edge 2048 split into 512 tiles + a global tile, all 30
    layers, ``output_hidden_states=True``), per image, cold vision cache;   goal >= 15x
(b) a cached page asked a new question vs a cold page;                        goal >= 10x
(c) ``route_batch`` of 16 pages vs 16 calls of ``route``;
(d) 64 concurrent ``aroute`` calls (16 pages x 4 questions) vs 64 sequential ones;
(e) the default router (``load_router()``) in ms per page.

With ``--device cuda`` it also reports images/s by batch size. No download: the model is built
from its config with random weights (speed does not depend on the weights) and saved once to
``--model-dir``.

    python benchmarks/bench_router.py --device cpu            # full run
    python benchmarks/bench_router.py --device cpu --quick    # fewer repetitions
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
QUESTIONS = [
    "What is the total revenue in the table?",
    "What does the title say?",
    "Which line mentions item 24?",
    "How many lines of text are on this page?",
]


def page(width: int, height: int, text_px: int = 14, seed: int = 0) -> Image.Image:
    """A synthetic text page (different ``seed`` -> different pixels)."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(FONT, text_px)
    except OSError:
        font = ImageFont.load_default()
    y = 20
    i = 0
    while y < height - text_px * 2:
        draw.text((20, y), f"Line {i + 1} (page {seed}): item {i * 7 + seed} cost {1000 + i * 37 + seed} EUR", fill="black", font=font)
        y += int(text_px * 1.6)
        i += 1
    return img


def timed(fn, reps: int, *, before=None, warmup: bool = True) -> float:
    """Median seconds of ``reps`` calls of ``fn`` after one warm-up (``before`` runs untimed each time)."""
    if warmup:
        if before:
            before()
        fn()
    times = []
    for _ in range(reps):
        if before:
            before()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and requests")
    parser.add_argument("--model-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "cares-bench-smolvlm256m"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from tiny_models import build_idefics3
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from cares_integrations.routers.gate.device import pick_dtype
    from cares_integrations.routers.gate import CaresGateRouter, GateHead, ProxyBackbone

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        print(f"building SmolVLM-256M-Instruct architecture with random weights in {model_dir} ...", flush=True)
        build_idefics3(model_dir, full_size=True)
    device = torch.device(args.device)
    dtype = pick_dtype(device)
    reps = 2 if args.quick else 3

    print(f"# bench_router: device={device} dtype={dtype} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpu_count={os.cpu_count()} machine={platform.machine()} quick={args.quick}", flush=True)
    backbone = ProxyBackbone.from_pretrained(str(model_dir), device=device, dtype=dtype, preprocessing="tile")
    torch.manual_seed(0)
    config = backbone.gate_config()
    router = CaresGateRouter(backbone, GateHead(config.in_dim, config.hidden_dim, config.n_classes), config)
    n_params = sum(p.numel() for p in backbone.model.parameters())
    print(f"gate backbone: {backbone.num_layers}/{backbone.num_base_layers} text layers kept, {n_params / 1e6:.1f}M params", flush=True)

    full = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    n_full = sum(p.numel() for p in full.parameters())
    mid = full.config.text_config.num_hidden_layers // 2

    def research(img: Image.Image, q: str) -> torch.Tensor:
        """The research code's feature path: processor defaults, full model, all hidden states."""
        prompt = backbone.prompt(q)
        enc = processor(text=[prompt], images=[[img]], return_tensors="pt").to(device)
        enc["pixel_values"] = enc["pixel_values"].to(dtype)
        with torch.inference_mode():
            out = full(**enc, output_hidden_states=True)
        h = out.hidden_states[mid]
        mask = (enc["attention_mask"].bool() & (enc["input_ids"] != full.config.image_token_id)).unsqueeze(-1)
        return (h * mask).sum(1) / mask.sum(1)

    clear = backbone.cache.clear
    results: list[tuple[str, str, str, str]] = []

    # (a) gate vs research, per image (interleaved, so load from other processes hits both arms)
    samples = [("letter page 850x1100", page(850, 1100)), ("slide 1280x720", page(1280, 720, 18))]
    if args.quick:
        samples = samples[:1]
    router.route(samples[0][1], QUESTIONS[0])  # warm-up of the gate path
    ratios = []
    for label, img in samples:
        tiles = processor(text=[backbone.prompt("q")], images=[[img]])["input_ids"][0].count(processor.fake_image_token_id) - 1
        t_research, t_gate = [], []
        for _ in range(1 if args.quick else 2):
            t_research.append(timed(lambda: research(img, QUESTIONS[0]), 1, warmup=False))
            t_gate.append(timed(lambda: router.route(img, QUESTIONS[0]), 2, before=clear, warmup=False))
        r, g = statistics.median(t_research), statistics.median(t_gate)
        ratios.append(r / g)
        results.append((f"(a) {label}: research path ({tiles} tiles, 30 layers) vs gate (1 tile, {mid} layers)",
                        f"{r * 1000:.0f} ms", f"{g * 1000:.0f} ms", f"{r / g:.1f}x"))
        print(results[-1], flush=True)
    if len(ratios) > 1:
        results.append(("(a) geometric mean over the images", "", "", f"{statistics.geometric_mean(ratios):.1f}x"))

    # (b) cached page + new question vs cold page
    img = samples[0][1]
    t_cold = timed(lambda: router.route(img, QUESTIONS[1]), reps * 2, before=clear)
    router.route(img, QUESTIONS[0])
    questions = iter(QUESTIONS * 100)
    t_hit = timed(lambda: router.route(img, next(questions)), reps * 4)
    results.append(("(b) letter page: cold vs cached page with a new question", f"{t_cold * 1000:.0f} ms",
                    f"{t_hit * 1000:.1f} ms", f"{t_cold / t_hit:.1f}x"))
    print(results[-1], flush=True)

    # (c) route_batch(16) vs 16 x route, cold cache
    n_batch = 8 if args.quick else 16
    pages16 = [page(700 + 13 * i, 900 + 7 * i, 12 + i % 4, seed=i) for i in range(n_batch)]
    qs16 = [QUESTIONS[i % 4] for i in range(n_batch)]
    t_loop = timed(lambda: [router.route(p, q) for p, q in zip(pages16, qs16)], 1, before=clear, warmup=False)
    t_batch = timed(lambda: router.route_batch(pages16, qs16), 1, before=clear, warmup=False)
    results.append((f"(c) {n_batch} pages: {n_batch} x route vs one route_batch", f"{t_loop * 1000:.0f} ms",
                    f"{t_batch * 1000:.0f} ms", f"{t_loop / t_batch:.2f}x"))
    print(results[-1], flush=True)

    # (d) concurrent aroute vs sequential aroute: pages x 4 questions, cold cache
    n_pages = 4 if args.quick else 16
    reqs = [(pages16[i % len(pages16)] if i < len(pages16) else page(650 + i, 880, 13, seed=100 + i), q)
            for i in range(n_pages) for q in QUESTIONS]

    async def sequential():
        return [await router.aroute(p, q) for p, q in reqs]

    async def concurrent():
        return await asyncio.gather(*(router.aroute(p, q) for p, q in reqs))

    t_seq = timed(lambda: asyncio.run(sequential()), 1, before=clear, warmup=False)
    t_conc = timed(lambda: asyncio.run(concurrent()), 1, before=clear, warmup=False)
    results.append((f"(d) {len(reqs)} aroute calls ({n_pages} pages x 4 questions): sequential vs concurrent",
                    f"{t_seq * 1000:.0f} ms", f"{t_conc * 1000:.0f} ms", f"{t_seq / t_conc:.2f}x"))
    print(results[-1], flush=True)

    # (e) the default router
    try:
        from cares_integrations.routers.registry import load_router

        default = load_router()
        t_default = timed(lambda: default.route(img, QUESTIONS[0]), reps * 3)
        results.append((f"(e) default router ({type(default).__name__}), letter page", "", f"{t_default * 1000:.1f} ms", ""))
    except (ImportError, AttributeError, NotImplementedError) as exc:
        results.append(("(e) default router", "", f"skipped: {exc}", ""))
    print(results[-1], flush=True)

    if device.type == "cuda":
        for bs in (1, 4, 16, 64):
            batch = [page(700 + i, 900, 12, seed=1000 + i) for i in range(bs)]
            t = timed(lambda: router.route_batch(batch, QUESTIONS[0]), reps, before=clear)
            results.append((f"cuda images/s, batch {bs} (cold cache)", "", f"{bs / t:.1f} img/s", ""))
            print(results[-1], flush=True)

    print()
    print(f"research model {n_full / 1e6:.1f}M params; gate backbone {n_params / 1e6:.1f}M params")
    print("| measurement | baseline | ours | ratio |")
    print("|---|---|---|---|")
    for row in results:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
