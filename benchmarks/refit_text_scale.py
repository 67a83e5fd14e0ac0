"""Refit the text-scale router's rules on the corpus's train and validation documents.

    python benchmarks/refit_text_scale.py [--pages DIR] [--reader ppocr] [--retention 0.97]
        [--margin 0.02] [--savings-margin 0.01] [--folds 5] [--other-weights 0 0.1 0.2 0.3 0.5 1] [--json OUT]

Each page is measured once (``TextScaleRouter.measure``; cached in
``benchmarks/corpus/page_measures.jsonl.gz``, so a rerun needs no pages; ``--pages``, the corpus
build folder, measures missing ones, every corpus page). Every question is given the kind the
router itself reads from its words (:func:`~cares_integrations.routers.textscale.question_kind`):
title, fine print, page number, other number or body. For each kind, every rule of the grid (the
measured text height to scale: small, median or smallest text; the pixels it must reach; a floor;
a cap) is scored exactly (:meth:`KindRule.long_side` rounded up to the router's ladder, what the
router runs) on every question. The kinds
add up, so a frontier is traced by a Lagrangian sweep: for each price ``lam`` of accuracy in
tokens, each kind takes the rule with the best ``lam * score - tokens`` (with ``weight`` on the
other reader's score, one sweep per ``--other-weights``).

The operating point ``(weight, lam)`` is chosen by cross-validation over documents: the train
and validation documents are dealt into ``--folds`` folds, each fold's rules are fitted on the
other folds, and the held-out results are pooled. The point saving the most (under
``--reader``) that keeps ``--retention`` there and is not dominated under any reader even with
``--margin`` less accuracy and ``--savings-margin`` less savings (no fixed size keeps at least as
much minus the one and saves at least as much minus the other: the folds' spread is about that
wide) is chosen, and the rules are fitted on all train and validation documents at
that point. The test split is never read.

The default is fitted to the neural reader (PP-OCR stands in for VLM-class readers); the
Tesseract figures show what the same rules do for a weaker reader. Costs are Qwen2.5-VL patch
tokens (``qwen-patch``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from itertools import product
from pathlib import Path

import numpy as np

from _quality import CORPUS, COST_MODELS, FIXED, Scorer, load_reader_labels, summarise
from cares_integrations.routers.textscale import KindRule, TextMeasure, TextScaleRouter, question_kind

MEASURES = CORPUS / "page_measures.jsonl.gz"
COST = "qwen-patch"
SPLITS = ("train", "validation")
KINDS = ("title", "fine", "page", "number", "body")
PREVIOUS = {"min_text_px": 4.75, "floor": 384, "text_cap": 768, "ladder": None,
            "kind_rules": {"title": KindRule(2.75, "min", floor=512, cap=896),
                           "fine": KindRule(3.75, "small", floor=896, cap=1280),
                           "page": KindRule(5.5, "min", floor=896, cap=1280),
                           "number": KindRule(5.5, "min", floor=896, cap=1280)}}
"""The defaults before this refit (the first corpus refit: no ladder, requests sent as asked, page
numbers sized as numbers)."""


def page_measures(images, pages_dir: Path | None) -> dict[str, TextMeasure]:
    """Every page's text measure, from the cache or (with ``pages_dir``) measured."""
    cache: dict[str, TextMeasure] = {}
    if MEASURES.exists():
        for line in gzip.open(MEASURES, "rt", encoding="utf-8"):
            row = json.loads(line)
            image = row.pop("image")
            cache[image] = TextMeasure(**row)
    missing = sorted(set(images) - set(cache))
    if missing:
        if pages_dir is None:
            raise SystemExit(f"{len(missing)} pages not measured yet: pass --pages (the corpus build folder)")
        from cares_integrations.core.payload import load_image

        router = TextScaleRouter()
        for i, image in enumerate(missing):
            cache[image] = router.measure(load_image(pages_dir / image))
            if i % 50 == 0:
                print(f"measured {i}/{len(missing)}", file=sys.stderr, flush=True)
        with gzip.open(MEASURES, "wt", encoding="utf-8") as fh:
            for image in sorted(cache):
                fh.write(json.dumps({"image": image, **cache[image].__dict__}) + "\n")
    return cache


