"""The real-document corpus: question extraction from a real PDF's text layer, provenance, the
build on a checked-in real-page fixture (offline), crop labeling, and the checked-in labels."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cares_integrations.training import corpus as C
from cares_integrations.training.corpus_labels import READERS, crop_box, export_labels, label_corpus, resolutions_for
from cares_integrations.training.labeling import load_labels, relabel

FIXTURE = Path(__file__).parent / "fixtures" / "real_pages"
REFCARD = FIXTURE / "refcard-en-a4.pdf.gz"
REFCARD_PATH = "usr/share/doc/debian-refcard/refcard-en-a4.pdf.gz"

needs_poppler = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")


def _pdf(tmp_path: Path, src: Path = REFCARD) -> Path:
    out = tmp_path / (src.name[:-3])
    out.write_bytes(gzip.decompress(src.read_bytes()))
    return out


def _layer(pdf: Path) -> list[dict]:
    xhtml = subprocess.run(["pdftotext", "-bbox-layout", str(pdf), "-"], check=True, capture_output=True,
                           text=True).stdout
    return C.parse_bbox_layout(xhtml)


@needs_poppler
def test_questions_come_from_the_real_text_layer(tmp_path):
    pages = _layer(_pdf(tmp_path))
    assert len(pages) == 2 and pages[0]["width"] == pytest.approx(841.89, abs=0.5)  # landscape A4, points
    import random

    scale = 150 / 72
    qs = C.questions_for_page(pages[0], doc="refcard", page_no=1, scale=scale, rng=random.Random(0))
    assert len(qs) >= 4
    assert {q.kind for q in qs} <= set(C.QUESTION_KINDS) and "title" in {q.kind for q in qs}
    title = next(q for q in qs if q.kind == "title")
    assert title.answer == "Debian Reference Card"
    text = " ".join(ln.text for ln in pages[0]["lines"]).lower()
    words = [w for ln in pages[0]["lines"] for w in ln.words]
    for q in qs:
        assert text.count(q.answer.lower()) == 1, q  # exactly one place on the page holds the answer
        x0, y0, x1, y1 = q.box
        assert 0 <= x0 < x1 <= pages[0]["width"] * scale + 1 and 0 <= y0 < y1 <= pages[0]["height"] * scale + 1
        inside = [w.text for w in words if w.x0 * scale >= x0 - 1 and w.x1 * scale <= x1 + 1
                  and w.y0 * scale >= y0 - 1 and w.y1 * scale <= y1 + 1]
        assert C._strip(" ".join(inside)).lower().startswith(q.answer.lower()[:5]), (q.answer, inside)
        assert q.text_height_px == pytest.approx((y1 - y0), rel=0.35)
        if q.form == "after":
            anchor = q.question.split('"')[1]
            assert (anchor + " " + q.answer).lower() in text or anchor.lower() in text


def test_no_document_comes_from_a_reserved_package():
    assert len(C.DOCUMENTS) >= 40 and len({d.kind for d in C.DOCUMENTS}) >= 8
    assert not {d.package for d in C.DOCUMENTS} & C.RESERVED_PACKAGES
    assert len({d.doc for d in C.DOCUMENTS}) == len(C.DOCUMENTS)
    with pytest.raises(ValueError, match="reserved"):
        C._fetch_package("pari-doc", Path("/nonexistent"))


def test_licence_comes_from_the_packages_copyright_file():
    refcard = (FIXTURE / "debian-refcard.copyright").read_text()
    assert C.licence_of(refcard, REFCARD_PATH) == "GPL-3+"
    assert C.licence_of(refcard, "usr/share/doc/debian-refcard/lgrlmr.fd") == "LPPL-1.3+"
    xorg = (FIXTURE / "xorg-docs.copyright").read_text()
    assert "MIT/X11" in C.licence_of(xorg, "usr/share/doc/xorg-docs/Xserver/XACE-Spec.pdf.gz")


def test_splits_are_fixed_by_document():
    splits = {d.doc: C.split_for(d.doc) for d in C.DOCUMENTS}
    assert set(splits.values()) == {"train", "validation", "test"}
    assert splits == {d.doc: C.split_for(d.doc) for d in C.DOCUMENTS}  # a hash, not a random draw


def _fake_package(work: Path) -> None:
    """A package root as ``_fetch_package`` leaves it, so the build runs offline."""
    root = work / "pkg" / "debian-refcard"
    (root / REFCARD_PATH).parent.mkdir(parents=True)
    shutil.copyfile(REFCARD, root / REFCARD_PATH)
    shutil.copyfile(FIXTURE / "debian-refcard.copyright", root / "usr/share/doc/debian-refcard/copyright")
    (root / ".version").write_text("12.0")


@needs_poppler
def test_build_records_provenance_pages_and_questions(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    _fake_package(work)
    docs = [C.Document("refcard-plain", "refcard", "debian-refcard", REFCARD_PATH),
            C.Document("refcard-scan", "refcard", "debian-refcard", REFCARD_PATH, degrade=True)]
    summary = C.build(work, out=out, documents=docs, log=lambda m: None)
    assert summary["documents"] == 2 and summary["pages"] == 4
    rows = [json.loads(line) for line in (out / "documents.jsonl").read_text().splitlines()]
    assert rows[0]["md5"] == hashlib.md5(REFCARD.read_bytes()).hexdigest()
    assert rows[0]["package"] == "debian-refcard" and rows[0]["version"] == "12.0"
    assert rows[0]["licence"] == "GPL-3+" and rows[0]["path"] == REFCARD_PATH
    with gzip.open(out / "questions.jsonl.gz", "rt") as fh:
        qs = [json.loads(line) for line in fh]
    assert qs and {q["doc"] for q in qs} == {"refcard-plain", "refcard-scan"}
    from PIL import Image

    for row in rows:
        for page in row["pages"]:
            with Image.open(work / page["image"]) as im:
                assert list(im.size) == page["size"]
                # landscape A4 at the document's dpi: 11.69 in wide
                assert im.width == pytest.approx(11.69 * row["dpi"], abs=2)
    scan = next(r for r in rows if r["doc"] == "refcard-scan")
    assert scan["degraded"] and all(p["degradation"]["jpeg_quality"] in (45, 60, 75) for p in scan["pages"])
    # the same words are asked on both renderings; the scan's boxes moved with its rotation only slightly
    plain = {q["question"]: q for q in qs if q["doc"] == "refcard-plain"}
    for q in qs:
        if q["doc"] == "refcard-scan" and q["question"] in plain and q["dpi"] == plain[q["question"]]["dpi"]:
            assert abs(q["box"][1] - plain[q["question"]]["box"][1]) < 0.02 * q["native_size"][1]
    # a rerun is served from the cache and writes the same questions
    C.build(work, out=out, documents=docs, log=lambda m: None)
    with gzip.open(out / "questions.jsonl.gz", "rt") as fh:
        assert [json.loads(line) for line in fh] == qs


def test_resolutions_end_with_the_native_long_side():
    assert resolutions_for(1100) == [384, 512, 640, 768, 896, 1024, 1100]
    assert resolutions_for(3300)[-2:] == [1536, 3300]
    assert resolutions_for(1024) == [384, 512, 640, 768, 896, 1024]
    assert crop_box([100, 100, 200, 120], 0.5, (400, 500)) == (35, 44, 116, 67)


@needs_poppler
def test_crop_labeling_writes_label_records(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    work, data = tmp_path / "work", tmp_path / "data"
    _fake_package(work)
    C.build(work, out=data, documents=[C.Document("refcard", "refcard", "debian-refcard", REFCARD_PATH)],
            log=lambda m: None)
    with gzip.open(data / "questions.jsonl.gz", "rt") as fh:
        qs = [json.loads(line) for line in fh]
    keep = sorted(qs, key=lambda q: -q["text_height_px"])[:1]  # the largest answer on the page
    with gzip.open(data / "questions.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(q) + "\n" for q in keep))
    label_corpus(work, readers=["ppocr", "tesseract"], data=data, log=lambda m: None)
    counts = export_labels(work, readers=["ppocr", "tesseract"], data=data)
    assert counts == {"ppocr": len(keep), "tesseract": len(keep)} and len(keep) == 1
    for name in ("ppocr", "tesseract"):
        recs = load_labels(data / "labels" / f"{name}.jsonl.gz")
        assert [r.target for r in recs] == [READERS[name]]
        for rec in recs:
            assert rec.resolutions[-1] == max(rec.extra["native_size"]) == 1170  # 100 dpi
            assert len(rec.predictions) == len(rec.scores) == len(rec.resolutions)
            assert set(rec.extra) >= {"kind", "form", "doc", "doc_kind", "split", "answer_box", "text_height_px"}
        assert max(rec.scores[-1] for rec in recs) == 1.0  # the largest text is read at the native size
        assert all(rec.scores[0] <= rec.scores[-1] for rec in recs)


def test_fixture_labels_have_mixed_resolution_lists_and_load():
    for name, target in READERS.items():
        recs = load_labels(FIXTURE / f"labels-{name}.jsonl.gz")
        assert recs and {r.target for r in recs} == {target}
        lists = {tuple(r.resolutions) for r in recs}
        assert len(lists) >= 2  # pages of different native sizes in one file
        for r in recs:
            assert r.resolutions[-1] == max(r.extra["native_size"]) and r.resolutions == sorted(r.resolutions)
            assert r.extra["doc"] in {"debian-refcard-en-a4", "xace-spec"}
        again = relabel(recs, tau=0.5, delta=0.0)
        assert all(a.resolutions == r.resolutions and a.label_resolution in r.resolutions for a, r in zip(again, recs))


def test_fixture_provenance_matches_the_checked_in_files():
    prov = json.loads((FIXTURE / "provenance.json").read_text())
    for entry in prov["files"]:
        assert hashlib.md5((FIXTURE / entry["file"]).read_bytes()).hexdigest() == entry["md5"]
        assert entry["package"] not in C.RESERVED_PACKAGES and entry["licence"]


def test_checked_in_corpus_labels_are_consistent():
    data = C.REPO_DATA
    docs = [json.loads(line) for line in (data / "documents.jsonl").read_text().splitlines()]
    split_of = {d["doc"]: d["split"] for d in docs}
    assert {d["package"] for d in docs}.isdisjoint(C.RESERVED_PACKAGES)
    ids = {}
    for name in READERS:
        recs = load_labels(data / "labels" / f"{name}.jsonl.gz")
        assert recs
        for r in recs:
            assert r.extra["split"] == split_of[r.extra["doc"]]
            assert r.resolutions[-1] == max(r.extra["native_size"])
        ids[name] = {r.id for r in recs}
    assert ids["ppocr"] and ids["tesseract"]


def test_a_fresh_cache_resumes_from_the_exported_labels(tmp_path, monkeypatch):
    """The reads behind exported labels are not read again on a machine without the reads cache."""
    from cares_integrations.training import corpus_labels as CL

    data, work = tmp_path / "data", tmp_path / "work"
    (data / "labels").mkdir(parents=True)
    work.mkdir()
    q = {"id": "q1", "doc": "d", "page": 1, "kind": "body", "form": "after", "question": "?", "answer": "Total 42",
         "box": [10, 20, 90, 30], "text_height_px": 9, "image": "pages/d-1.png", "doc_kind": "manual",
         "split": "test", "dpi": 100, "native_size": [850, 1100], "degraded": False}
    with gzip.open(data / "questions.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(q) + "\n")
    res = resolutions_for(1100)
    row = {"image": q["image"], "answer_box": q["box"], "resolutions": res,
           "predictions": ["" if r < 700 else "Total 42" for r in res]}
    with gzip.open(data / "labels" / "ppocr.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(row) + "\n")

    class Refuse:  # any read would mean the cache was not seeded
        def __getattr__(self, name):
            raise AssertionError("a read was attempted")

    monkeypatch.setattr(CL, "_make_reader", lambda name: Refuse())
    counts = label_corpus(work, readers=["ppocr"], data=data, log=lambda m: None)
    assert counts == {"ppocr": len(res)}
    assert export_labels(work, readers=["ppocr"], data=data) == {"ppocr": 1}
    rec = load_labels(data / "labels" / "ppocr.jsonl.gz")[0]
    assert rec.predictions == row["predictions"] and rec.scores[-1] == 1.0 and rec.scores[0] == 0.0


def test_label_order_reads_the_named_splits_first():
    from cares_integrations.training.corpus_labels import _round_robin

    qs = [{"doc": f"{s}{d}", "image": f"{s}{d}-{p}", "split": s} for s in ("train", "test", "validation")
          for d in range(2) for p in range(3)]
    order = [image for image, _ in _round_robin(qs, ["test", "validation"])]
    assert [i[:-3] for i in order[:6]] == ["test"] * 6 and [i[:-3] for i in order[6:12]] == ["validation"] * 6
    assert order[:2] == ["test0-0", "test1-0"]  # still round-robin over documents inside a split
    assert sorted(order) == sorted(q["image"] for q in qs)
