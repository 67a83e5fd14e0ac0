"""Shared by the corpus benchmarks: label files, the routers' long sides, and policy scoring.

A policy is one requested long side per record. It is credited with the record's score at the
largest labeled size <= the request (exact for fixed sizes, the oracle and calibrated routers,
which ask for labeled sizes; a lower bound for routers asking in between: ``retention_upper``
credits the next larger size instead) and charged the cost of the size sent for a cost model
(pixels when None; tokens of ``cares_integrations.tokens`` otherwise).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cares_integrations.training.evaluate import credited_score, sent_cost  # noqa: E402
from cares_integrations.training.labeling import LabelRecord  # noqa: E402

CORPUS = ROOT / "benchmarks" / "corpus"
LABELS_DIR = Path(os.environ.get("CARES_CORPUS_LABELS", CORPUS / "labels"))
"""The corpus's label files (``CARES_CORPUS_LABELS`` points elsewhere, e.g. a fresh export)."""
ROUTER_SIDES = CORPUS / "router_long_sides.jsonl.gz"
COST_MODELS = {"pixels": None, "openai-tile": "openai:gpt-4o", "claude": "anthropic:claude-sonnet-4",
               "gemini": "gemini-2.5-flash", "qwen-patch": "qwen2.5-vl"}
ROUTERS = ("default", "learned-default")
FIXED = (384, 512, 640, 768, 896, 1024, 1280, 1536)


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def load_reader_labels(labels_dir: Path | None = None) -> dict[str, list[LabelRecord]]:
    """Every reader's label records: {reader file stem: records}."""
    labels_dir = LABELS_DIR if labels_dir is None else labels_dir
    out = {}
    for path in sorted(labels_dir.glob("*.jsonl*")):
        with _open(path) as fh:
            out[path.name.split(".")[0]] = [LabelRecord.from_json(json.loads(line), where=f"{path}:{n}")
                                            for n, line in enumerate(fh, 1) if line.strip()]
    if not out:
        raise SystemExit(f"no label files in {labels_dir}: build the corpus labels first (docs/corpus.md)")
    return out


def page_size(rec: LabelRecord) -> tuple[int, int]:
    """The page's native (width, height)."""
    w, h = rec.extra["native_size"]
    return int(w), int(h)


def sample_key(rec: LabelRecord) -> str:
    """What a router's decision depends on: the page image and the question."""
    return f"{rec.image}\t{rec.question}"


def cached_sides(sides_cache: dict[str, dict[str, float]], name: str, records) -> np.ndarray:
    """The cached long sides of router ``name`` for ``records``, in order; a clear exit when any is missing."""
    missing = [rec.id for rec in records if sample_key(rec) not in sides_cache.get(name, {})]
    if missing:
        raise SystemExit(f"{name}: no cached long side for {len(missing)} questions (e.g. {missing[0]}); "
                         "rerun bench_quality.py with --pages CORPUS_BUILD_FOLDER")
    return np.array([sides_cache[name][sample_key(rec)] for rec in records], dtype=float)


def load_router_sides(path: Path = ROUTER_SIDES) -> dict[str, dict[str, float]]:
    """Cached router long sides: {router: {sample key: long side}}."""
    if not path.exists():
        return {}
    out: dict[str, dict[str, float]] = {}
    with _open(path) as fh:
        for line in fh:
            row = json.loads(line)
            out.setdefault(row["router"], {})[row["key"]] = float(row["long_side"])
    return out


