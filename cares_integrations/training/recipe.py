"""The recipe behind the shipped learned default router, runnable with one command::

    python -m cares_integrations.training.recipe --out runs/learned-default [--pages 120 --seed 0]

Steps (each resumable; rerunning with the same ``--out`` picks up where it stopped):

1. ``generate``: ``--pages`` synthetic pages (:mod:`.synthetic`) -> ``OUT/dataset``.
2. ``label``: every (page, question) with the Tesseract reader (:class:`.ocr.OcrReader`) at
   ``RESOLUTIONS`` -> ``OUT/labels.jsonl`` (resumable: finished ids are skipped).
3. ``split``: pages (not questions) into train / validation / held-out test, seeded, so the
   held-out pages were never seen in training.
4. ``train``: a :class:`cares_integrations.training.learned_net.PageQuestionNet` on the train pages, early
   stopping and temperature scaling on the validation pages (:func:`.train.fit_classifier`).
5. ``evaluate``: the learned gate vs the text-scale default
   (:class:`cares_integrations.textscale.TextScaleRouter`), fixed sizes and the oracle on the
   held-out pages for ``openai:gpt-4o`` and ``qwen2.5-vl``: retention and visual tokens saved.
6. ``report``: ``OUT/report.json``, ``OUT/report.md`` and, with ``--docs``, the figures in
   ``docs/learned-default.md``; with ``--install``, the weights are copied into
   ``cares_integrations/routers/learned_default/``.

How a routed size is scored: as in :mod:`.evaluate` (a requested long side, capped at the page,
is credited by :func:`.evaluate.credited_score`: the score at the largest labeled resolution at
or below it; at the page's own long side, the last one). The figures in docs/learned-default.md
were measured when the credit was the smallest labeled resolution at or above the request. Retention = mean credited score / mean score of the
page sent as is ("native", scored at the largest labeled resolution). Tokens are the target's
visual tokens for the size the router's decision actually sends (provider-aware sizing), against
the page sent as is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["RESOLUTIONS", "TARGETS", "main", "run_recipe"]

RESOLUTIONS: tuple[int, ...] = (384, 768, 1024, 1536)
"""Labeled resolutions and the learned gate's bins. 1536 covers fine print on 300-dpi pages."""

TARGETS: tuple[str, ...] = ("openai:gpt-4o", "qwen2.5-vl")
"""Targets the held-out comparison reports tokens for."""

PACKAGE_MODEL_DIR = Path(__file__).resolve().parents[1] / "routers" / "learned_default"
DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "learned-default.md"