def sides_for(records, measures, **constants) -> np.ndarray:
    """The long side the router with ``constants`` asks for on each record (its own rule)."""
    router = TextScaleRouter(**constants)
    return np.array([router.long_side_for(measures[r.image], tuple(r.extra["native_size"]), r.question)
                     for r in records], dtype=float)


def score(records, sides) -> tuple[float, float]:
    """(kept, saved) of requested long sides under the main cost model."""
    s = Scorer(records)
    model = COST_MODELS[COST]
    return summarise(s.credit(sides), s.costs(sides, model), s.native_scores, s.costs(s.native.astype(float), model))


def rule_grid(measures=("small", "median", "min")) -> list[KindRule]:
    """Every rule the refit considers for one kind."""
    out = []
    # floors and caps on the router's ladder: any other value sends the same ladder sizes
    for px, measure, floor, cap in product(np.round(np.arange(2.0, 9.01, 0.25), 2), measures,
                                           (384, 512, 640, 768, 896),
                                           (512, 640, 768, 896, 1024, 1280, None)):
        if cap is None or cap >= floor:
            out.append(KindRule(float(px), measure, floor=floor, cap=cap))
    return out


class ReaderTable:
    """Per record, the score and tokens of every grid rule (for its question's kind) and of
    every fixed size, for one reader's records."""

    def __init__(self, records, measures, grid: list[KindRule]):
        self.records = records
        scorer = Scorer(records)
        model = COST_MODELS[COST]
        self.docs = np.array([r.extra.get("doc", r.image) for r in records])
        self.split = np.array([r.extra.get("split") for r in records])
        self.native_score = scorer.native_scores.astype(float)
        self.native_cost = scorer.costs(scorer.native.astype(float), model)
        text = np.array([measures[r.image].kind == "text" for r in records])
        self.kind = np.where(text, [question_kind(r.question) for r in records], "other")
        # pages that are not text (photos, blank) are sized the same way by every rule
        sides = sides_for(records, measures)
        self.base_score = np.where(text, 0.0, scorer.credit(sides))
        self.base_cost = np.where(text, 0.0, scorer.costs(sides, model))
        self.score: dict[str, np.ndarray] = {}
        self.cost: dict[str, np.ndarray] = {}
        self.idx: dict[str, np.ndarray] = {}
        router = TextScaleRouter()  # what the router sends for a rule's request: on its ladder
        for kind in KINDS:
            idx = np.flatnonzero(self.kind == kind)
            sub = Scorer([records[i] for i in idx])
            ms = [measures[records[i].image] for i in idx]
            longs = [int(L) for L in sub.native]
            sc, co = np.zeros((len(grid), len(idx))), np.zeros((len(grid), len(idx)))
            for g, rule in enumerate(grid):
                s = np.array([router.on_ladder(rule.long_side(m, L), L) for m, L in zip(ms, longs)], dtype=float)
                sc[g], co[g] = sub.credit(s), sub.costs(s, model)
            self.idx[kind], self.score[kind], self.cost[kind] = idx, sc, co
        self.fixed_score = np.stack([scorer.credit(np.minimum(float(f), scorer.native)) for f in FIXED])
        self.fixed_cost = np.stack([scorer.costs(np.minimum(float(f), scorer.native), model) for f in FIXED])

    def kind_sums(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        """{kind: (rules, 2)} score and token sums over the records in ``mask``, normalised by
        the native score and tokens of those records."""
        ns, nc = self.native_score[mask].sum(), self.native_cost[mask].sum()
        out = {}
        for kind in KINDS:
            m = mask[self.idx[kind]]
            out[kind] = np.stack([self.score[kind][:, m].sum(1) / ns, self.cost[kind][:, m].sum(1) / nc], axis=1)
        return out

    def sums(self, choice: dict[str, int], mask: np.ndarray) -> np.ndarray:
        """(score, tokens, native score, native tokens) summed over ``mask`` for a choice of rules."""
        sc = self.base_score[mask].sum() + sum(self.score[k][choice[k], mask[self.idx[k]]].sum() for k in KINDS)
        co = self.base_cost[mask].sum() + sum(self.cost[k][choice[k], mask[self.idx[k]]].sum() for k in KINDS)
        return np.array([sc, co, self.native_score[mask].sum(), self.native_cost[mask].sum()])

    def fixed(self, mask: np.ndarray) -> list[tuple[int, float, float]]:
        """(size, kept, saved) of every fixed size over ``mask``."""
        ns, nc = self.native_score[mask].sum(), self.native_cost[mask].sum()
        return [(f, self.fixed_score[j, mask].sum() / ns, 1 - self.fixed_cost[j, mask].sum() / nc)
                for j, f in enumerate(FIXED)]


def kept_saved(sums: np.ndarray) -> tuple[float, float]:
    """(kept, saved) from :meth:`ReaderTable.sums` totals."""
    return float(sums[0] / sums[2]), float(1 - sums[1] / sums[3])


def fit(tables: dict, masks: dict, main: str, weight: float, lam: float, body_ok: np.ndarray,
        kind_sums: dict | None = None) -> dict[str, int]:
    """The rule per kind maximising ``lam * score - tokens`` (``weight`` on the other readers) on
    the records in ``masks[reader]``; ``kind_sums`` caches :meth:`ReaderTable.kind_sums`."""
    if kind_sums is None:
        kind_sums = {r: t.kind_sums(masks[r]) for r, t in tables.items()}
    choice = {}
    for kind in KINDS:
        obj = sum((1.0 if r == main else weight) * (lam * ks[kind][:, 0] - ks[kind][:, 1])
                  for r, ks in kind_sums.items())
        if kind == "body":
            obj = np.where(body_ok, obj, -np.inf)
        choice[kind] = int(np.argmax(obj))
    return choice


def folds_of(docs, k: int, seed: int = 0) -> dict[str, int]:
    """Documents dealt into ``k`` folds (seeded shuffle)."""
    uniq = sorted(set(docs))
    order = np.random.default_rng(seed).permutation(len(uniq))
    return {uniq[j]: n % k for n, j in enumerate(order)}


def dominated(point: tuple[float, float], fixed, margin: float, savings_margin: float = 0.0) -> list[int]:
    """Fixed sizes keeping at least ``point``'s accuracy minus ``margin`` and saving at least as
    much minus ``savings_margin``."""
    return [f for f, k, s in fixed if k >= point[0] - margin and s >= point[1] - savings_margin]


def constants_for(grid: list[KindRule], choice: dict[str, int]) -> dict:
    """TextScaleRouter keyword arguments for a choice (the body rule is the router's own)."""
    body = grid[choice["body"]]
    return {"min_text_px": body.text_px, "floor": body.floor, "text_cap": body.cap,
            "kind_rules": {k: grid[choice[k]] for k in KINDS if k != "body"}}


def main(argv=None) -> int:
    """Choose the operating point by cross-validation over documents, fit the rules, print them."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=Path, default=None)
    ap.add_argument("--reader", default="ppocr")
    ap.add_argument("--retention", type=float, default=0.97, help="cross-validated kept under --reader")
    ap.add_argument("--margin", type=float, default=0.02, help="domination margin (accuracy kept)")
    ap.add_argument("--savings-margin", type=float, default=0.01, help="domination margin (savings)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--other-weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0],
                    help="weights of the other readers' accuracy in the objective")
    ap.add_argument("--measures", nargs="+", default=["small", "median", "min"], choices=["small", "median", "min"],
                    help="text heights a fine/title/number rule may scale (body: small)")
    ap.add_argument("--json", type=Path, default=None, help="also write the chosen rules and figures here")
    args = ap.parse_args(argv)
    labels = load_reader_labels()
    fitting = {reader: [r for r in recs if r.extra.get("split") in SPLITS] for reader, recs in labels.items()}
    images = {r.image for recs in fitting.values() for r in recs}
    if args.pages is not None:  # measure every corpus page once, so labels added later need no pages
        with gzip.open(CORPUS / "questions.jsonl.gz", "rt", encoding="utf-8") as fh:
            images |= {json.loads(line)["image"] for line in fh if line.strip()}
    measures = page_measures(images, args.pages)
    grid = rule_grid(tuple(dict.fromkeys(["small", *args.measures])))
    body_ok = np.array([rule.measure == "small" for rule in grid])
    print(f"scoring {len(grid)} rules per kind on {', '.join(f'{len(v)} {k}' for k, v in fitting.items())} "
          "train+validation questions ...", file=sys.stderr, flush=True)
    tables = {reader: ReaderTable(recs, measures, grid) for reader, recs in fitting.items()}
    every = {r: np.ones(len(t.records), dtype=bool) for r, t in tables.items()}
    fold_of = folds_of([d for t in tables.values() for d in t.docs], args.folds)
    fold = {r: np.array([fold_of[d] for d in t.docs]) for r, t in tables.items()}
    points = list(product(args.other_weights, np.geomspace(0.05, 50, 200)))
    cv = {p: {r: np.zeros(4) for r in tables} for p in points}
    per_fold = {p: {r: [] for r in tables} for p in points}
    for f in range(args.folds):
        fit_masks = {r: fold[r] != f for r in tables}
        ks = {r: t.kind_sums(fit_masks[r]) for r, t in tables.items()}
        for p in points:
            choice = fit(tables, fit_masks, args.reader, *p, body_ok, ks)
            for r, t in tables.items():
                held = t.sums(choice, fold[r] == f)
                cv[p][r] += held
                per_fold[p][r].append(kept_saved(held))
    fixed = {r: t.fixed(every[r]) for r, t in tables.items()}

    def holds(p) -> bool:
        pts = {r: kept_saved(cv[p][r]) for r in tables}
        return pts[args.reader][0] >= args.retention and not any(
            dominated(pts[r], fixed[r], args.margin, args.savings_margin) for r in tables)

    ok = [p for p in points if holds(p)]
    if not ok:
        raise SystemExit(f"no operating point keeps {args.retention} (cross-validated) undominated under every reader")
    best = max(ok, key=lambda p: kept_saved(cv[p][args.reader])[1])
    print(f"{args.folds}-fold cross-validation over the documents of train+validation: {len(ok)} of {len(points)} "
          f"operating points keep {args.retention} under {args.reader} undominated (margins {args.margin} kept, "
          f"{args.savings_margin:.0%} saved) under "
          f"every reader; chosen: other-reader weight {best[0]:g}, price {best[1]:.3g}")
    for r in tables:
        k, s = kept_saved(cv[best][r])
        fk = [x[0] for x in per_fold[best][r]]
        print(f"  cross-validated {r:<10} kept {k:.3f} (folds {min(fk):.3f}-{max(fk):.3f}) saved {s:.1%}   fixed: "
              + " ".join(f"{f}:{fk:.3f}/{fs:.1%}" for f, fk, fs in fixed[r] if 512 <= f <= 1024))
    chosen = fit(tables, every, args.reader, *best, body_ok)
    constants = constants_for(grid, chosen)
    print("\nchosen rules (fitted on train+validation at that operating point):")
    print(f"  TextScaleRouter(min_text_px={constants['min_text_px']}, floor={constants['floor']}, "
          f"text_cap={constants['text_cap']},")
    print("                  kind_rules={" + ",\n                              ".join(
        f"{k!r}: {r!r}" for k, r in constants["kind_rules"].items()) + "})")
    if args.json:
        args.json.write_text(json.dumps({
            "min_text_px": constants["min_text_px"], "floor": constants["floor"], "text_cap": constants["text_cap"],
            "kind_rules": {k: r.__dict__ for k, r in constants["kind_rules"].items()},
            "cross_validated": {r: kept_saved(cv[best][r]) for r in tables}}, indent=1) + "\n")
    print("\nin sample (the rules were fitted on these):")
    for reader, t in tables.items():
        for k in SPLITS:
            recs = [r for r in t.records if r.extra.get("split") == k]
            kn, sn = score(recs, sides_for(recs, measures, **constants))
            expect = kept_saved(t.sums(chosen, t.split == k))
            assert abs(kn - expect[0]) < 1e-9 and abs(sn - expect[1]) < 1e-9, "the router disagrees with the table"
            kd, sd = score(recs, sides_for(recs, measures, **PREVIOUS))
            fx = t.fixed(t.split == k)
            best_f = max([x for x in fx if x[1] >= 0.97], key=lambda x: x[2], default=None)
            dom = dominated((kn, sn), fx, 0.0)
            print(f"  {reader:<10} {k:<10} n={len(recs):>4}  refit kept {kn:.3f} saved {sn:.1%}"
                  f"{' (dominated by ' + ', '.join(map(str, dom)) + ')' if dom else ''}   previous default "
                  f"kept {kd:.3f} saved {sd:.1%}"
                  + (f"   best fixed keeping 0.97: {best_f[0]} ({best_f[1]:.3f} / {best_f[2]:.1%})" if best_f else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