def compute_router_sides(records: Sequence[LabelRecord], pages_dir: Path, routers: Sequence[Any],
                         cache: dict[str, dict[str, float]], path: Path = ROUTER_SIDES) -> dict[str, dict[str, float]]:
    """Fill ``cache`` with every router's long side for the records' (page, question) pairs (pages
    read from ``pages_dir``) and rewrite the cache file."""
    from cares_integrations.core.payload import load_image
    from cares_integrations.routers.calibrated import base_long_side

    for name, router in routers:
        have = cache.setdefault(name, {})
        todo: dict[str, list[str]] = {}
        for rec in records:
            if sample_key(rec) not in have:
                todo.setdefault(rec.image, []).append(rec.question)
        for i, (image, questions) in enumerate(sorted(todo.items())):
            decoded = load_image(pages_dir / image)
            qs = sorted(set(questions))
            predictions = router.predict([decoded] * len(qs), qs)
            for q, p in zip(qs, predictions):
                have[f"{image}\t{q}"] = base_long_side(router, decoded, p)
            if i % 50 == 0:
                print(f"{name}: {i}/{len(todo)} pages", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for name in sorted(cache):
            for key in sorted(cache[name]):
                fh.write(json.dumps({"router": name, "key": key, "long_side": cache[name][key]}) + "\n")
    return cache


class Scorer:
    """Scores and costs of records for requested long sides, per cost model (memoised)."""

    def __init__(self, records: Sequence[LabelRecord]):
        self.records = list(records)
        self.sizes = [page_size(r) for r in self.records]
        self.native = np.array([max(s) for s in self.sizes])
        self.native_scores = np.array([r.scores[-1] for r in self.records])
        self._cost: dict = {}
        self._models: dict = {}

    def _model(self, name: str | None):
        if name not in self._models:
            from cares_integrations.core.tokens import get_target

            self._models[name] = None if name is None else get_target(name)
        return self._models[name]

    def credit(self, sides: np.ndarray, upper: bool = False) -> np.ndarray:
        """Per-record score for requested long sides (lower credit; ``upper``: next larger size)."""
        return np.array([credited_score(rec.resolutions, rec.scores, int(n), float(L), upper=upper)
                         for rec, n, L in zip(self.records, self.native, sides)])

    def costs(self, sides: np.ndarray, model: str | None) -> np.ndarray:
        """Per-record cost of the size sent for each request under ``model``."""
        m = self._model(model)
        out = np.empty(len(self.records))
        for i, ((w, h), L) in enumerate(zip(self.sizes, sides)):
            L = int(min(max(1, np.ceil(L - 1e-9)), self.native[i]))
            key = (model, w, h, L)
            if key not in self._cost:
                self._cost[key] = sent_cost(w, h, L, m)
            out[i] = self._cost[key]
        return out

    def oracle(self) -> np.ndarray:
        """Per record: the smallest labeled size with the record's best score."""
        sides = np.empty(len(self.records))
        for i, rec in enumerate(self.records):
            best = max(rec.scores)
            options = [r for r, s in zip(rec.resolutions, rec.scores) if s >= best - 1e-12]
            sides[i] = min(options)  # cost grows with the long side under every cost model
        return sides


def summarise(score: np.ndarray, cost: np.ndarray, native_score: np.ndarray, native_cost: np.ndarray,
              idx: np.ndarray | None = None) -> tuple[float, float]:
    """(retention, savings) over the records ``idx`` (all when None)."""
    if idx is not None:
        score, cost, native_score, native_cost = score[idx], cost[idx], native_score[idx], native_cost[idx]
    ns = native_score.sum()
    return (float(score.sum() / ns) if ns > 0 else float("nan"), float(1 - cost.sum() / native_cost.sum()))


def doc_bootstrap(docs: Sequence[str], fn: Callable[[np.ndarray], tuple[float, float]], *, n_boot: int = 500,
                  seed: int = 0) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% intervals of ``fn(record indices)`` (retention, savings) resampling documents."""
    rng = np.random.default_rng(seed)
    docs = np.asarray(docs)
    uniq = np.unique(docs)
    groups = [np.flatnonzero(docs == d) for d in uniq]
    ret, sav = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([groups[k] for k in pick])
        r, s = fn(idx)
        ret.append(r)
        sav.append(s)
    return ((float(np.nanpercentile(ret, 2.5)), float(np.nanpercentile(ret, 97.5))),
            (float(np.percentile(sav, 2.5)), float(np.percentile(sav, 97.5))))
