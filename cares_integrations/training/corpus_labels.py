"""Labels for the real-document corpus: every reader's answer and score at every size.

    python -m cares_integrations.training.corpus_labels label [--readers ppocr tesseract] [--minutes M]
    python -m cares_integrations.training.corpus_labels export

For each question of ``benchmarks/corpus/questions.jsonl.gz`` and each size in
:data:`SIZES` below the page's own long side, plus that native long side (last), the whole page
is resized to that long side (:func:`cares_integrations.core.resize.resize_image`, as a router
would send it) and the reader reads a crop around the answer's line at that scale (margin: 1.5
text heights left and right, 0.6 above and below). Reading a crop instead of the whole page keeps
the job affordable on two cores; each reader is told the full page's size so it works at the
scale it would use for the whole page (Tesseract's 2200-px working scale, PP-OCR's detector
scale). The reader's text on the answer's line is the prediction; its score is
:func:`cares_integrations.training.anls.reading_score` (the answer found inside the text, across
dropped spaces, with partial credit by edit distance).

Results are cached per (reader, page, size, region) in ``--work``/``reads-READER.jsonl``, so a
run can stop and resume; ``export`` writes ``benchmarks/corpus/labels/READER.jsonl.gz`` in the
label schema of :mod:`cares_integrations.training.labeling` (with ``kind``, ``form``, ``doc``,
``doc_kind``, ``split``, ``page``, ``dpi``, ``native_size``, ``answer_box``,
``text_height_px``, ``degraded`` per record) for every question all of whose sizes are read.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from .anls import reading_score
from .corpus import REPO_DATA
from .labeling import label_for_scores

__all__ = ["SIZES", "READERS", "resolutions_for", "crop_box", "label_corpus", "export_labels", "main"]

SIZES = (384, 512, 640, 768, 896, 1024, 1280, 1536)
"""Long sides labeled below the page's own; the native long side is always last."""

READERS = {"ppocr": "ocr:ppocr", "tesseract": "ocr:tesseract"}
"""Reader name -> the ``target`` recorded in its labels."""


def resolutions_for(native_long_side: int, sizes: Sequence[int] = SIZES) -> list[int]:
    """The sizes below the page's long side, then the long side itself."""
    return [s for s in sizes if s < native_long_side] + [int(native_long_side)]


