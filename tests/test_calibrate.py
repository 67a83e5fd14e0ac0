"""Calibration with a guarantee: coverage in simulation, mixed resolution lists, and the whole
loop (labels from a recording LangChain chat model -> ``cares calibrate`` -> ``load_router``)."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL_PAGES, render_real_pages
from langchain_core.messages import BaseMessage
from langchain_helpers import RecordingChatModel
from PIL import Image

from cares_integrations import CalibratedRouter, FixedRouter, load_router
from cares_integrations.cli import main as cares_main
from cares_integrations.training.calibrate import (
    DEFAULT_SCALES,
    CalibrationTable,
    calibrate,
    hb_pvalues,
    select_operating_point,
    wsr_pvalues,
)
from cares_integrations.training.evaluate import credited_score, sent_cost
from cares_integrations.training.labeling import LabelRecord, label_dataset, load_labels
from cares_integrations.training.synthetic import generate_pages, write_dataset
from cares_integrations.training.targets import LangChainChatTarget

GRID = [384, 512, 640, 768, 1024, 1280]
PAGE = (1275, 1650)


def _population(n: int, rng: np.random.Generator) -> CalibrationTable:
    """Pages whose question needs a size drawn around 700 px; the base router sees it with noise
    and a 10% bias; 10% of questions are never answered; the reader is right at or above the need."""
    need = np.exp(rng.normal(np.log(700), 0.35, n))
    base = need * np.exp(rng.normal(0.0, 0.25, n)) * 1.1
    answerable = rng.random(n) < 0.9
    cols = np.array(GRID + [max(PAGE)], dtype=np.float64)
    scores = (answerable[:, None] & (cols[None, :] >= need[:, None])).astype(np.float64)
    costs = np.tile([float(sent_cost(*PAGE, int(c))) for c in cols], (n, 1))
    return CalibrationTable(GRID, scores, costs, base, np.full(n, max(PAGE)))


def _fluky_population(n: int, rng: np.random.Generator) -> CalibrationTable:
    """A weaker, Tesseract-like reader on pages of two sizes (850 x 1100 and 1275 x 1650): partial
    ANLS credit that rises from 0.6x to 1x the size a question needs, flukes (8% of reads score half,
    at any size, so the score is not monotone in size), 15% of questions never answered; the base
    router sees the need with more noise and no bias."""
    small = rng.random(n) < 0.5
    pages = np.where(small[:, None], [850, 1100], [1275, 1650])
    native = pages.max(axis=1)
    need = np.exp(rng.normal(np.log(650), 0.45, n))
    base = need * np.exp(rng.normal(0.0, 0.3, n))
    sides = np.minimum(np.array(GRID + [10 ** 6], dtype=np.float64)[None, :], native[:, None])
    scores = np.clip((sides / need[:, None] - 0.6) / 0.4, 0.0, 1.0)
    scores *= np.where(rng.random(scores.shape) < 0.08, 0.5, 1.0)
    scores *= (rng.random(n) < 0.85)[:, None]
    over = np.array(GRID)[None, :] >= native[:, None]  # sizes at or above a page send it as is
    scores[:, :-1] = np.where(over, scores[:, -1:], scores[:, :-1])
    cost_of = {(w, h, int(L)): float(sent_cost(w, h, int(L))) for w, h in ((850, 1100), (1275, 1650))
               for L in GRID + [1100, 1650]}
    costs = np.array([[cost_of[(int(w), int(h), int(min(L, max(w, h))))] for L in GRID + [1650]] for w, h in pages])
    return CalibrationTable(GRID, scores, costs, base, native)


def _true_retention(pop: CalibrationTable, scale: float | None, floor: int | None) -> float:
    if scale is None:
        return 1.0
    sent = pop.scores[np.arange(pop.n), pop.sent_index(scale, floor)]
    return float(sent.mean() / pop.scores[:, -1].mean())


def _cheapest_on_sample(sample: CalibrationTable, target: float) -> tuple[float, int]:
    """The cheapest (scale, floor) of a rich family (every floor beside every scale) whose retention
    on the sample reaches ``target``: what picking on the sample without a test would choose."""
    rows = np.arange(sample.n)
    native = sample.scores[:, -1].mean()
    best = (float("inf"), 4.0, 0)
    for floor in [0, *sample.grid]:
        for scale in DEFAULT_SCALES:
            idx = sample.sent_index(scale, floor)
            cost = float(sample.costs[rows, idx].sum())
            if sample.scores[rows, idx].mean() / native >= target and cost < best[0]:
                best = (cost, scale, floor)
    return best[1], best[2]


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k)."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


SIMULATIONS = [  # population, method, retention, confidence, sample size, draws
    (_population, "wsr", 0.95, 0.9, 400, 60),
    (_population, "wsr", 0.97, 0.8, 300, 60),
    (_population, "hb", 0.95, 0.9, 400, 20),
    (_fluky_population, "wsr", 0.9, 0.9, 400, 60),
    (_fluky_population, "wsr", 0.95, 0.8, 600, 40),
]


@pytest.mark.parametrize("population,method,target,confidence,n,draws", SIMULATIONS,
                         ids=[f"{p.__name__[1:]}-{m}-R{r}-C{c}" for p, m, r, c, _, _ in SIMULATIONS])
def test_guarantee_holds_in_simulation(population, method, target, confidence, n, draws):
    """Calibrate on many samples drawn from one large population and check, on the population
    itself, that the chosen point keeps the target in at least ``confidence`` of the draws (up to
    binomial noise in the number of draws), and that the check could fail."""
    rng = np.random.default_rng(1)
    pop = population(20000, rng)
    covered, naive_covered, kept, savings = 0, 0, [], []
    for _ in range(draws):
        sample = pop.subset(rng.choice(pop.n, n, replace=False))
        found = select_operating_point(sample, target, confidence, method=method, seed=int(rng.integers(1 << 30)))
        true = _true_retention(pop, found["scale"], found["floor"])
        covered += true >= target
        kept.append(true)
        savings.append(found["sample_savings"])
        naive = _cheapest_on_sample(sample, target)  # picked on the sample, without a test
        naive_covered += _true_retention(pop, *naive) >= target
    # the guarantee: coverage >= confidence. If the method's true coverage were exactly `confidence`,
    # seeing `covered` or fewer would happen with this probability; below 1% the guarantee is broken.
    assert _binomial_tail(covered, draws, confidence) >= 0.01, (covered, draws)
    # picking on the sample without the test does not hold: the population can catch a bad method
    assert naive_covered / draws < confidence - 0.15, (naive_covered, draws)
    # and the certified point is not "send everything as is"
    if method == "wsr":
        assert np.mean(savings) > 0.3 and np.median(kept) < 1.0, (np.mean(savings), np.median(kept))


def test_pvalues_are_valid_under_the_null():
    """At the boundary of the null (mean exactly m0), p <= a happens at most a of the time."""
    rng = np.random.default_rng(0)
    m0 = 0.5
    x = (rng.random((300, 2000)) < m0).astype(float)
    for p in (wsr_pvalues(x, m0, 0.05), hb_pvalues(x, m0)):
        assert (p <= 0.05).mean() <= 0.05 + 0.015
    far = (rng.random((300, 50)) < 0.35).astype(float)  # a clearly lower mean is rejected
    assert (wsr_pvalues(far, m0, 0.05) <= 0.05).all() and (hb_pvalues(far, m0) <= 0.05).all()


def _record(i: int, resolutions: list[int], need: int, answerable: bool = True) -> LabelRecord:
    scores = [1.0 if answerable and r >= need else 0.0 for r in resolutions]
    return LabelRecord(id=str(i), image=f"p{i}.png", question="What is the total?", answers=["42"],
                       target="ocr:ppocr", resolutions=resolutions, predictions=["42" if s else "" for s in scores],
                       scores=scores, label=0, label_resolution=resolutions[0],
                       extra={"native_size": [1275, 1650] if resolutions[-1] == 1650 else [1000, 1400]})


def test_mixed_resolution_lists_are_accepted():
    rng = np.random.default_rng(3)
    records = []
    for i in range(600):
        resolutions = [384, 512, 768, 1024, 1650] if i % 2 else [384, 640, 768, 896, 1400]
        records.append(_record(i, resolutions, int(rng.choice([384, 512, 640, 768])), answerable=i % 10 != 0))
    router, report = calibrate(records, "fixed:4000", retention=0.95, confidence=0.9,
                               base_long_sides=[600.0] * len(records))
    assert report.grid == [384, 512, 640, 768, 896, 1024]
    assert any("different resolution lists" in n for n in report.notes)
    assert report.n == 600 and report.reader == "ocr:ppocr"
    assert report.scale is not None and report.sample_retention >= 0.95 and report.sample_savings > 0.5
    # every size sent is a grid size or the page itself
    assert router.long_side_for(600.0, 1650) in report.grid + [1650]
    assert report.best_fixed["long_side"] == 768  # every question is read at 768, nothing smaller


def test_bad_arguments_raise_clear_errors():
    records = [_record(i, [384, 768, 1650], 384) for i in range(20)]
    with pytest.raises(ValueError, match="retention"):
        calibrate(records, "fixed:768", retention=1.5, base_long_sides=[768.0] * 20)
    with pytest.raises(ValueError, match="confidence"):
        calibrate(records, "fixed:768", retention=0.9, confidence=1.0, base_long_sides=[768.0] * 20)
    zero = [_record(i, [384, 768, 1650], 384, answerable=False) for i in range(20)]
    with pytest.raises(ValueError, match="retention is undefined"):
        calibrate(zero, "fixed:768", retention=0.9, base_long_sides=[768.0] * 20)
    with pytest.raises(ValueError, match="not an already calibrated"):
        calibrate(records, CalibratedRouter(FixedRouter(768), scale=1, floor=0, grid=[384]), retention=0.9,
                  base_long_sides=[768.0] * 20)


LEGIBLE_PX = 6.0


def reading_chat(facts: dict) -> RecordingChatModel:
    """The tests' recording chat model as a fake VLM that answers from the image it received: the
    right answer only when the answer's text, at that image's size, is at least ``LEGIBLE_PX`` tall
    (``facts``: question -> (answer, text height at the page's size, page long side))."""

    def respond(messages: list[BaseMessage]) -> str:
        content = messages[0].content
        url = content[0]["image_url"]["url"]
        size = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size
        answer, span_px, native_long = facts[content[1]["text"].splitlines()[0]]
        return answer if span_px * max(size) / native_long >= LEGIBLE_PX else "unreadable"

    return RecordingChatModel(respond=respond)


def _received(chat: RecordingChatModel) -> list[tuple[tuple[int, int], str]]:
    """(image size, question) of every call the recording chat model got."""
    out = []
    for messages in chat.received:
        content = messages[0].content
        data = base64.b64decode(content[0]["image_url"]["url"].split(",", 1)[1])
        out.append((Image.open(io.BytesIO(data)).size, content[1]["text"].splitlines()[0]))
    return out


def test_calibrate_langchain_labels_end_to_end(tmp_path, capsys):
    folder = tmp_path / "pages"
    pages = generate_pages(8, seed=11, dpi=100, max_questions=6)
    write_dataset(pages, folder)
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    facts = {s["question"]: (s["answers"][0], s["span_px"], max(s["image_size"])) for s in samples}
    chat = reading_chat(facts)
    labels = tmp_path / "labels.jsonl"
    label_dataset(folder, LangChainChatTarget(chat, max_concurrency=4, image_format="JPEG"),
                  resolutions=(384, 512, 768, 1100),
                  out_path=labels, progress=False)
    records = load_labels(labels)
    calls = _received(chat)
    # the model was asked every question at every labeled size, and its answers are the labels
    assert sorted((max(size), q) for size, q in calls) == sorted(
        (r, rec.question) for rec in records for r in rec.resolutions)
    assert any(0 < sum(rec.scores) < len(rec.scores) for rec in records)  # the size mattered

    out = tmp_path / "calibrated"
    rc = cares_main(["calibrate", "--labels", str(labels), "--dataset", str(folder), "--router", "default",
                     "--retention", "0.8", "--confidence", "0.8", "--out", str(out),
                     "--cost-target", "qwen2.5-vl"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "guarantee: with probability >= 0.8, retention >= 0.8" in printed and "langchain:recording" in printed
    assert f"{len(records)} samples" in printed and "tokens saved" in printed
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["base"] == "default" and saved["report"]["cost_target"] == "qwen2.5-vl"
    assert saved["report"]["n"] == len(records) and saved["report"]["unit"] == "tokens"
    assert saved["report"]["scale"] is not None and saved["report"]["sample_savings"] > 0  # a point was certified
    assert isinstance(saved["report"]["n_needed"], int)

    router = load_router(out)
    assert isinstance(router, CalibratedRouter) and router.base.name == "text-scale"
    decisions = router.route_batch([str(folder / r.image) for r in records], [r.question for r in records])
    allowed = set(router.grid) | {max(d.original_size) for d in decisions}
    assert {d.long_side for d in decisions} <= allowed
    # the decisions are the ones the calibration scored: same retention on the sample
    kept = []
    for rec, d in zip(records, decisions):
        res = rec.resolutions
        k = max(i for i, r in enumerate(res) if r <= d.long_side) if d.long_side < max(d.original_size) else -1
        kept.append(rec.scores[k])
    native = np.mean([r.scores[-1] for r in records])
    assert np.mean(kept) / native == pytest.approx(saved["report"]["sample_retention"])


def test_calibrated_folder_round_trip_and_errors(tmp_path):
    router = CalibratedRouter(load_router("text-scale"), scale=1.5, floor=512, grid=[384, 512, 768],
                              base_source="text-scale", report={"retention": 0.9})
    router.save(tmp_path / "c")
    loaded = load_router(tmp_path / "c", target="openai:gpt-4o")
    assert (loaded.scale, loaded.floor, loaded.grid, loaded.target) == (1.5, 512, [384, 512, 768], "openai:gpt-4o")
    assert loaded.long_side_for(100.0, 2000) == 512 and loaded.long_side_for(600.0, 2000) == 2000
    assert loaded.long_side_for(400.0, 700) == 700  # 768 is above the page: the page as is
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "calibration.json").write_text('{"format": "something-else"}')
    from cares_integrations import CheckpointError

    with pytest.raises(CheckpointError, match="not a CARES calibration"):
        load_router(tmp_path / "bad")
    with pytest.raises(ValueError, match="base_source"):
        CalibratedRouter(FixedRouter(768), scale=1, floor=0, grid=[384]).save(tmp_path / "x")



@pytest.fixture(scope="module")
def real_pages(tmp_path_factory) -> Path:
    """The real-page fixture's pages, rendered where its labels' image paths point."""
    return render_real_pages(tmp_path_factory.mktemp("real_pages"))


def test_calibrate_ppocr_labels_of_real_pages_with_the_cli(real_pages, tmp_path, capsys):
    """The PP-OCR reader's labels of the real-page fixture (mixed resolution lists: each page's own
    long side last) through ``cares calibrate --router default``; 16 questions are too few for a
    guarantee at 0.9, so the calibrated router sends pages as they are and says how many it needs."""
    labels = REAL_PAGES / "labels-ppocr.jsonl.gz"
    records = load_labels(labels)
    assert {r.target for r in records} == {"ocr:ppocr"} and len({tuple(r.resolutions) for r in records}) == 2
    out = tmp_path / "cal"
    rc = cares_main(["calibrate", "--labels", str(labels), "--dataset", str(real_pages), "--router", "default",
                     "--retention", "0.9", "--confidence", "0.8", "--out", str(out), "--cost-target", "qwen2.5-vl"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "retention >= 0.9" in printed and "ocr:ppocr" in printed and "16 samples" in printed
    report = json.loads((out / "calibration.json").read_text())["report"]
    assert report["n"] == 16 and report["unit"] == "tokens" and report["grid"] == [384, 512, 640, 768, 896, 1024,
                                                                                      1280, 1536]
    assert report["scale"] is None and report["sample_savings"] == 0.0
    assert report["best_fixed"]["n_needed"] > 16 and f"needs about {report['best_fixed']['n_needed']}" in printed
    router = load_router(out)
    decisions = router.route_batch([str(real_pages / r.image) for r in records], [r.question for r in records])
    assert all(d.long_side == max(d.original_size) for d in decisions)  # nothing certified: pages as is


def test_calibrate_on_the_corpus_ppocr_train_split_holds_on_the_other_splits(tmp_path):
    """The checked-in corpus labels of the PP-OCR reader: calibrate the default router on the train
    split (its long sides from the benchmarks' cache, so no page is needed), save, load, and score
    the loaded router's sizes on the validation and test splits with the shared crediting rule."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from _quality import Scorer, cached_sides, load_reader_labels, load_router_sides, page_size, summarise

    records = load_reader_labels()["ppocr"]
    sides = load_router_sides()
    train = [r for r in records if r.extra["split"] == "train"]
    held = [r for r in records if r.extra["split"] != "train"]
    target, confidence = 0.9, 0.9
    _, report = calibrate(train, "default", retention=target, confidence=confidence, cost_target="qwen2.5-vl",
                          sizes=[page_size(r) for r in train], base_long_sides=list(cached_sides(sides, "default", train)),
                          out_dir=tmp_path / "cal")
    assert report.n == len(train) > 300 and report.reader == "ocr:ppocr"
    assert report.scale is not None and report.sample_retention >= target and report.sample_savings > 0.5
    assert "with probability >= 0.9, retention >= 0.9" in report.summary()
    assert f"{len(train)} samples" in report.summary() and "sample size needed" in report.summary()
    router = load_router(tmp_path / "cal")
    assert isinstance(router, CalibratedRouter) and (router.scale, router.floor) == (report.scale, report.floor)
    scorer = Scorer(held)
    sent = np.array([router.long_side_for(L, n) for L, n in zip(cached_sides(sides, "default", held), scorer.native)],
                    dtype=float)
    kept, saved = summarise(scorer.credit(sent), scorer.costs(sent, "qwen2.5-vl"), scorer.native_scores,
                            scorer.costs(scorer.native.astype(float), "qwen2.5-vl"))
    assert kept >= target and saved > 0.5, (kept, saved)


@pytest.fixture(scope="module")
def tiny_gate(tmp_path_factory) -> Path:
    """A gate over the tiny Idefics3 of tests/tiny_models.py (random head, default bins)."""
    torch = pytest.importorskip("torch")
    from tiny_models import tiny_idefics3

    from cares_integrations.routers.gate import GateHead, ProxyBackbone, save_gate

    backbone = ProxyBackbone.from_pretrained(str(tiny_idefics3()), device="cpu")
    config = backbone.gate_config(hidden_dim=16)
    torch.manual_seed(0)
    head = GateHead(config.in_dim, 16, config.n_classes)
    with torch.no_grad():
        head[3].weight.mul_(20)  # spread the logits so pages get different sizes
    folder = tmp_path_factory.mktemp("gate")
    save_gate(folder, config, head.eval())
    return folder


@pytest.mark.parametrize("source", ["default", "text-scale", "learned-default", "gate"])
def test_every_router_kind_calibrates_and_loads(source, real_pages, tiny_gate, tmp_path):
    """Text-scale, learned and gate routers calibrate on the real pages' PP-OCR labels; the folder
    loads back through ``load_router`` and routes exactly as the fitted router does."""
    src = str(tiny_gate) if source == "gate" else source
    labels = REAL_PAGES / "labels-ppocr.jsonl.gz"
    records = load_labels(labels)
    fitted, report = calibrate(labels, src, retention=0.7, confidence=0.5, dataset_dir=real_pages,
                               out_dir=tmp_path / "cal")
    # a scale of the base router's request (at 0.6 the fixed 512 px is cheaper and certified)
    assert report.scale is not None and report.scale > 0 and report.sample_retention >= 0.7
    loaded = load_router(tmp_path / "cal")
    assert isinstance(loaded, CalibratedRouter) and loaded.base.name == fitted.base.name
    assert (loaded.scale, loaded.floor, loaded.grid) == (fitted.scale, fitted.floor, fitted.grid)
    paths, questions = [str(real_pages / r.image) for r in records], [r.question for r in records]
    got = [d.long_side for d in loaded.route_batch(paths, questions)]
    assert got == [d.long_side for d in fitted.route_batch(paths, questions)]
    assert set(got) <= set(report.grid) | {max(r.extra["native_size"]) for r in records}
    # the sizes it sends are the ones the calibration scored: the same retention on the sample
    kept = [credited_score(r.resolutions, r.scores, max(r.extra["native_size"]), L) for r, L in zip(records, got)]
    assert np.mean(kept) / np.mean([r.scores[-1] for r in records]) == pytest.approx(report.sample_retention)
