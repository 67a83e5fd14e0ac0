"""The synthetic page generator: deterministic pages whose answers sit where the metadata says."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from cares_integrations.training.anls import anls
from cares_integrations.training.synthetic import (
    PAGE_SIZES,
    SyntheticPage,
    generate_page,
    generate_pages,
    read_dataset,
    write_dataset,
)

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract binary not installed")


@pytest.fixture(scope="module")
def pages() -> list[SyntheticPage]:
    return generate_pages(8, seed=11)


def test_deterministic_for_a_seed(pages):
    again = generate_pages(3, seed=11)
    for a, b in zip(pages[:3], again):  # page i depends only on (seed, i)
        assert a.id == b.id
        assert a.image.tobytes() == b.image.tobytes()
        assert a.questions == b.questions
    other = generate_page(seed=12, index=0)
    assert other.image.tobytes() != pages[0].image.tobytes() or other.questions != pages[0].questions


def test_page_sizes_and_dpi(pages):
    for p in pages:
        w_in, h_in = PAGE_SIZES[p.page_size]
        assert p.image.size == (round(w_in * p.dpi), round(h_in * p.dpi))
        assert p.image.mode == "RGB"
    fixed = generate_page(seed=0, index=1, dpi=200, page_size="letter")
    assert fixed.image.size == (1700, 2200)


def test_questions_are_well_formed(pages):
    for p in pages:
        assert 1 <= len(p.questions) <= 6
        w, h = p.image.size
        seen = set()
        for q in p.questions:
            anchors = re.findall(r'"([^"]+)"', q.question)
            assert anchors, q.question  # every question names its anchor in quotes
            assert q.answers and all(a.strip() for a in q.answers)
            assert any(ch.isdigit() for ch in q.answers[0]) or q.kind == "field"
            l, t, r, b = q.bbox
            assert 0 <= l < r <= w and 0 <= t < b <= h
            assert q.span_px > 0
            assert q.kind in {"field", "table", "chart", "after", "footnote"}
            assert q.role in {"heading", "body", "small", "fine"}
            assert q.question not in seen  # no duplicate question on a page
            seen.add(q.question)


def test_answer_sizes_vary_within_and_across_pages(pages):
    roles = {q.role for p in pages for q in p.questions}
    assert {"heading", "fine"} <= roles
    spread = [max(q.span_px for q in p.questions) / min(q.span_px for q in p.questions) for p in pages]
    assert max(spread) > 3  # a heading and fine print on one page
    points = [q.span_px * 72 / p.dpi for p in pages for q in p.questions]
    assert min(points) < 7.5 and max(points) > 12


def test_answer_pixels_are_inked(pages):
    for p in pages:
        gray = p.image.convert("L")
        for q in p.questions:
            crop = gray.crop(q.bbox)
            assert crop.getextrema()[0] < 128, (p.id, q)


@needs_tesseract
def test_answers_appear_at_their_bbox():
    pytesseract = pytest.importorskip("pytesseract")
    page = generate_page(seed=0, index=4, dpi=200, page_size="letter")
    chosen = [q for q in page.questions if q.role in ("heading", "body")][:2]
    assert chosen
    for q in chosen:
        l, t, r, b = q.bbox
        pad = int(q.span_px * 0.4)
        crop = page.image.convert("L").crop((l - pad, t - pad, r + pad, b + pad))
        text = pytesseract.image_to_string(crop, config="--psm 7").strip()
        assert anls(text, q.answers) >= 0.85, (q, text)


def test_dataset_round_trip(tmp_path, pages):
    jsonl = write_dataset(pages[:3], tmp_path / "ds")
    assert jsonl == tmp_path / "ds" / "samples.jsonl"
    rows = read_dataset(tmp_path / "ds")
    assert len(rows) == sum(len(p.questions) for p in pages[:3])
    assert len({r["id"] for r in rows}) == len(rows)
    raw = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(not r["image"].startswith("/") for r in raw)  # relative paths: the folder can move
    by_page = {p.id: p for p in pages[:3]}
    for row in rows:
        page = by_page[row["page_id"]]
        k = int(row["id"].rsplit("-q", 1)[1])
        q = page.questions[k]
        assert row["question"] == q.question and row["answers"] == q.answers
        assert tuple(row["bbox"]) == q.bbox and row["span_px"] == q.span_px
        with Image.open(row["image"]) as img:
            assert img.size == page.image.size == tuple(row["image_size"])
            assert img.convert("RGB").tobytes() == page.image.tobytes()


def test_read_dataset_names_bad_lines(tmp_path):
    with pytest.raises(FileNotFoundError, match="samples.jsonl"):
        read_dataset(tmp_path)
    (tmp_path / "samples.jsonl").write_text('{"id": "a", "image": "x.png", "question": "q"}\n')
    with pytest.raises(ValueError, match="answers"):
        read_dataset(tmp_path)
    (tmp_path / "samples.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=":1:"):
        read_dataset(tmp_path)


@pytest.mark.parametrize("kwargs", [dict(dpi=10), dict(page_size="b5"), dict(max_questions=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        generate_page(**kwargs)
