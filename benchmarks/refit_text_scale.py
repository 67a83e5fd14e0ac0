"""Refit the text-scale router's constants on the corpus's train and validation splits.

    python benchmarks/refit_text_scale.py [--pages DIR] [--reader ppocr] [--retention 0.975]

Each page is measured once (``TextScaleRouter.measure``; cached in
``benchmarks/corpus/page_measures.jsonl.gz``, so a rerun needs no pages), then every setting of
``min_text_px`` x ``floor`` x ``title_scale`` x ``text_cap`` is scored exactly (the router's own
``long_side_for``) on the train split; the cheapest setting that keeps ``--retention`` on train
and not dominated by a fixed size (keeps at least as much and saves at least as much) under any
reader on train is reported with its validation numbers, and the test split is never read. The default is fitted
to the neural reader (PP-OCR stands in for VLM-class readers); the Tesseract columns show what
the same setting does for a weaker reader.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from itertools import product
from pathlib import Path

import numpy as np

from _quality import CORPUS, COST_MODELS, Scorer, load_reader_labels, summarise
from cares_integrations.routers.textscale import TextMeasure, TextScaleRouter

MEASURES = CORPUS / "page_measures.jsonl.gz"
COST = "qwen-patch"


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
    """The long side the router with ``constants`` asks for on each record."""
    router = TextScaleRouter(**constants)
    return np.array([router.long_side_for(measures[r.image], tuple(r.extra["native_size"]), r.question)
                     for r in records], dtype=float)


def score(records, sides) -> tuple[float, float]:
    """(kept, saved) of requested long sides under the main cost model."""
    s = Scorer(records)
    model = COST_MODELS[COST]
    return summarise(s.credit(sides), s.costs(sides, model), s.native_scores, s.costs(s.native.astype(float), model))


def main(argv=None) -> int:
    """Grid-search the constants on train, report validation."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=Path, default=None)
    ap.add_argument("--reader", default="ppocr")
    ap.add_argument("--retention", type=float, default=0.975)
    args = ap.parse_args(argv)
    labels = load_reader_labels()
    split = {reader: {k: [r for r in recs if r.extra.get("split") == k] for k in ("train", "validation")}
             for reader, recs in labels.items()}
    images = {r.image for recs in labels.values() for r in recs if r.extra.get("split") != "test"}
    measures = page_measures(images, args.pages)
    from _quality import FIXED

    train = {reader: split[reader]["train"] for reader in split}
    fixed = {reader: [score(recs, np.minimum(float(f), Scorer(recs).native)) for f in FIXED]
             for reader, recs in train.items()}
    rows = []
    for mtp, floor, title, cap in product(np.round(np.arange(3.0, 7.01, 0.25), 2), (384, 512, 640, 768),
                                          (0.5, 0.75, 1.0), (768, 896, 1024, None)):
        c = dict(min_text_px=float(mtp), floor=int(floor), title_scale=float(title), text_cap=cap)
        per = {reader: score(recs, sides_for(recs, measures, **c)) for reader, recs in train.items()}
        dominated = any(fk >= per[reader][0] and fs >= per[reader][1] for reader in per for fk, fs in fixed[reader])
        rows.append((per[args.reader][0], per[args.reader][1], c, dominated))
    ok = [r for r in rows if r[0] >= args.retention and not r[3]]
    if not ok:
        print(f"no setting keeps {args.retention} on train undominated under every reader; "
              "dropping the domination rule")
        ok = [r for r in rows if r[0] >= args.retention]
    if not ok:
        raise SystemExit(f"no setting keeps {args.retention} on train")
    kept, saved, best, _ = max(ok, key=lambda r: r[1])
    print(f"chosen on {args.reader} train (kept >= {args.retention}, most {COST} saved): {best}")
    for reader in split:
        for k in ("train", "validation"):
            recs = split[reader][k]
            kn, sn = score(recs, sides_for(recs, measures, **best))
            kd, sd = score(recs, sides_for(recs, measures, min_text_px=5.0, floor=384, title_scale=1.0, text_cap=None))
            print(f"  {reader:<10} {k:<10} n={len(recs):>4}  refit kept {kn:.3f} saved {sn:.1%}   "
                  f"pre-corpus default kept {kd:.3f} saved {sd:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
