"""The corpus benchmarks' scoring on label records in the corpus schema (synthetic records)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import _quality  # noqa: E402
import bench_quality  # noqa: E402
import calibrate_halves  # noqa: E402
from cares_integrations.training.labeling import LabelRecord  # noqa: E402


def _records(n_docs: int = 6, pages: int = 4, per_page: int = 5, seed: int = 0) -> list[LabelRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_docs):
        for p in range(pages):
            for q in range(per_page):
                native = (1700, 2200)
                res = [384, 512, 640, 768, 1024, 1280, 1536, 2200]
                need = int(rng.choice([384, 512, 640, 768, 1024]))
                scores = [1.0 if r >= need else 0.0 for r in res]
                out.append(LabelRecord(
                    id=f"d{d}-p{p}-q{q}", image=f"pages/d{d}/p{p}.png", question=f"q{q} need {need}", answers=["x"],
                    target="ocr:ppocr", resolutions=res, predictions=[""] * len(res), scores=scores, label=0,
                    label_resolution=384, extra={"doc": f"d{d}", "doc_kind": "paper" if d % 2 else "slides",
                                                 "kind": "body" if q % 2 else "title", "page": p, "split": "test",
                                                 "native_size": list(native)}))
    return out


def test_bench_quality_scores_and_marks_domination():
    records = _records()
    # a router that asks 1.5x the need (keeps everything) and one that asks 1300 px for every page
    sides = {"default": {_quality.sample_key(r): 1.5 * int(r.question.split()[-1]) for r in records},
             "learned-default": {_quality.sample_key(r): 1300.0 for r in records}}
    res = bench_quality.evaluate_reader(records, sides, n_boot=20)
    pol = res["policies"]
    assert pol["native"]["kept"] == 1.0 and pol["native"]["pixels"]["saved"] == 0.0
    assert pol["oracle"]["kept"] == 1.0 and pol["oracle"]["pixels"]["saved"] > pol["default"]["pixels"]["saved"]
    assert pol["fixed-1024"]["kept"] == 1.0
    # fixed 1280 keeps as much as the 1300-px router and saves more: dominated
    assert "fixed-1280" in pol["learned-default"]["dominated_by"]
    lo, hi = pol["default"]["kept_ci"]
    assert lo <= pol["default"]["kept"] <= hi
    assert set(pol["default"]["doc_kind"]) == {"paper", "slides"} and set(pol["default"]["kind"]) == {"body", "title"}


def test_halves_split_each_document():
    records = _records(n_docs=3, pages=4, per_page=2)
    a, b = calibrate_halves.halves(records)
    assert len(a) == len(b) == 12 and not set(a) & set(b)
    for d in ("d0", "d1", "d2"):
        assert {records[i].extra["page"] for i in a if records[i].extra["doc"] == d} == {0, 2}


def test_halves_calibration_on_synthetic_corpus(monkeypatch, capsys):
    records = _records(n_docs=20, pages=8, per_page=6, seed=1)
    sides = {"default": {_quality.sample_key(r): 1.2 * int(r.question.split()[-1]) for r in records}}
    monkeypatch.setattr(calibrate_halves, "load_reader_labels", lambda: {"ppocr": records})
    monkeypatch.setattr(calibrate_halves, "load_router_sides", lambda: sides)
    assert calibrate_halves.main(["--retention", "0.95", "--confidence", "0.8"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 2, out


def test_the_cached_default_long_sides_are_what_the_shipped_router_sends():
    """The benchmark's cached long sides of the default router (every corpus question) are what
    the shipped ``TextScaleRouter`` computes from each page's cached measure: a change of the
    router's defaults without refreshing the cache (``bench_quality.py --pages DIR --refresh
    default``) would leave the published figures stale, and this fails."""
    import refit_text_scale

    records = _quality.load_reader_labels()["ppocr"]
    measures = refit_text_scale.page_measures({r.image for r in records}, None)
    cached = _quality.cached_sides(_quality.load_router_sides(), "default", records)
    assert np.array_equal(cached, refit_text_scale.sides_for(records, measures))


def test_the_refit_reproduces_the_shipped_rules(tmp_path):
    """``refit_text_scale.py`` on the checked-in labels and measures chooses exactly the shipped
    text-scale defaults (docs/quality.md says they are its output)."""
    import refit_text_scale

    from cares_integrations.routers.textscale import (DEFAULT_FLOOR, DEFAULT_KIND_RULES, DEFAULT_MIN_TEXT_PX,
                                                      DEFAULT_TEXT_CAP, KindRule)

    out = tmp_path / "refit.json"
    assert refit_text_scale.main(["--json", str(out)]) == 0
    chosen = json.loads(out.read_text())
    assert (chosen["min_text_px"], chosen["floor"], chosen["text_cap"]) == (DEFAULT_MIN_TEXT_PX, DEFAULT_FLOOR,
                                                                             DEFAULT_TEXT_CAP)
    assert {k: KindRule(**v) for k, v in chosen["kind_rules"].items()} == DEFAULT_KIND_RULES
    kept, saved = chosen["cross_validated"]["ppocr"]
    assert kept >= 0.97 and saved > 0.8