def _log(msg: str) -> None:
    print(f"[recipe {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- 1-2: data and labels ------------------------------------------------------------------------
def generate(out: Path, pages: int, seed: int) -> Path:
    """Write the synthetic dataset (skipped when it already holds ``pages`` pages)."""
    from .synthetic import generate_pages, write_dataset

    folder = out / "dataset"
    marker = folder / "pages.json"
    if marker.exists() and json.loads(marker.read_text()) == {"pages": pages, "seed": seed}:
        return folder
    _log(f"generating {pages} pages (seed {seed})")
    write_dataset(generate_pages(pages, seed=seed), folder)
    marker.write_text(json.dumps({"pages": pages, "seed": seed}))
    return folder


def label(out: Path, dataset: Path, *, workers: int = 2, batch_size: int = 12,
          minutes: float | None = None) -> Path:
    """Label the dataset with the Tesseract reader at :data:`RESOLUTIONS` (resumable).

    Pages are labeled in dataset order, a few at a time; with ``minutes`` the step stops
    starting new pages once that much time has passed (the run then trains on the pages
    labeled so far, and a rerun continues)."""
    from .labeling import label_dataset, load_samples
    from .ocr import OcrReader

    labels = out / "labels.jsonl"
    reader = OcrReader(workers=workers)
    samples, folder = load_samples(dataset)
    _log(f"labeling {len(samples)} samples with {reader!r} at {RESOLUTIONS} -> {labels}")
    start = time.time()
    chunk = 8 * batch_size
    for s in range(0, len(samples), chunk):
        if minutes is not None and time.time() - start > 60 * minutes:
            _log(f"label budget of {minutes} min spent: stopping after {s} samples")
            break
        label_dataset(samples[s:s + chunk], reader, resolutions=RESOLUTIONS, out_path=labels,
                      batch_size=batch_size, progress=False, base_dir=folder)
        _log(f"labeled {min(s + chunk, len(samples))}/{len(samples)} samples "
             f"({time.time() - start:.0f} s)")
    spent = time.time() - start
    _log(f"labeling done in {spent:.0f} s")
    ledger = out / "label_seconds.json"  # labeling time summed over resumed runs, for the report
    total = (json.loads(ledger.read_text())["seconds"] if ledger.exists() else 0.0) + spent
    ledger.write_text(json.dumps({"seconds": total}))
    return labels


# -- 3: split by page ----------------------------------------------------------------------------
def split_pages(page_ids: Sequence[str], seed: int, fractions: tuple[float, float] = (0.15, 0.25)) -> dict[str, str]:
    """Assign each page to ``train``, ``val`` or ``test`` (seeded; ``fractions`` = val, test)."""
    pages = sorted(set(page_ids))
    rng = np.random.default_rng(seed + 7919)
    order = rng.permutation(len(pages))
    n_val = max(1, int(round(len(pages) * fractions[0])))
    n_test = max(1, int(round(len(pages) * fractions[1])))
    assign = {}
    for rank, i in enumerate(order):
        assign[pages[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return assign


def _page_of(record: Any) -> str:
    extra = getattr(record, "extra", None) or {}
    if "page_id" in extra:
        return str(extra["page_id"])
    return str(record.image)


# -- 4: training ---------------------------------------------------------------------------------
def model_config(**overrides: Any) -> dict[str, Any]:
    """The learned gate's architecture and input settings (saved as ``config.json``)."""
    config = {
        "bins": list(RESOLUTIONS),
        "view_size": 128,
        "question_dim": 256,
        "channels": [8, 16, 32, 32],
        "question_hidden": 32,
        "hidden": 64,
        "temperature": 1.0,
        "class_bias": [0.0] * len(RESOLUTIONS),
    }
    config.update(overrides)
    return config


class _Indexed:
    """Wraps the net so samples index a shared tensor of page views (one per page)."""

    def __new__(cls, net: Any, views: Any):
        import torch

        class IndexedNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net
                self.register_buffer("views", views, persistent=False)

            def forward(self, page_index, question, stats):
                return self.net(self.views[page_index], question, stats)

        return IndexedNet()


def train_learned(records: list[Any], dataset: Path, assign: dict[str, str], *, seed: int, epochs: int = 40,
                  config: dict[str, Any] | None = None, progress: bool = True, class_weights: Any = None
                  ) -> tuple[dict[str, Any], Any, Any, dict[str, Any]]:
    """Train the learned gate on the train pages; early stop, calibrate and pick the operating
    point on the val pages.

    Returns (config with the fitted temperature and class bias, net, TrainResult, operating point)."""
    import torch
    from PIL import Image

    from ..routers.learned import page_stats, page_view, question_features
    from .learned_net import build_net
    from .train import fit_classifier

    config = dict(config or model_config())
    keep = [r for r in records if assign[_page_of(r)] in ("train", "val")]
    page_keys = sorted({r.image for r in keep})
    page_index = {p: i for i, p in enumerate(page_keys)}
    views = np.zeros((len(page_keys), 1, config["view_size"], config["view_size"]), dtype=np.float32)
    stats_by_page = {}
    for p in page_keys:
        path = Path(p) if Path(p).is_absolute() else dataset / p
        with Image.open(path) as img:
            img = img.convert("RGB")
            v = page_view(img, config["view_size"])
            views[page_index[p], 0] = v
            stats_by_page[p] = page_stats(img, v)
    idx = np.array([page_index[r.image] for r in keep], dtype=np.int64)
    qs = np.stack([question_features(r.question, config["question_dim"]) for r in keep]).astype(np.float32)
    st = np.stack([stats_by_page[r.image] for r in keep]).astype(np.float32)
    y = np.array([r.label for r in keep], dtype=np.int64)
    is_val = np.array([assign[_page_of(r)] == "val" for r in keep])
    split = (np.flatnonzero(~is_val), np.flatnonzero(is_val))
    torch.manual_seed(seed)
    net = build_net(config)
    wrapped = _Indexed(net, torch.from_numpy(views))
    _log(f"training on {len(split[0])} samples ({len(set(idx[split[0]]))} pages), "
         f"validating on {len(split[1])} ({len(set(idx[split[1]]))} pages); label counts {np.bincount(y).tolist()}")
    start = time.time()
    result = fit_classifier(wrapped, [idx, qs, st], y, n_classes=len(config["bins"]), epochs=epochs,
                            lr=1e-3, batch_size=32, label_smoothing=0.05, patience=6, seed=seed, split=split,
                            class_weights=class_weights)
    _log(f"trained in {time.time() - start:.0f} s: best epoch {result.best_epoch}, T={result.temperature:.3f}, "
         f"val acc {result.val_metrics['accuracy']:.3f}, val nll {result.val_metrics['nll']:.3f}")
    config["temperature"] = float(result.temperature)
    net.eval()
    val_records = [keep[i] for i in split[1]]
    val_probs = result.predict_proba(idx[split[1]], qs[split[1]], st[split[1]])
    config["class_bias"], operating_point = choose_operating_point(val_records, dataset, val_probs)
    return config, net, result, operating_point


BIAS_GRID: tuple[float, ...] = tuple(round(0.25 * i, 2) for i in range(17))
"""Candidate strengths lambda of the log-prior shift ``lambda * k`` on class k (0 to 4)."""


def choose_operating_point(val_records: list[Any], dataset: Path, probs: np.ndarray
                           ) -> tuple[list[float], dict[str, Any]]:
    """Pick the gate's operating point on the VALIDATION pages: the smallest shift toward larger
    bins (``class_bias = lambda * [0, 1, ..., K-1]``) at which its retention reaches the
    text-scale default's on the same pages, capped at 1.0 (retention does not depend on the
    target). The cap matters: the reader sometimes reads a smaller image better than the full
    page, so a router can score above native by chance (text-scale did, 1.002, in the first full
    run), and demanding that pushed the gate to its largest bin everywhere. The held-out pages
    play no part."""
    from PIL import Image

    from ..core.policy import ResolutionPolicy
    from ..routers.textscale import TextScaleRouter
    from .evaluate import evaluate_long_sides

    sizes = []
    for r in val_records:
        with Image.open(dataset / r.image if not Path(r.image).is_absolute() else r.image) as img:
            sizes.append(img.size)
    text = TextScaleRouter()
    text_sides = [d.long_side for d in text.route_batch([str(dataset / r.image) for r in val_records],
                                                        [r.question for r in val_records])]
    text_ret = evaluate_long_sides(val_records, sizes, text_sides, name="text-scale").retention
    goal = min(text_ret, 1.0)
    policy = ResolutionPolicy(bins=RESOLUTIONS)
    k = np.arange(len(RESOLUTIONS), dtype=np.float64)
    tried = []
    chosen = None
    for lam in BIAS_GRID:
        z = np.log(np.clip(probs, 1e-12, None)) + lam * k
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        sides = [policy.raw_long_side(row) for row in p]
        res = evaluate_long_sides(val_records, sizes, sides, name=f"lambda={lam}")
        px = res.tokens_saved  # no target: the cost is pixels
        tried.append({"lambda": lam, "retention": res.retention, "pixels_saved": px})
        if chosen is None and res.retention >= goal - 1e-9:
            chosen = lam
    if chosen is None:
        chosen = BIAS_GRID[-1]
    _log(f"operating point on {len(val_records)} validation samples: lambda={chosen} "
         f"(text-scale retention there {text_ret:.3f}, goal {goal:.3f}; "
         + ", ".join(f"{t['lambda']}: {t['retention']:.3f}" for t in tried[:9]) + ")")
    return [float(chosen * i) for i in k], {"lambda": chosen, "text_scale_val_retention": text_ret,
                                            "retention_goal": goal, "tried": tried}


# -- 5: evaluation -------------------------------------------------------------------------------
def evaluate_routers(records: list[Any], dataset: Path, routers: dict[str, Any], targets: Sequence[str]
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """Retention and tokens saved of each router, the oracle and native, per target.

    Each router routes every sample once (pages decoded once); the long sides it asked for are
    then scored per target with :func:`.evaluate.evaluate_long_sides`, which credits and charges
    exactly as :func:`.evaluate.evaluate_router` does (:func:`.evaluate.credited_score`; the
    tokens of the provider-aware send size).

    Returns ``{target: {name: {"retention", "tokens_saved", "mean_score", "mean_long_side",
    "ms_per_sample"}}}``."""
    from PIL import Image

    from .evaluate import evaluate_long_sides, oracle_policy

    pages: dict[str, Image.Image] = {}
    for r in records:
        if r.image not in pages:
            with Image.open(Path(r.image) if Path(r.image).is_absolute() else dataset / r.image) as img:
                pages[r.image] = img.convert("RGB")
    pil = [pages[r.image] for r in records]
    sizes = [img.size for img in pil]
    questions = [r.question for r in records]
    sides: dict[str, list[float]] = {}
    ms: dict[str, float] = {}
    for name, router in routers.items():
        start = time.perf_counter()
        decisions = []
        for s in range(0, len(pil), 32):
            decisions += router.route_batch(pil[s:s + 32], questions[s:s + 32], target=None)
        ms[name] = 1000.0 * (time.perf_counter() - start) / len(pil)
        sides[name] = [d.long_side for d in decisions]

    def row(p: Any, ms_per: float = 0.0) -> dict[str, float]:
        return {"mean_score": p.mean_score, "retention": p.retention, "tokens_saved": p.tokens_saved,
                "mean_long_side": p.mean_long_side, "ms_per_sample": ms_per}

    out: dict[str, dict[str, dict[str, float]]] = {}
    for target in targets:
        table = {name: row(evaluate_long_sides(records, sizes, sides[name], name=name, target=target), ms[name])
                 for name in routers}
        table["oracle"] = row(oracle_policy(records, sizes, target=target))
        table["native"] = row(evaluate_long_sides(records, sizes, [max(s) for s in sizes], name="native",
                                                  target=target))
        out[target] = table
    return out


def verdict(results: dict[str, dict[str, dict[str, float]]], *, tolerance: float = 0.0) -> dict[str, Any]:
    """Whether the learned gate beats the text-scale default on every target: more tokens saved
    at the same or better retention (``tolerance``: retention slack, default none)."""
    per_target = {}
    for target, table in results.items():
        learned, text = table["learned-default"], table["text-scale"]
        per_target[target] = bool(learned["tokens_saved"] > text["tokens_saved"]
                                  and learned["retention"] >= text["retention"] - tolerance)
    return {"learned_beats_text_scale": all(per_target.values()), "per_target": per_target}


# -- 6: report -----------------------------------------------------------------------------------
def markdown_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The held-out comparison as a Markdown table (targets side by side; routing time per
    question measured in the same run, pages already decoded)."""
    targets = list(results)
    names = list(results[targets[0]])
    head = ("| router | " + " | ".join(f"{t}: retention | {t}: tokens saved" for t in targets)
            + " | mean long side | ms / question |")
    sep = "|---|" + "---|---|" * len(targets) + "---|---|"
    rows = [head, sep]
    for name in names:
        cells = []
        for t in targets:
            m = results[t][name]
            cells += [f"{m['retention']:.3f}", f"{100 * m['tokens_saved']:.1f}%"]
        first = results[targets[0]][name]
        timing = f"{first['ms_per_sample']:.1f}" if first["ms_per_sample"] else "-"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {first['mean_long_side']:.0f} | {timing} |")
    return "\n".join(rows)


def run_recipe(out: str | os.PathLike, *, pages: int = 120, seed: int = 0, epochs: int = 40, workers: int = 2,
               label_minutes: float | None = None, install: bool = False, docs: bool = False) -> dict[str, Any]:
    """Run every step (see the module docstring); returns the report dict."""
    import torch

    from ..routers.learned import LearnedDefaultRouter
    from .learned_net import save_learned
    from ..routers.fixed import FixedRouter
    from ..routers.textscale import TextScaleRouter
    from .labeling import load_labels

    torch.set_num_threads(1)  # on a shared 2-core machine one thread trains ~7x faster than two
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    dataset = generate(out, pages, seed)
    labels_path = label(out, dataset, workers=workers, minutes=label_minutes)
    label_seconds = time.time() - t0
    records = load_labels(labels_path)
    assign = split_pages([_page_of(r) for r in records], seed)
    config, net, result, operating_point = train_learned(records, dataset, assign, seed=seed, epochs=epochs)
    model_dir = save_learned(out / "model", config, net)

    test = [r for r in records if assign[_page_of(r)] == "test"]
    routers = {
        "learned-default": LearnedDefaultRouter(model_dir),
        "text-scale": TextScaleRouter(),
        "fixed-768": FixedRouter(768),
        "fixed-1024": FixedRouter(1024),
    }
    _log(f"evaluating on {len(test)} held-out samples ({len({_page_of(r) for r in test})} pages)")
    results = evaluate_routers(test, dataset, routers, TARGETS)
    decision = verdict(results)
    report = {
        "pages": len({_page_of(r) for r in records}), "pages_generated": pages, "seed": seed,
        "samples": len(records), "resolutions": list(RESOLUTIONS),
        "split_pages": {k: sum(1 for v in assign.values() if v == k) for k in ("train", "val", "test")},
        "test_samples": len(test),
        "label_counts": np.bincount([r.label for r in records], minlength=len(RESOLUTIONS)).tolist(),
        "train": {"best_epoch": result.best_epoch, "temperature": result.temperature,
                  "operating_point": operating_point,
                  "val_metrics": {k: v for k, v in result.val_metrics.items()}, "epochs_run": len(result.history)},
        "results": results, "verdict": decision,
        "seconds": {"this_run": time.time() - t0, "labeling_and_generation_this_run": label_seconds,
                    "labeling_all_runs": json.loads((out / "label_seconds.json").read_text())["seconds"]},
        "model_bytes": sum(f.stat().st_size for f in model_dir.iterdir()),
        "command": f"python -m cares_integrations.training.recipe --out OUT --pages {pages} --seed {seed}",
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(results)
    (out / "report.md").write_text(table + "\n")
    _log("held-out comparison:\n" + table)
    _log(f"verdict: {decision}")
    if install:
        PACKAGE_MODEL_DIR.mkdir(parents=True, exist_ok=True)
        for f in model_dir.iterdir():
            shutil.copyfile(f, PACKAGE_MODEL_DIR / f.name)
            os.chmod(PACKAGE_MODEL_DIR / f.name, 0o644)
        (PACKAGE_MODEL_DIR / "report.json").write_text(json.dumps(
            {k: report[k] for k in ("pages", "seed", "samples", "resolutions", "split_pages", "test_samples",
                                    "label_counts", "train", "results", "verdict", "command")}, indent=2))
        _log(f"installed weights into {PACKAGE_MODEL_DIR}")
    if docs:
        write_docs_figures(report, table)
    return report


FIG_START = "<!-- recipe-figures:start -->"
FIG_END = "<!-- recipe-figures:end -->"


def write_docs_figures(report: dict[str, Any], table: str) -> None:
    """Replace the figures block between the markers in ``docs/learned-default.md``."""
    if not DOCS_PATH.exists():
        _log(f"{DOCS_PATH} not found; skipping the docs figures")
        return
    text = DOCS_PATH.read_text()
    if FIG_START not in text or FIG_END not in text:
        _log(f"no figure markers in {DOCS_PATH}; skipping")
        return
    m = report["train"]["val_metrics"]
    block = "\n".join([
        FIG_START,
        f"Command: `{report['command']} --install --docs`. Tesseract labeling took "
        f"{report['seconds']['labeling_all_runs'] / 60:.0f} min on the shared 2-core dev machine "
        f"({report['seconds']['labeling_all_runs'] / max(report['samples'], 1):.1f} s per question, "
        "other engineers' jobs running alongside); training and evaluation about 1 min.",
        "",
        f"Data: {report['pages']} pages, {report['samples']} questions; pages split "
        f"{report['split_pages']['train']}/{report['split_pages']['val']}/{report['split_pages']['test']} "
        f"train/val/held-out ({report['test_samples']} held-out questions). Label counts over "
        f"{report['resolutions']}: {report['label_counts']}.",
        "",
        f"Validation (calibrated): accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, NLL {m['nll']:.3f} "
        f"(uncalibrated {m['nll_uncalibrated']:.3f}), ECE {m['ece']:.3f} (uncalibrated {m['ece_uncalibrated']:.3f}); "
        f"temperature {report['train']['temperature']:.3f}. Operating point chosen on the validation pages: "
        f"lambda = {report['train']['operating_point']['lambda']}, the smallest reaching the retention goal "
        f"{report['train']['operating_point']['retention_goal']:.3f} (text-scale's retention there, "
        f"{report['train']['operating_point']['text_scale_val_retention']:.3f}, capped at 1). "
        f"Weights: {report['model_bytes'] / 1024:.0f} KiB.",
        "",
        "Held-out pages (never seen in training); routing time per question measured side by side in "
        "this run, in batches of 32 (a page's questions in one batch share the learned router's page "
        "measurement, the text-scale router measures per question):",
        "",
        table,
        "",
        f"Verdict: learned beats text-scale on every target: **{report['verdict']['learned_beats_text_scale']}** "
        f"({report['verdict']['per_target']}).",
        FIG_END,
    ])
    start, end = text.index(FIG_START), text.index(FIG_END) + len(FIG_END)
    DOCS_PATH.write_text(text[:start] + block + text[end:])
    _log(f"wrote figures into {DOCS_PATH}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line for :func:`run_recipe`."""
    p = argparse.ArgumentParser(prog="python -m cares_integrations.training.recipe",
                                description="Train and evaluate the learned default router on synthetic pages "
                                            "labeled with Tesseract (resumable).")
    p.add_argument("--out", required=True, help="run folder (dataset, labels.jsonl, model, report.json)")
    p.add_argument("--pages", type=int, default=120,
                   help="synthetic pages to generate (default 120: about 25 min of Tesseract labeling on 2 shared cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--workers", type=int, default=2, help="Tesseract processes in parallel")
    p.add_argument("--label-minutes", type=float, default=None,
                   help="stop labeling new pages after this many minutes (train on what is labeled)")
    p.add_argument("--label-only", action="store_true", help="stop after labeling")
    p.add_argument("--install", action="store_true", help="copy the weights into the package")
    p.add_argument("--docs", action="store_true", help="write the figures into docs/learned-default.md")
    args = p.parse_args(argv)
    if args.label_only:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        label(out, generate(out, args.pages, args.seed), workers=args.workers, minutes=args.label_minutes)
        return 0
    run_recipe(args.out, pages=args.pages, seed=args.seed, epochs=args.epochs, workers=args.workers,
               label_minutes=args.label_minutes, install=args.install, docs=args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