def crop_box(box: Sequence[float], scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region read for an answer ``box`` (native px) on a page resized by ``scale`` to ``size``."""
    th = max(1.0, box[3] - box[1])
    x0 = (box[0] - 1.5 * th) * scale
    x1 = (box[2] + 1.5 * th) * scale
    y0 = (box[1] - 0.6 * th) * scale
    y1 = (box[3] + 0.6 * th) * scale
    w, h = size
    return (max(0, int(x0)), max(0, int(y0)), min(w, int(x1 + 1)), min(h, int(y1 + 1)))


def _line_text(items: Sequence[tuple[float, float, float, str]], y0: float, y1: float) -> str:
    """Text of the items (x, top, bottom, text) whose vertical centre lies on the answer's line."""
    pad = 0.15 * (y1 - y0)
    chosen = sorted((it for it in items if y0 - pad <= (it[1] + it[2]) / 2 <= y1 + pad), key=lambda it: it[0])
    return " ".join(it[3] for it in chosen)


class _Reads:
    """Append-only cache of reads: key -> text, in ``reads-READER.jsonl``."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, str] = {}
        if path.is_file():
            for raw in path.read_text(encoding="utf-8").splitlines():
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue  # a torn last line
                self.data[obj["k"]] = obj["t"]

    def add(self, items: dict[str, str]) -> None:
        self.data.update(items)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps({"k": k, "t": t}, ensure_ascii=False) + "\n" for k, t in items.items()))
            fh.flush()


def _key(q: dict[str, Any], r: int) -> str:
    return f"{q['image']}|{r}|{','.join(map(str, q['box']))}"


def _read_page_ppocr(reader: Any, page: Any, qs: Sequence[dict[str, Any]], r: int) -> dict[str, str]:
    from ..core.resize import fit_long_side, resize_image

    img = resize_image(page, fit_long_side(page.width, page.height, r))
    scale = img.width / page.width
    out = {}
    for q in qs:
        cx0, cy0, cx1, cy1 = crop_box(q["box"], scale, img.size)
        y0, y1 = q["box"][1] * scale - cy0, q["box"][3] * scale - cy0
        lines = reader.read_lines(img.crop((cx0, cy0, cx1, cy1)), context_size=img.size, band=(y0, y1))
        out[_key(q, r)] = _line_text([(ln.x0, ln.y0, ln.y1, ln.text) for ln in lines], y0, y1)
    return out


def _read_page_tesseract(reader: Any, page: Any, qs: Sequence[dict[str, Any]], r: int) -> dict[str, str]:
    """All crops of one page at one size stacked on one sheet: one Tesseract run per (page, size)."""
    from PIL import Image

    from ..core.resize import fit_long_side, resize_image

    img = resize_image(page, fit_long_side(page.width, page.height, r)).convert("L")
    scale = img.width / page.width
    crops, tops = [], []
    y = 0
    for q in qs:
        box = crop_box(q["box"], scale, img.size)
        crop = img.crop(box)
        gap = max(12, crop.height)
        y += gap
        crops.append((crop, box))
        tops.append(y)
        y += crop.height
    sheet = Image.new("L", (max(c.width for c, _ in crops) + 24, y + 24), 255)
    for (crop, _), top in zip(crops, tops):
        sheet.paste(crop, (12, top))
    work = reader.work_long_side / max(img.size)
    words = reader.read_words(sheet, scale=work)
    out = {}
    for q, (crop, box), top in zip(qs, crops, tops):
        items = []
        for w in words:
            wy0, wy1 = w.top / work - top, w.bottom / work - top
            cy = (wy0 + wy1) / 2
            if -0.5 <= cy <= crop.height + 0.5:
                items.append((w.left / work, wy0, wy1, w.text))
        out[_key(q, r)] = _line_text(items, q["box"][1] * scale - box[1], q["box"][3] * scale - box[1])
    return out


def _load_questions(data: Path) -> list[dict[str, Any]]:
    with gzip.open(data / "questions.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _round_robin(questions: Sequence[dict[str, Any]],
                 splits: Sequence[str] | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
    """Pages in an order that visits every document early (a partial run covers every kind).

    With ``splits``, the pages of those splits come first, in that order, each visited round-robin.
    """
    order = []
    groups = list(splits or []) + [None]
    for group in groups:
        by_doc: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
        for q in questions:
            chosen = q["split"] == group if group is not None else q["split"] not in (splits or [])
            if chosen:
                by_doc[q["doc"]].setdefault(q["image"], []).append(q)
        queues = [list(pages.items()) for pages in by_doc.values()]
        while any(queues):
            for qu in queues:
                if qu:
                    order.append(qu.pop(0))
    return order


def _seed_from_labels(reads: "_Reads", labels_path: Path) -> int:
    """Fill an empty reads cache from exported labels (their predictions are the reads).

    A fresh machine has no ``reads-READER.jsonl``; the labels in the repository hold every read
    they were made from, so a resumed run starts where the export left off instead of rereading.
    """
    if reads.data or not labels_path.is_file():
        return 0
    items = {}
    with gzip.open(labels_path, "rt", encoding="utf-8") as fh:
        for raw in fh:
            if raw.strip():
                row = json.loads(raw)
                for r, text in zip(row["resolutions"], row["predictions"]):
                    items[_key({"image": row["image"], "box": row["answer_box"]}, r)] = text
    if items:
        reads.add(items)
    return len(items)


def _make_reader(name: str) -> Any:
    if name == "ppocr":
        from .ppocr import PpOcrReader

        return PpOcrReader(threads=1)
    if name == "tesseract":
        from .ocr import OcrReader

        return OcrReader(workers=1)
    raise ValueError(f"unknown reader {name!r}; use one of {sorted(READERS)}")


def label_corpus(work: str | os.PathLike, *, readers: Sequence[str] = ("ppocr", "tesseract"),
                 data: str | os.PathLike | None = None, minutes: float | None = None,
                 splits: Sequence[str] | None = None, log: Any = print) -> dict[str, int]:
    """Read every (question, size) not yet cached, page by page; stop after ``minutes``.

    An empty cache is first seeded from the exported labels; ``splits`` reads those splits first.
    """
    from ..core.payload import load_image

    work, data = Path(work), Path(data) if data else REPO_DATA
    questions = _load_questions(data)
    caches = {name: _Reads(work / f"reads-{name}.jsonl") for name in readers}
    for name in readers:
        seeded = _seed_from_labels(caches[name], data / "labels" / f"{name}.jsonl.gz")
        if seeded:
            log(f"corpus labels: {name} cache seeded with {seeded} reads from the exported labels")
    engines = {name: _make_reader(name) for name in readers}
    fns = {"ppocr": _read_page_ppocr, "tesseract": _read_page_tesseract}
    deadline = time.monotonic() + 60 * minutes if minutes else None
    done_pages = 0
    t0 = time.monotonic()
    for image, qs in _round_robin(questions, splits):
        if deadline and time.monotonic() > deadline:
            break
        todo = {name: [(r, [q for q in qs if _key(q, r) not in caches[name].data])
                       for r in resolutions_for(max(qs[0]["native_size"]))] for name in readers}
        if not any(qq for name in readers for _, qq in todo[name]):
            continue
        page = load_image(work / image).image.convert("RGB")
        for name in readers:
            got: dict[str, str] = {}
            for r, qq in todo[name]:
                if qq:
                    got.update(fns[name](engines[name], page, qq, r))
            if got:
                caches[name].add(got)
        done_pages += 1
        if done_pages % 5 == 0:
            log(f"corpus labels: {done_pages} pages read this run ({(time.monotonic() - t0) / done_pages:.1f} s/page)")
    return {name: len(c.data) for name, c in caches.items()}


def export_labels(work: str | os.PathLike, *, readers: Sequence[str] = ("ppocr", "tesseract"),
                  data: str | os.PathLike | None = None, tau: float = 0.85, delta: float = 0.1) -> dict[str, int]:
    """Write ``labels/READER.jsonl.gz`` for every question whose sizes are all read."""
    work, data = Path(work), Path(data) if data else REPO_DATA
    questions = _load_questions(data)
    counts = {}
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for name in readers:
        reads = _Reads(work / f"reads-{name}.jsonl").data
        rows = []
        for q in questions:
            res = resolutions_for(max(q["native_size"]))
            keys = [_key(q, r) for r in res]
            if not all(k in reads for k in keys):
                continue
            preds = [reads[k] for k in keys]
            scores = [round(reading_score(p, [q["answer"]]), 4) for p in preds]
            label = label_for_scores(scores, tau=tau, delta=delta)
            rows.append({
                "kind": q["kind"], "form": q["form"], "doc": q["doc"], "doc_kind": q["doc_kind"], "split": q["split"],
                "page": q["page"], "dpi": q["dpi"], "native_size": q["native_size"], "answer_box": q["box"],
                "text_height_px": q["text_height_px"], "degraded": q["degraded"],
                "id": q["id"], "image": q["image"], "question": q["question"], "answers": [q["answer"]],
                "target": READERS[name], "resolutions": res, "predictions": preds, "scores": scores,
                "label": label, "label_resolution": res[label],
            })
        path = data / "labels" / f"{name}.jsonl.gz"
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
        counts[name] = len(rows)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``label`` (read, resumable) and ``export`` (write the label files)."""
    parser = argparse.ArgumentParser(prog="python -m cares_integrations.training.corpus_labels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["label", "export"])
    parser.add_argument("--work", default=os.environ.get("CARES_CORPUS_DIR")
                        or str(Path.home() / ".cache/cares-integrations/corpus"))
    parser.add_argument("--data", default=None, help="the corpus data folder (default benchmarks/corpus)")
    parser.add_argument("--readers", nargs="+", default=["ppocr", "tesseract"], choices=sorted(READERS))
    parser.add_argument("--minutes", type=float, default=None, help="stop reading after this long (resume later)")
    parser.add_argument("--splits", nargs="+", default=None, choices=["test", "validation", "train"],
                        help="read the pages of these splits first, in this order (then the rest)")
    args = parser.parse_args(argv)
    if args.command == "label":
        counts = label_corpus(args.work, readers=args.readers, data=args.data, minutes=args.minutes,
                              splits=args.splits, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps({"reads": counts}))
    counts = export_labels(args.work, readers=args.readers, data=args.data)
    print(json.dumps({"labeled_questions": counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
