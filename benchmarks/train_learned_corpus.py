"""Retrain the learned default router on the real-document corpus (PP-OCR labels).

    python benchmarks/train_learned_corpus.py --pages /work/corpus-work --out runs/learned-corpus --install

Trains :class:`cares_integrations.training.learned_net.PageQuestionNet` (the same network and inputs
as ``learned-default``: the page's ink map, its measured text statistics and the hashed question)
on the corpus's TRAIN split labeled by the PP-OCRv4 reader, with one class per labeled size
(384 ... 1536 px; a label at the page's own size goes to the smallest bin at or above it, which the
page caps). Early stopping, the temperature and the operating point use the VALIDATION split
only; the test split is never read. Several seeds are trained; for each, the operating point is a
log-prior shift ``class_bias[k] = lambda * min(k, cap)`` and the policy mode (discrete or continuous).
The chosen candidate is the one saving the most Qwen2.5-VL patches on validation among those
that (a) keep at least today's learned-default's validation retention minus ``--slack``, (b) save more
than it and (c) are dominated by no fixed size on validation (none keeps more and saves more).

Scoring is ``benchmarks/_quality.py``'s (credit at the largest labeled size at or below the
request). ``--install`` copies the chosen weights into ``cares_integrations/routers/learned_default/``
and writes its ``report.json``; without it the run only reports. Page features are cached in
``OUT/features.npz``; the same seeds give the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _quality import ROOT, ROUTER_SIDES, Scorer, cached_sides, load_reader_labels, load_router_sides, summarise  # noqa: E402

BINS = (384, 512, 640, 768, 896, 1024, 1280, 1536)
LAMBDAS = tuple(round(-1.0 + 0.125 * i, 3) for i in range(25))  # -1 .. 2
COST = "qwen2.5-vl"


def log(msg: str) -> None:
    print(f"[train-learned-corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def safe_resolution(rec, tol: float = 0.1) -> int:
    """The smallest labeled size from which every larger size keeps the record's score within
    ``tol`` of its best (the label with the reader's non-monotone flukes smoothed away)."""
    best = max(rec.scores)
    r = rec.resolutions[-1]
    for res, score in reversed(list(zip(rec.resolutions, rec.scores))):
        if score < best - tol:
            break
        r = res
    return int(r)


def label_bin(rec, labels: str = "cares") -> int:
    """Class of a record: the smallest bin at or above its label resolution (``labels="safe"``:
    :func:`safe_resolution` instead of the CARES label)."""
    r = int(rec.label_resolution) if labels == "cares" else safe_resolution(rec)
    for k, b in enumerate(BINS):
        if b >= r:
            return k
    return len(BINS) - 1


def page_features(records, pages: Path, out: Path, config: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{image: (view, stats)} for every page of ``records`` (cached in ``out/features.npz``)."""
    from PIL import Image

    from cares_integrations.routers.learned import page_stats, page_view

    cache_path = out / "features.npz"
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache_path.exists():
        data = np.load(cache_path, allow_pickle=False)
        for i, key in enumerate(data["keys"]):
            feats[str(key)] = (data["views"][i], data["stats"][i])
    todo = sorted({r.image for r in records} - set(feats))
    for i, image in enumerate(todo):
        with Image.open(pages / image) as img:
            img = img.convert("RGB")
            view = page_view(img, config["view_size"])
            feats[image] = (view, page_stats(img, view))
        if i % 50 == 0:
            log(f"page features {i}/{len(todo)}")
    if todo:
        keys = sorted(feats)
        np.savez_compressed(cache_path, keys=np.array(keys), views=np.stack([feats[k][0] for k in keys]),
                            stats=np.stack([feats[k][1] for k in keys]))
    return feats


CAPS = (2, 3, 4, 7)
"""Operating-point families: ``class_bias[k] = lambda * min(k, cap)`` (cap 7: the recipe's linear
shift; a smaller cap moves mass toward the middle bins without pulling it to the largest)."""


def class_bias(lam: float, cap: int, n: int = len(BINS)) -> list[float]:
    """The log-prior shift of one operating point."""
    return [float(lam * min(k, cap)) for k in range(n)]


def softmax_shift(probs: np.ndarray, bias: list[float]) -> np.ndarray:
    z = np.log(np.clip(probs, 1e-12, None)) + np.asarray(bias)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def sides_for(probs: np.ndarray, mode: str, native: np.ndarray) -> np.ndarray:
    from cares_integrations.core.policy import ResolutionPolicy

    policy = ResolutionPolicy(bins=BINS, mode=mode)
    return np.array([policy.clamp(policy.raw_long_side(row), int(n)) for row, n in zip(probs, native)], dtype=float)


def dominated_by(ret: float, sav: float, fixed: dict[str, tuple[float, float]]) -> list[str]:
    """Fixed sizes keeping at least as much and saving at least as much (one of them strictly)."""
    return [name for name, (r, s) in fixed.items()
            if r >= ret - 1e-12 and s >= sav - 1e-12 and (r > ret + 1e-12 or s > sav + 1e-12)]


def main(argv=None) -> int:
    """Train, choose on validation, optionally install; prints the validation table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=Path, default=Path("/work/corpus-work"), help="the corpus build folder")
    ap.add_argument("--out", type=Path, default=Path("runs/learned-corpus"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--labels", choices=("cares", "safe"), default="safe",
                    help="class of a question: its CARES label, or the smallest size from which every larger one keeps its score")
    ap.add_argument("--slack", type=float, default=0.005, help="retention below today's learned-default allowed")
    ap.add_argument("--install", action="store_true", help="copy the chosen weights into routers/learned_default/")
    args = ap.parse_args(argv)

    import torch

    from cares_integrations.routers.learned import question_features
    from cares_integrations.training.learned_net import build_net, save_learned
    from cares_integrations.training.recipe import _Indexed, model_config
    from cares_integrations.training.train import fit_classifier

    args.out.mkdir(parents=True, exist_ok=True)
    records = [r for r in load_reader_labels()["ppocr"] if r.extra.get("split") in ("train", "validation")]
    train = [r for r in records if r.extra["split"] == "train"]
    val = [r for r in records if r.extra["split"] == "validation"]
    keep = train + val
    config = model_config(bins=list(BINS), class_bias=[0.0] * len(BINS))
    feats = page_features(keep, args.pages, args.out, config)
    page_keys = sorted({r.image for r in keep})
    index = {p: i for i, p in enumerate(page_keys)}
    views = torch.from_numpy(np.stack([feats[p][0] for p in page_keys])[:, None].astype(np.float32))
    idx = np.array([index[r.image] for r in keep], dtype=np.int64)
    qs = np.stack([question_features(r.question, config["question_dim"]) for r in keep]).astype(np.float32)
    st = np.stack([feats[r.image][1] for r in keep]).astype(np.float32)
    y = np.array([label_bin(r, args.labels) for r in keep], dtype=np.int64)
    split = (np.arange(len(train)), np.arange(len(train), len(keep)))
    log(f"{len(train)} train questions on {len({r.image for r in train})} pages, {len(val)} validation on "
        f"{len({r.image for r in val})}; train label counts over {BINS}: {np.bincount(y[split[0]], minlength=len(BINS)).tolist()}")

    scorer = Scorer(val)
    native_cost = scorer.costs(scorer.native.astype(float), COST)

    def evaluate(sides: np.ndarray) -> tuple[float, float]:
        return summarise(scorer.credit(sides), scorer.costs(sides, COST), scorer.native_scores, native_cost)

    fixed = {f"fixed-{b}": evaluate(np.minimum(float(b), scorer.native)) for b in BINS}
    cache = load_router_sides(ROUTER_SIDES)
    baseline = {name: evaluate(cached_sides(cache, name, val)) for name in ("learned-default", "default")
                if name in cache}
    goal = baseline["learned-default"][0] - args.slack if "learned-default" in baseline else 0.0
    log(f"validation: today's learned-default {baseline.get('learned-default')}, goal retention >= {goal:.3f}")

    candidates = []
    nets = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        net = build_net(config)
        wrapped = _Indexed(net, views)
        start = time.time()
        result = fit_classifier(wrapped, [idx, qs, st], y, n_classes=len(BINS), epochs=args.epochs, lr=1e-3,
                                batch_size=32, label_smoothing=0.05, patience=8, seed=seed, split=split)
        net.eval()
        nets[seed] = (net, result)
        probs = result.predict_proba(idx[split[1]], qs[split[1]], st[split[1]])
        log(f"seed {seed}: {time.time() - start:.0f} s, best epoch {result.best_epoch}, T={result.temperature:.3f}, "
            f"val acc {result.val_metrics['accuracy']:.3f}, nll {result.val_metrics['nll']:.3f}")
        for mode in ("discrete", "continuous"):
            for cap in CAPS:
                for lam in LAMBDAS:
                    ret, sav = evaluate(sides_for(softmax_shift(probs, class_bias(lam, cap)), mode, scorer.native))
                    candidates.append({"seed": seed, "mode": mode, "cap": cap, "lambda": lam, "retention": ret,
                                       "qwen_saved": sav, "dominated_by": dominated_by(ret, sav, fixed)})
    floor = baseline["learned-default"][1] if "learned-default" in baseline else 0.0
    ok = [c for c in candidates if c["retention"] >= goal - 1e-12 and c["qwen_saved"] > floor and not c["dominated_by"]]
    (args.out / "candidates.json").write_text(json.dumps(candidates, indent=1) + "\n")
    print("validation split (PP-OCR), qwen2.5-vl patches:")
    for name, (r, s) in {**fixed, **baseline}.items():
        print(f"  {name:18s} kept {r:.3f}  saved {100 * s:5.1f}%")
    if not ok:
        best = max(candidates, key=lambda c: (c["retention"] >= goal, c["qwen_saved"]))
        print(f"no candidate meets the rule; best: {best}")
        return 1
    chosen = max(ok, key=lambda c: (c["qwen_saved"], c["retention"]))
    print(f"  chosen: seed {chosen['seed']}, {chosen['mode']}, cap {chosen['cap']}, lambda {chosen['lambda']}: kept "
          f"{chosen['retention']:.3f}, saved {100 * chosen['qwen_saved']:.1f}%")
    net, result = nets[chosen["seed"]]
    final = dict(config, temperature=float(result.temperature), mode=chosen["mode"],
                 class_bias=class_bias(chosen["lambda"], chosen["cap"]))
    model_dir = save_learned(args.out / "model", final, net)
    report = {
        "command": "python benchmarks/train_learned_corpus.py --pages /work/corpus-work --install",
        "data": "corpus PP-OCR labels (benchmarks/corpus/labels/ppocr.jsonl.gz): train split for weights, "
                "validation split for early stopping, temperature and operating point; test never read",
        "train_questions": len(train), "validation_questions": len(val), "seeds": args.seeds, "labels": args.labels,
        "chosen": chosen, "validation_fixed": fixed, "validation_baseline": baseline, "retention_goal": goal,
        "val_metrics": {k: v for k, v in result.val_metrics.items() if k != "confusion"},
        "best_epoch": result.best_epoch,
    }
    (model_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.install:
        dest = ROOT / "cares_integrations" / "routers" / "learned_default"
        for name in ("config.json", "model.safetensors", "report.json"):
            shutil.copyfile(model_dir / name, dest / name)
        log(f"installed into {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
