"""Evaluation: classifier metrics, policies scored from labels, router evaluation and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from cares_integrations.core.router import Prediction, Router
from cares_integrations.routers.fixed import FixedRouter
from cares_integrations.training.evaluate import (
    classifier_metrics,
    evaluate_labels,
    evaluate_long_sides,
    evaluate_router,
    oracle_policy,
    threshold_sweep,
)
from cares_integrations.training.labeling import LabelRecord

RES = [384, 768, 1024]


def rec(i, scores, label=None):
    from cares_integrations.training.labeling import label_for_scores

    label = label_for_scores(scores) if label is None else label
    return LabelRecord(id=f"s{i}", image=f"p{i}.png", question="q", answers=["a"], target="t",
                       resolutions=list(RES), predictions=["x"] * len(RES), scores=list(scores),
                       label=label, label_resolution=RES[label])


def test_classifier_metrics_hand_checked():
    p = [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]]
    m = classifier_metrics(p, [0, 1, 1, 1])
    assert m.accuracy == pytest.approx(0.75)
    assert m.confusion == [[1, 0], [1, 2]]
    assert m.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    # each sample alone in its bin: |1-.9| + |0-.6| + |1-.8| + |1-.7| over 4
    assert m.ece == pytest.approx(0.3)
    assert sum(row[2] for row in m.reliability) == 4


def test_classifier_metrics_perfectly_calibrated_and_bad_input():
    m = classifier_metrics([[1.0, 0.0], [0.0, 1.0]], [0, 1])
    assert m.accuracy == 1.0 and m.ece == 0.0 and m.macro_f1 == 1.0
    with pytest.raises(ValueError, match="class indices"):
        classifier_metrics([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="shape"):
        classifier_metrics([[0.5, 0.5]], [0, 1])


SQUARE = [(1024, 1024), (1024, 1024)]
RECORDS = [rec(0, (1.0, 1.0, 1.0)), rec(1, (0.0, 0.5, 1.0))]


def test_policies_on_hand_checked_pixels():
    report = evaluate_labels(RECORDS, sizes=SQUARE)
    native = report.policy("native")
    assert native.retention == 1.0 and native.tokens_saved == 0.0 and native.unit == "pixels"
    f384 = report.policy("fixed-384")
    assert f384.mean_score == 0.5 and f384.retention == 0.5
    assert f384.tokens_saved == pytest.approx(1 - 384 ** 2 / 1024 ** 2)
    oracle = report.policy("oracle")
    assert oracle.retention == 1.0
    assert oracle.tokens == 384 ** 2 + 1024 ** 2
    assert report.policy("labels").tokens == oracle.tokens
    assert report.label_distribution == [1, 0, 1]
    assert "oracle" in report.table() and "fixed-768" in report.table()


def test_in_between_sizes_are_credited_with_the_next_smaller_labeled_resolution():
    # 896 px is credited with the 768-px score (a lower bound) and pays for 896 px; the optimistic
    # side of the bracket credits the 1024-px score.
    r = evaluate_long_sides(RECORDS, SQUARE, [384, 896], name="c")
    assert r.mean_score == 0.75 and r.tokens == 384 ** 2 + 896 ** 2
    assert r.retention == 0.75 and r.retention_upper == 1.0
    # a long side above the page is capped at the page; above the largest resolution scores as it
    r = evaluate_long_sides([rec(0, (0.0, 0.2, 0.7))], [(2000, 1000)], [5000])
    assert r.mean_score == pytest.approx(0.7) and r.mean_long_side == 2000 and r.tokens_saved == 0.0


def test_probabilities_add_discrete_continuous_sweep_and_classifier():
    p = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]
    report = evaluate_labels(RECORDS, sizes=SQUARE, probabilities=p)
    assert report.policy("discrete").mean_long_side == pytest.approx((384 + 768) / 2)
    assert report.policy("continuous").mean_long_side == pytest.approx((384 + 896) / 2)
    assert report.classifier.accuracy == 0.5
    assert len(report.sweep) == 21
    assert report.sweep[0].mean_long_side == 384  # t=0: the smallest bin everywhere
    assert report.sweep[-1].retention == 1.0
    with pytest.raises(ValueError, match="shape"):
        threshold_sweep(RECORDS, SQUARE, [[1.0, 0.0]])


def test_token_costs_for_a_real_target():
    report = evaluate_labels(RECORDS, sizes=SQUARE, target="openai:gpt-4o")
    native = report.policy("native")
    assert native.unit == "tokens"
    from cares_integrations.core.tokens import visual_tokens

    assert native.native_tokens == 2 * visual_tokens("openai:gpt-4o", 1024, 1024)
    assert 0 < report.policy("oracle").tokens_saved < report.policy("fixed-384").tokens_saved


scores_st = st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.8, 0.9, 1.0]), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.lists(st.tuples(scores_st, st.integers(200, 2400), st.integers(200, 2400), st.integers(0, 2)),
                     min_size=1, max_size=8),
    target=st.sampled_from([None, "openai:gpt-4o", "qwen2.5-vl", "anthropic:claude-sonnet-4"]),
)
def test_oracle_saves_at_least_as_much_as_any_policy_at_the_same_or_better_retention(samples, target):
    records = [rec(i, s) for i, (s, _, _, _) in enumerate(samples)]
    sizes = [(w, h) for _, w, h, _ in samples]
    oracle = oracle_policy(records, sizes, target=target)
    policy = evaluate_long_sides(records, sizes, [RES[k] for *_, k in samples], target=target)
    assert oracle.mean_score >= policy.mean_score - 1e-12
    if policy.mean_score >= oracle.mean_score - 1e-12:
        assert oracle.tokens <= policy.tokens
        if oracle.native_tokens:
            assert oracle.tokens_saved >= policy.tokens_saved - 1e-12


# -- routers on a labels file ----------------------------------------------------------------------


class HalfRouter(Router):
    """A router with fixed class probabilities (like a gate): 80% on the first bin."""

    name = "half"

    def _predict(self, images, queries):
        return [Prediction(probabilities=[0.8, 0.1, 0.1]) for _ in images]


@pytest.fixture()
def labels_file(tmp_path):
    lines = []
    for i, scores in enumerate([(1.0, 1.0, 1.0), (0.0, 1.0, 1.0), (0.0, 0.5, 1.0), (1.0, 1.0, 1.0)]):
        Image.new("RGB", (850, 1100), "white").save(tmp_path / f"p{i}.png")
        lines.append(json.dumps(rec(i, scores).to_json()))
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_fixed_router(labels_file):
    report = evaluate_router(FixedRouter(768), labels_file, target="openai:gpt-4o", batch_size=3)
    assert report.router is not None and report.router.name == "router (fixed-768)"
    assert report.router.mean_score == pytest.approx(0.875)  # 1, 1, 0.5, 1 at 768
    assert report.classifier is None  # no probabilities
    # GPT-4o: 850x1100 and 593x768 are both 2x2 tiles (765 tokens): 768 px saves nothing ...
    assert report.router.tokens_saved == 0.0 and report.router.native_tokens == 4 * 765
    # ... while 297x384 fits the 512-px low-detail box (85 tokens with detail=low)
    small = evaluate_router(FixedRouter(384), labels_file, target="openai:gpt-4o")
    assert small.router.tokens == 4 * 85 and small.router.tokens_saved == pytest.approx(8 / 9)
    assert small.router.mean_score == pytest.approx(0.5)


def test_evaluate_gate_like_router_and_plots(labels_file, tmp_path):
    report = evaluate_router(HalfRouter(), labels_file, target=None)
    assert report.classifier is not None and report.classifier.accuracy == 0.5  # two labels are 384
    assert report.policy("discrete").mean_long_side == 384
    assert report.router.mean_long_side == 487  # ceil(0.8 * 384 + 0.1 * 768 + 0.1 * 1024)
    paths = report.plot(tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["reliability.png", "savings.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    json.dumps(report.to_dict())  # JSON-ready


def test_router_with_other_bins_gets_a_note(labels_file):
    from cares_integrations.core.policy import ResolutionPolicy

    router = HalfRouter(policy=ResolutionPolicy(bins=(256, 512, 2048)))
    report = evaluate_router(router, labels_file)
    assert report.classifier is None and "differ" in report.notes[0]


def test_missing_pages_are_named(labels_file, tmp_path):
    (tmp_path / "p2.png").unlink()
    with pytest.raises(FileNotFoundError, match="label 's2'"):
        evaluate_labels(labels_file)


def test_retention_is_bracketed_for_in_between_requests():
    from cares_integrations.training.evaluate import evaluate_long_sides
    from cares_integrations.training.labeling import LabelRecord

    def rec(i, scores):
        return LabelRecord.from_json({"id": str(i), "image": "p.png", "question": "q", "answers": ["a"],
                                      "target": "t", "resolutions": [384, 768, 1024], "predictions": ["a"] * 3,
                                      "scores": scores, "label": 0, "label_resolution": 384}, where="test")

    records = [rec(0, [0.0, 1.0, 1.0]), rec(1, [0.0, 0.0, 1.0])]
    sizes = [(1700, 2200), (1700, 2200)]
    # 700 px sits between 384 and 768: credited 384's score (lower bound), optimistic = 768's.
    r = evaluate_long_sides(records, sizes, [700, 900], name="between")
    assert r.retention == pytest.approx(0.0)
    assert r.retention_upper == pytest.approx((1.0 + 1.0) / 2)
    exact = evaluate_long_sides(records, sizes, [768, 1024], name="labeled")
    assert exact.retention == exact.retention_upper == pytest.approx(1.0)
    small_page = evaluate_long_sides([records[0]], [(600, 500)], [600], name="as-is")
    assert small_page.retention_upper == small_page.retention == pytest.approx(1.0)  # sent as is: exact


def _mixed(i, resolutions, scores, label_resolution):
    return LabelRecord(id=f"m{i}", image=f"p{i}.png", question="q", answers=["a"], target="ocr:ppocr",
                       resolutions=resolutions, predictions=["x"] * len(resolutions), scores=scores,
                       label=resolutions.index(label_resolution), label_resolution=label_resolution)


# a letter page at 100 dpi (its own long side 1100 last) and an A4 landscape page at 150 dpi (1754)
MIXED = [_mixed(0, [384, 768, 1100], [0.0, 0.5, 1.0], 1100),
         _mixed(1, [384, 768, 1024, 1536, 1754], [0.0, 0.0, 1.0, 1.0, 1.0], 1024)]
MIXED_SIZES = [(850, 1100), (1754, 1241)]


def test_mixed_resolution_lists_are_credited_with_the_shared_rule():
    # 900 px: the letter page gets its 768 score, the A4 page its 768 score; 1200 px: the letter
    # page is sent as is (its last score), the A4 page gets 1024's; the optimistic side 1536's
    r = evaluate_long_sides(MIXED, MIXED_SIZES, [900, 900])
    assert r.mean_score == pytest.approx(0.25) and r.retention == pytest.approx(0.25)
    assert r.retention_upper == pytest.approx(1.0)
    r = evaluate_long_sides(MIXED, MIXED_SIZES, [1200, 1200])
    assert r.retention == pytest.approx(1.0) and r.tokens == 850 * 1100 + 1200 * 849
    report = evaluate_labels(MIXED, sizes=MIXED_SIZES)
    assert report.resolutions == [384, 768, 1024, 1536]  # each page's own long side is not a fixed size
    assert report.policy("fixed-1024").retention == pytest.approx(0.75)  # the letter page at its 768 score
    assert report.policy("fixed-1536").retention == pytest.approx(1.0)  # the letter page goes as is
    assert report.policy("fixed-768").retention == pytest.approx(0.25)
    oracle = report.policy("oracle")  # each record among its own sizes: 1100 (as is) and 1024
    assert oracle.retention == 1.0 and oracle.mean_long_side == pytest.approx((1100 + 1024) / 2)
    assert report.label_distribution == [0, 0, 1, 0] and report.labels_as_is == 1
    assert any("different resolution lists" in n for n in report.notes)
    # a gate's probabilities over those sizes: the "as is" label of the 1100-px page is the first
    # bin that sends it as is (1536)
    p = [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]]
    report = evaluate_labels(MIXED, sizes=MIXED_SIZES, probabilities=p)
    assert report.classifier.accuracy == 1.0 and report.policy("discrete").retention == pytest.approx(1.0)


def test_checked_in_real_page_labels_evaluate_with_the_cli(tmp_path, capsys):
    """The real-page fixture's labels (both readers; two resolution lists, each page's own long side
    last) through ``cares eval``, with and without the default router, on the rendered pages."""
    from helpers import REAL_PAGES, render_real_pages

    from cares_integrations import load_router
    from cares_integrations.cli import main as cares_main
    from cares_integrations.training.evaluate import credited_score
    from cares_integrations.training.labeling import load_labels

    pages = render_real_pages(tmp_path / "pages")
    for reader in ("ppocr", "tesseract"):
        labels = REAL_PAGES / f"labels-{reader}.jsonl.gz"
        records = load_labels(labels)
        assert len({tuple(r.resolutions) for r in records}) == 2
        sizes = [tuple(r.extra["native_size"]) for r in records]
        report = evaluate_labels(records, sizes=sizes)
        assert report.resolutions == [384, 512, 640, 768, 896, 1024, 1280, 1536]
        native = np.mean([r.scores[-1] for r in records])
        for size in (512, 1280):  # 1280 is above the 1100-px pages: those go as is
            want = np.mean([r.scores[r.resolutions.index(size)] if size in r.resolutions else r.scores[-1]
                            for r in records]) / native
            assert report.policy(f"fixed-{size}").retention == pytest.approx(want)
        json_out = tmp_path / f"{reader}.json"
        rc = cares_main(["eval", "--labels", str(labels), "--dataset", str(pages), "--router", "default",
                         "--json", str(json_out)])
        printed = capsys.readouterr().out
        assert rc == 0 and "router (text-scale)" in printed and "different resolution lists" in printed
        routed = json.loads(json_out.read_text())["router"]
        decisions = load_router("default").route_batch([str(pages / r.image) for r in records],
                                                       [r.question for r in records])
        want = np.mean([credited_score(r.resolutions, r.scores, max(d.original_size), d.long_side)
                        for r, d in zip(records, decisions)]) / native
        assert routed["retention"] == pytest.approx(want) and routed["n"] == 16
