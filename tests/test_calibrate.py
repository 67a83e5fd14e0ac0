"""Calibration with a guarantee: coverage in simulation, mixed resolution lists, and the whole
loop (labels from a recording LangChain chat model -> ``cares calibrate`` -> ``load_router``)."""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from cares_integrations import CalibratedRouter, FixedRouter, load_router
from cares_integrations.cli import main as cares_main
from cares_integrations.training.calibrate import (
    CalibrationTable,
    calibrate,
    hb_pvalues,
    select_operating_point,
    wsr_pvalues,
)
from cares_integrations.training.evaluate import sent_cost
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


def _true_retention(pop: CalibrationTable, scale: float | None, floor: int | None) -> float:
    if scale is None:
        return 1.0
    sent = pop.scores[np.arange(pop.n), pop.sent_index(scale, floor)]
    return float(sent.mean() / pop.scores[:, -1].mean())


@pytest.mark.parametrize("method,draws", [("wsr", 60), ("hb", 20)])
def test_guarantee_holds_in_simulation(method, draws):
    rng = np.random.default_rng(1)
    pop = _population(20000, rng)
    target, confidence, n = 0.95, 0.9, 400
    covered, naive_covered, savings = 0, 0, []
    for _ in range(draws):
        sample = pop.subset(rng.choice(pop.n, n, replace=False))
        found = select_operating_point(sample, target, confidence, method=method)
        covered += _true_retention(pop, found["scale"], found["floor"]) >= target
        savings.append(found["sample_savings"])
        naive = found["best_on_sample"]  # the cheapest point that reaches the target on the sample
        naive_covered += _true_retention(pop, naive["scale"], naive["floor"]) >= target
    # the guarantee: at least `confidence` of the draws keep the target on the population
    assert covered / draws >= confidence, (covered, draws)
    # picking on the sample without the test does not hold: the check above could fail
    assert naive_covered / draws < 0.75, naive_covered
    # and the certified point is not "send everything as is"
    if method == "wsr":
        assert np.mean(savings) > 0.3, np.mean(savings)


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


LEGIBLE_PX = 9.0


class ReadingChat(BaseChatModel):
    """A recording fake VLM: it answers right only when the answer's text, at the size of the
    image it received, is at least ``LEGIBLE_PX`` tall."""

    facts: dict = {}
    calls: list = []
    lock: Any = None

    def model_post_init(self, __context: Any) -> None:
        self.calls = []
        self.lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "reading-fake"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        content = messages[0].content
        url = content[0]["image_url"]["url"]
        size = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size
        question = content[1]["text"].splitlines()[0]
        with self.lock:
            self.calls.append((size, question))
        answer, span_px, native_long = self.facts[question]
        legible = span_px * max(size) / native_long >= LEGIBLE_PX
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer if legible else "unreadable"))])


def test_calibrate_langchain_labels_end_to_end(tmp_path, capsys):
    folder = tmp_path / "pages"
    pages = generate_pages(4, seed=11, dpi=100, max_questions=6)
    write_dataset(pages, folder)
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    facts = {s["question"]: (s["answers"][0], s["span_px"], max(s["image_size"])) for s in samples}
    chat = ReadingChat(facts=facts)
    labels = tmp_path / "labels.jsonl"
    label_dataset(folder, LangChainChatTarget(chat, max_concurrency=4, image_format="JPEG"),
                  resolutions=(384, 512, 768, 1100),
                  out_path=labels, progress=False)
    assert chat.calls and {max(size) for size, _ in chat.calls} <= {384, 512, 768, 1100}
    records = load_labels(labels)

    out = tmp_path / "calibrated"
    rc = cares_main(["calibrate", "--labels", str(labels), "--dataset", str(folder), "--router", "default",
                     "--retention", "0.8", "--confidence", "0.8", "--out", str(out),
                     "--cost-target", "openai:gpt-4o"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "guarantee: with probability >= 0.8, retention >= 0.8" in printed and "langchain:reading-fake" in printed
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["base"] == "default" and saved["report"]["cost_target"] == "openai:gpt-4o"
    assert saved["report"]["n"] == len(records)

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

