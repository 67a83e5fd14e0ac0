"""Validate the text-scale router against a real reader on synthetic pages.

Generates ``--pages`` synthetic pages (fixed ``--seed``), asks the Tesseract reader every
question with the page resized to each candidate long side (``--sizes`` plus native), scores with
ANLS, and takes as *sufficient* the smallest size scoring >= 0.85 (native when none does). Then
reports, for the text-scale router (its long side evaluated exactly, with extra OCR runs) and
baselines: mean ANLS, retention (mean ANLS at the routed size / at native), visual tokens saved
for ``openai:gpt-4o`` and ``qwen2.5-vl``, and the oracle (smallest sufficient size per question).

``--sweep`` adds a table over ``min_text_px`` x ``quantile`` with the router's long side rounded
up to the size grid (no extra OCR), used to choose the defaults. ``--cache FILE`` keeps the OCR
answers between runs.

    python benchmarks/validate_text_scale.py --pages 16 --seed 0 --workers 2 --sweep
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cares_integrations.core.resize import fit_long_side, resize_image  # noqa: E402
from cares_integrations.routers.textscale import TextScaleRouter  # noqa: E402
from cares_integrations.core.tokens import visual_tokens  # noqa: E402
from cares_integrations.training.ocr import OcrReader  # noqa: E402
from cares_integrations.training.synthetic import generate_pages  # noqa: E402

from cares_integrations.training.anls import anls  # noqa: E402

TAU = 0.85
TARGETS = ("openai:gpt-4o", "qwen2.5-vl")


class Scorer:
    """OCR answers per (page, long side), memoised in memory and optionally on disk."""

    def __init__(self, pages, reader, cache: Path | None):
        self.pages, self.reader, self.cache_path = pages, reader, cache
        self.answers: dict[str, list[str]] = {}
        self.ocr_runs = 0
        self.ocr_seconds = 0.0
        if cache and cache.exists():
            self.answers = json.loads(cache.read_text())

    def key(self, i: int, L: int) -> str:
        p = self.pages[i]
        return f"{p.id}|{p.dpi}|{p.page_size}|{min(L, max(p.image.size))}"

    def ensure(self, jobs: list[tuple[int, int]]) -> None:
        todo = [(i, L) for i, L in dict.fromkeys(jobs) if self.key(i, L) not in self.answers]
        todo = list(dict.fromkeys((i, min(L, max(self.pages[i].image.size))) for i, L in todo))
        chunk = 2 * self.reader.workers
        for c in range(0, len(todo), chunk):
            part = todo[c:c + chunk]
            images, questions, owners = [], [], []
            for i, L in part:
                page = self.pages[i]
                img = resize_image(page.image, fit_long_side(*page.image.size, L))
                for q in page.questions:
                    images.append(img)
                    questions.append(q.question)
                    owners.append((i, L))
            t = time.perf_counter()
            got = self.reader.answer_batch(images, questions)
            self.ocr_seconds += time.perf_counter() - t
            self.ocr_runs += len(part)
            for (i, L), a in zip(owners, got):
                self.answers.setdefault(self.key(i, L), []).append(a)
            print(f"  OCR {min(c + chunk, len(todo))}/{len(todo)}", file=sys.stderr, end="\r")
            if self.cache_path:  # after every chunk, so an interrupted run resumes
                self.cache_path.write_text(json.dumps(self.answers))
        if todo:
            print(file=sys.stderr)

    def score(self, i: int, qi: int, L: int) -> float:
        return anls(self.answers[self.key(i, L)][qi], self.pages[i].questions[qi].answers)


def tokens_at(page, L: float, target: str) -> int:
    return visual_tokens(target, *fit_long_side(*page.image.size, int(L)))


def summarise(name, rows, pages, scorer, native_mean):
    """rows: list of (page index, question index, long side)."""
    scores = [scorer.score(i, qi, L) for i, qi, L in rows]
    out = {"router": name, "anls": statistics.fmean(scores), "retention": statistics.fmean(scores) / native_mean,
           "mean_long": statistics.fmean(min(L, max(pages[i].image.size)) for i, _, L in rows)}
    for t in TARGETS:
        before = sum(tokens_at(pages[i], max(pages[i].image.size), t) for i, _, _ in rows)
        after = sum(tokens_at(pages[i], L, t) for i, _, L in rows)
        out[t] = 1 - after / before
    return out


def fmt(results) -> str:
    lines = ["| router | mean ANLS | retention | mean long side | " + " | ".join(f"{t} tokens saved" for t in TARGETS) + " |",
             "|---|---|---|---|" + "---|" * len(TARGETS)]
    for r in results:
        lines.append(f"| {r['router']} | {r['anls']:.3f} | {r['retention']:.1%} | {r['mean_long']:.0f} | "
                     + " | ".join(f"{r[t]:.1%}" for t in TARGETS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="384,512,768,1024,1280")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="JSON file keeping OCR answers between runs")
    ap.add_argument("--sweep", action="store_true", help="also sweep min_text_px x quantile (grid-snapped)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    t0 = time.perf_counter()
    pages = generate_pages(args.pages, seed=args.seed)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    reader = OcrReader(workers=args.workers)
    scorer = Scorer(pages, reader, args.cache)
    native = {i: max(p.image.size) for i, p in enumerate(pages)}
    grid = {i: [L for L in sizes if L < native[i]] + [native[i]] for i in native}
    print(f"{len(pages)} pages, {sum(len(p.questions) for p in pages)} questions; grid OCR ...", file=sys.stderr)
    scorer.ensure([(i, L) for i in grid for L in grid[i]])

    qs = [(i, qi) for i, p in enumerate(pages) for qi in range(len(p.questions))]
    native_rows = [(i, qi, native[i]) for i, qi in qs]
    native_mean = statistics.fmean(scorer.score(*r) for r in native_rows)

    # oracle: smallest sufficient grid size (native when none reaches tau)
    oracle = {}
    for i, qi in qs:
        ok = [L for L in grid[i] if scorer.score(i, qi, L) >= TAU]
        oracle[(i, qi)] = ok[0] if ok else native[i]

    # routers, evaluated exactly at the routed long side
    routers = {"text-scale (default)": TextScaleRouter(),
               "text-scale, no question hints": TextScaleRouter(question_hints=False)}
    routed = {}
    route_ms = []
    for name, router in routers.items():
        rows = []
        for i, p in enumerate(pages):
            t = time.perf_counter()
            ds = router.route_batch([p.image] * len(p.questions), [q.question for q in p.questions])
            route_ms.append((time.perf_counter() - t) * 1000 / max(1, len(p.questions)))
            rows += [(i, qi, d.long_side) for qi, d in enumerate(ds)]
        routed[name] = rows
    print("routed-size OCR ...", file=sys.stderr)
    scorer.ensure([(i, L) for rows in routed.values() for i, _, L in rows])

    results = [summarise("native", native_rows, pages, scorer, native_mean)]
    for L in (768, 1024):
        results.append(summarise(f"fixed {L}", [(i, qi, L) for i, qi in qs], pages, scorer, native_mean)
                       if all(scorer.key(i, L) in scorer.answers for i, _ in qs) else None)
    results = [r for r in results if r]
    for name, rows in routed.items():
        results.append(summarise(name, rows, pages, scorer, native_mean))
    results.append(summarise("oracle (smallest sufficient grid size)",
                             [(i, qi, oracle[(i, qi)]) for i, qi in qs], pages, scorer, native_mean))

    print(f"\n## Text-scale router vs Tesseract reader: {len(pages)} pages, {len(qs)} questions, seed {args.seed}\n")
    print(fmt(results))

    # by answer role
    rows = routed["text-scale (default)"]
    print("\nBy answer text role (default router):\n")
    print("| role | questions | ANLS native | ANLS routed | ANLS oracle | share never sufficient |")
    print("|---|---|---|---|---|---|")
    for role in ("heading", "body", "small", "fine"):
        sel = [(i, qi, L) for i, qi, L in rows if pages[i].questions[qi].role == role]
        if not sel:
            continue
        nat = statistics.fmean(scorer.score(i, qi, native[i]) for i, qi, _ in sel)
        rou = statistics.fmean(scorer.score(i, qi, L) for i, qi, L in sel)
        ora = statistics.fmean(scorer.score(i, qi, oracle[(i, qi)]) for i, qi, _ in sel)
        never = statistics.fmean(scorer.score(i, qi, native[i]) < TAU for i, qi, _ in sel)
        print(f"| {role} | {len(sel)} | {nat:.3f} | {rou:.3f} | {ora:.3f} | {never:.0%} |")

    # legibility: answer em size (px) at the smallest sufficient size vs the largest insufficient one
    em_ok, em_bad = [], []
    for i, qi in qs:
        q = pages[i].questions[qi]
        if scorer.score(i, qi, native[i]) < TAU:
            continue
        L = oracle[(i, qi)]
        em_ok.append(q.span_px * min(L, native[i]) / native[i])
        below = [g for g in grid[i] if g < L]
        if below:
            em_bad.append(q.span_px * below[-1] / native[i])

    def pct(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")

    print("\nAnswer font size (em, px) where the reader starts reading it (answers readable at native):")
    print(f"  at smallest sufficient size: p10 {pct(em_ok, .1):.1f}, median {pct(em_ok, .5):.1f}, p90 {pct(em_ok, .9):.1f}")
    print(f"  at the next smaller size (insufficient): p10 {pct(em_bad, .1):.1f}, median {pct(em_bad, .5):.1f}, "
          f"p90 {pct(em_bad, .9):.1f}")

    sweep = []
    if args.sweep:
        def snap(i, L):
            return next((g for g in grid[i] if g >= L - 1e-6), native[i])

        print("\nSweep (router long side rounded up to the size grid; no question hints | with hints):\n")
        print("| min_text_px | quantile | retention | gpt-4o saved | qwen2.5-vl saved | retention (hints) | qwen saved (hints) |")
        print("|---|---|---|---|---|---|---|")
        measures = {}
        for quantile in (0.02, 0.05, 0.1, 0.2):
            for i, p in enumerate(pages):
                measures[(quantile, i)] = TextScaleRouter(quantile=quantile).measure(p.image)
        for mt in (4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0):
            for quantile in (0.02, 0.05, 0.1, 0.2):
                line = []
                for hints in (False, True):
                    r = TextScaleRouter(min_text_px=mt, quantile=quantile, question_hints=hints)
                    rows_s = [(i, qi, snap(i, r.long_side_for(measures[(quantile, i)], pages[i].image.size,
                                                                pages[i].questions[qi].question))) for i, qi in qs]
                    line.append(summarise(f"{mt}/{quantile}/{hints}", rows_s, pages, scorer, native_mean))
                a, b = line
                sweep.append({"min_text_px": mt, "quantile": quantile, "plain": a, "hints": b})
                print(f"| {mt} | {quantile} | {a['retention']:.1%} | {a['openai:gpt-4o']:.1%} | {a['qwen2.5-vl']:.1%} | "
                      f"{b['retention']:.1%} | {b['qwen2.5-vl']:.1%} |")

    print(f"\nrouting: {statistics.fmean(route_ms):.1f} ms per question on average (measure + decide, one page "
          f"per call); OCR: {scorer.ocr_runs} runs, {scorer.ocr_seconds / max(1, scorer.ocr_runs):.2f} s per page "
          f"(wall, {args.workers} workers); total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "sweep": sweep}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
