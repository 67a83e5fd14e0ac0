"""An offline reader: Tesseract OCR plus layout rules that answer extractive questions.

:class:`OcrReader` is a real, if narrow, "target model" for labeling without a VLM: it sees only
the image it is given (at the candidate resolution), brings it to a fixed working scale (bicubic
upscaling adds no information, it only keeps Tesseract's text-size assumptions from deciding the
result), reads words with their boxes via ``pytesseract.image_to_data``, finds the anchor the
question names in double quotes, and returns the text the question asks for:

- ``What is the value of "Due date"?`` / ``According to footnote 2, what is the "Audit code"?``:
  the words right of the label on the same line, up to the next wide gap.
- ``In the table, what is the value in row "Valves" and column "Q3"?``: the word on the row's
  line under the column header.
- ``In the bar chart, what value is shown for the bar "North"?``: the nearest number above the
  bar's label.
- ``Which code comes right after "tracking number" in the text?``: the next word in reading order.

These are the templates of :mod:`cares_integrations.training.synthetic`. The reader never sees a
reference answer; when it cannot find the anchor it answers ``""``.

Needs the ``tesseract`` binary (``apt-get install tesseract-ocr tesseract-ocr-eng``) and
``pytesseract`` (``pip install 'cares-integrations[train]'``).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from ..core.composite import flatten
from ..core.lru import LRUCache, pixel_digest
from ..core.optional import require
from .anls import levenshtein
from .targets import Target

__all__ = ["OcrReader", "OcrWord", "ParsedQuestion", "parse_question", "answer_from_words", "split_glued",
           "TesseractMissingError"]

DEFAULT_CONFIG = "--oem 1 --psm 3 -c tessedit_do_invert=0"
"""LSTM engine, automatic page segmentation (keeps reading order across columns for ``after``
questions; ``--psm 11`` scrambles it), and no inverted-text pass (about 30% faster on these pages)."""

DEFAULT_WORK_LONG_SIDE = 2200
"""Working scale: every image is brought to this long side before OCR (a 200-dpi letter page)."""

_INSTALL_HINT = "install it with: apt-get install tesseract-ocr tesseract-ocr-eng (or brew install tesseract)"


class TesseractMissingError(RuntimeError):
    """The ``tesseract`` binary is not installed or not on PATH."""


@dataclass(frozen=True)
class OcrWord:
    """One word Tesseract read, with its box (working-scale pixels) and reading-order position."""

    text: str
    left: int
    top: int
    width: int
    height: int
    block: int = 0
    par: int = 0
    line: int = 0
    conf: float = -1.0

    @property
    def right(self) -> int:
        """Right edge."""
        return self.left + self.width

    @property
    def bottom(self) -> int:
        """Bottom edge."""
        return self.top + self.height

    @property
    def cx(self) -> float:
        """Horizontal centre."""
        return self.left + self.width / 2

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return self.top + self.height / 2

    @property
    def norm(self) -> str:
        """Lowercased, with punctuation stripped from both ends (for matching anchors)."""
        return _norm_token(self.text)


def _norm_token(text: str) -> str:
    return re.sub(r"^[^\w$]+|[^\w]+$", "", text.lower())


def _similarity(a: str, b: str) -> float:
    """1 - normalised edit distance of two already-normalised tokens."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


@dataclass(frozen=True)
class ParsedQuestion:
    """What a question asks: its template ``kind`` and the quoted anchors it names."""

    kind: str  # "field", "table", "chart", "after", or "unknown"
    anchors: tuple[str, ...]


_QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d]+)[\"\u201c\u201d]")


def parse_question(question: str) -> ParsedQuestion:
    """Classify a question into a template and pull out its quoted anchors."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    anchors = tuple(a.strip() for a in _QUOTED.findall(question) if a.strip())
    q = question.lower()
    if len(anchors) >= 2 and "row" in q and "column" in q:
        return ParsedQuestion("table", anchors[:2])
    if not anchors:
        return ParsedQuestion("unknown", ())
    if "bar" in q or "chart" in q:
        return ParsedQuestion("chart", anchors[:1])
    if "right after" in q or "comes after" in q or "follows" in q:
        return ParsedQuestion("after", anchors[:1])
    return ParsedQuestion("field", anchors[:1])


def _find_anchor(words: list[OcrWord], anchor: str, min_score: float = 0.75) -> list[tuple[float, int, int]]:
    """All matches of ``anchor`` in reading order: (score, start, end-exclusive), best first.

    A window of words matches with spaces or without them (a reader that drops spaces glues
    ``"Create a"`` into one token ``"Createa"``), so shorter windows are tried too.
    """
    target = [t for t in (_norm_token(x) for x in anchor.split()) if t]
    if not target:
        return []
    joined, flat = " ".join(target), "".join(target)
    n = len(target)
    matches = []
    for size in range(n, 0, -1):
        for i in range(len(words) - size + 1):
            norms = [w.norm for w in words[i:i + size]]
            score = _similarity("".join(norms), flat)
            if size == n:
                score = max(score, _similarity(" ".join(norms), joined))
            if score >= min_score:
                matches.append((score, i, i + size))
    matches.sort(key=lambda m: (-m[0], m[1]))
    return matches


def _split_word(word: OcrWord, at: int) -> list[OcrWord]:
    """Split one word after character ``at`` (boxes proportional to characters)."""
    if not 0 < at < len(word.text):
        return [word]
    per = word.width / max(1, len(word.text))
    left_w = max(1, round(at * per))
    return [OcrWord(word.text[:at], word.left, word.top, left_w, word.height, word.block, word.par, word.line, word.conf),
            OcrWord(word.text[at:], word.left + left_w, word.top, max(1, word.width - left_w), word.height,
                    word.block, word.par, word.line, word.conf)]


def split_glued(words: Sequence[OcrWord], anchor: str) -> list[OcrWord]:
    """Words with ``anchor`` cut out of glued tokens: where a reader dropped the spaces around
    it (``"tothe"`` for ``"to the"``), the tokens it starts or ends inside are split there."""
    flat = "".join(anchor.lower().split())
    words = list(words)
    if not flat:
        return words
    for i in range(len(words)):
        text, bounds = "", []
        for j in range(i, min(len(words), i + len(flat) + 1)):
            bounds.append((j, len(text)))
            text += words[j].text.lower()
            pos = text.find(flat)
            if pos < 0 or pos >= len(words[i].text):
                continue
            end = pos + len(flat)
            out = list(words)
            k, start = max((b for b in bounds if b[1] < end), key=lambda b: b[1])
            out[k:k + 1] = _split_word(words[k], end - start)
            if pos > 0:
                out[i:i + 1] = _split_word(out[i], pos)
            return out
    return words


def _box(words: Sequence[OcrWord]) -> tuple[int, int, int, int]:
    return (min(w.left for w in words), min(w.top for w in words), max(w.right for w in words),
            max(w.bottom for w in words))


def _clean(text: str) -> str:
    return re.sub(r"^[:;,.\s]+|[:;,.\s]+$", "", text)


def _same_line(w: OcrWord, top: int, bottom: int) -> bool:
    cy = w.cy
    return top - 0.1 * (bottom - top) <= cy <= bottom + 0.1 * (bottom - top)


def _field_value(words: list[OcrWord], start: int, end: int) -> str:
    anchor = words[start:end]
    left, top, right, bottom = _box([anchor[-1]])
    line_h = max(1, bottom - top)
    candidates = sorted((w for k, w in enumerate(words) if not start <= k < end
                         and w.left >= right - 0.5 * line_h and _same_line(w, top, bottom)), key=lambda w: w.left)
    out: list[OcrWord] = []
    edge = right
    for w in candidates:
        if w.left - edge > 2.0 * line_h:
            break
        if not out and not _clean(w.text):
            edge = w.right
            continue  # a lone ':' after the label
        out.append(w)
        edge = w.right
    return _clean(" ".join(w.text for w in out))


def _table_value(words: list[OcrWord], row: str, column: str) -> str:
    rows = _find_anchor(words, row)
    cols = _find_anchor(words, column)
    if not rows or not cols:
        return ""
    _, rs, re_ = rows[0]
    rl, rt, rr, rb = _box(words[rs:re_])
    above = [(s, i, j) for s, i, j in cols if _box(words[i:j])[3] <= rt + 0.5 * (rb - rt)]
    if not above:
        return ""
    # the header nearest above the row, best score first among equals
    s, ci, cj = min(above, key=lambda m: (rt - _box(words[m[1]:m[2]])[1], -m[0]))
    cl, _, cr, _ = _box(words[ci:cj])
    row_words = [w for k, w in enumerate(words) if not rs <= k < re_ and w.left >= rr and _same_line(w, rt, rb)]
    if not row_words:
        return ""

    def overlap(w: OcrWord) -> float:
        return min(w.right, cr) - max(w.left, cl)

    best = max(row_words, key=lambda w: (overlap(w), -abs(w.cx - (cl + cr) / 2)))
    if overlap(best) <= 0 and abs(best.cx - (cl + cr) / 2) > 2 * max(cr - cl, best.width):
        return ""
    return _clean(best.text)


def _chart_value(words: list[OcrWord], bar: str) -> str:
    for _, s, e in _find_anchor(words, bar):
        bl, bt, br, bb = _box(words[s:e])
        cx = (bl + br) / 2
        above = [w for w in words if w.bottom <= bt and re.search(r"\d", w.text)
                 and abs(w.cx - cx) <= max(br - bl, w.width) * 0.75]
        if above:
            return _clean(max(above, key=lambda w: w.bottom).text)
    return ""


def _after_value(words: list[OcrWord], start: int, end: int) -> str:
    if end >= len(words):
        return ""
    return _clean(words[end].text)


def answer_from_words(words: Sequence[OcrWord], question: str) -> str:
    """Answer ``question`` from OCR words (in reading order); ``""`` when the anchor is not found."""
    words = [w for w in words if w.text.strip()]
    parsed = parse_question(question)
    if parsed.kind == "table":
        return _table_value(words, *parsed.anchors)
    if parsed.kind == "chart":
        return _chart_value(words, parsed.anchors[0])
    if parsed.kind in ("field", "after"):
        matches = _find_anchor(words, parsed.anchors[0])
        if not matches or matches[0][0] < 1.0:
            glued = split_glued(words, parsed.anchors[0])
            again = _find_anchor(glued, parsed.anchors[0]) if len(glued) != len(words) else []
            if again and (not matches or again[0][0] > matches[0][0]):
                words, matches = glued, again
        for _, s, e in matches:
            value = _field_value(words, s, e) if parsed.kind == "field" else _after_value(words, s, e)
            if value:
                return value
    return ""


def check_batch(images: Sequence[Image.Image], questions: Sequence[str]) -> tuple[list[Image.Image], list[str]]:
    """``images`` and ``questions`` as lists of the same length, each question a string (the
    readers' one check of an ``answer_batch`` call)."""
    images, questions = list(images), list(questions)
    if len(images) != len(questions):
        raise ValueError(f"got {len(images)} images but {len(questions)} questions")
    for i, q in enumerate(questions):
        if not isinstance(q, str):
            raise TypeError(f"question {i} must be a string, got {type(q).__name__}")
    return images, questions


class OcrReader(Target):
    """Answers extractive questions about page images with Tesseract (see the module docstring).

    ``answer_batch(images, questions)`` OCRs each distinct image once (a cache keyed by pixel
    content holds ``cache_size`` results, so several questions on one page cost one OCR run) with
    ``workers`` Tesseract processes in parallel, each limited to one thread.

    Options: ``work_long_side`` (the working scale), ``config`` (Tesseract flags), ``lang``,
    ``workers``, ``cache_size``, ``timeout`` (seconds per OCR run, 0 for none) and
    ``tesseract_cmd`` (path to the binary when it is not on PATH; pytesseract keeps it
    process-wide). Raises :class:`TesseractMissingError` when the binary cannot be run.
    """

    name = "tesseract"

    def __init__(self, *, work_long_side: int = DEFAULT_WORK_LONG_SIDE, config: str = DEFAULT_CONFIG,
                 lang: str = "eng", workers: int = 2, cache_size: int = 256, timeout: float = 120,
                 tesseract_cmd: str | None = None) -> None:
        if work_long_side < 64:
            raise ValueError(f"work_long_side must be at least 64 pixels, got {work_long_side}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._pt = require("pytesseract", "train", purpose="the Tesseract reader")
        previous = self._pt.pytesseract.tesseract_cmd
        if tesseract_cmd is not None:  # pytesseract keeps the command in a module global
            self._pt.pytesseract.tesseract_cmd = tesseract_cmd
        try:
            self.version = str(self._pt.get_tesseract_version())
        except self._pt.TesseractNotFoundError as exc:
            self._pt.pytesseract.tesseract_cmd = previous
            where = tesseract_cmd or previous
            raise TesseractMissingError(f"the tesseract binary {where!r} was not found; {_INSTALL_HINT}") from exc
        self.work_long_side = int(work_long_side)
        self.config = config
        self.lang = lang
        self.workers = int(workers)
        self.timeout = timeout
        self.cache_size = int(cache_size)
        self._cache: LRUCache[list[OcrWord]] = LRUCache(self.cache_size)

    def __repr__(self) -> str:
        return f"OcrReader(work_long_side={self.work_long_side}, config={self.config!r}, workers={self.workers})"

    # -- OCR -------------------------------------------------------------------------------------
    def to_working_scale(self, image: Image.Image, *, scale: float | None = None) -> Image.Image:
        """Grayscale the image and bring its long side to ``work_long_side`` (bicubic), or
        resize it by ``scale`` when given."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"images must be PIL images, got {type(image).__name__}")
        gray = flatten(image, "L")
        w, h = gray.size
        if scale is None:
            scale = self.work_long_side / max(w, h)
        if abs(scale - 1) < 1e-3:
            return gray
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return gray.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)

    def read_words(self, image: Image.Image, *, scale: float | None = None) -> list[OcrWord]:
        """OCR one image at the working scale; words in Tesseract's reading order (cached).

        ``scale``: resize by this factor instead of to ``work_long_side`` (for a crop of a page,
        the factor the whole page gets, so the crop is read at the page's working scale); word
        boxes are then in the scaled image's pixels.
        """
        key = pixel_digest(image) + (f"@{scale:.6f}" if scale is not None else "")
        words = self._cache.get(key)
        if words is None:
            words = self._ocr(self.to_working_scale(image, scale=scale))
            self._cache.put(key, words)
        return words

    def _ocr(self, gray: Image.Image) -> list[OcrWord]:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one thread per process; we parallelise
        pt = self._pt
        try:
            data = pt.image_to_data(gray, lang=self.lang, config=self.config, output_type=pt.Output.DICT,
                                    timeout=self.timeout)
        except pt.TesseractNotFoundError as exc:
            raise TesseractMissingError(f"the tesseract binary was not found; {_INSTALL_HINT}") from exc
        words = []
        for i, text in enumerate(data["text"]):
            if not text or not text.strip():
                continue
            words.append(OcrWord(text.strip(), int(data["left"][i]), int(data["top"][i]), int(data["width"][i]),
                                 int(data["height"][i]), int(data["block_num"][i]), int(data["par_num"][i]),
                                 int(data["line_num"][i]), float(data["conf"][i])))
        return words

    # -- answering -------------------------------------------------------------------------------
    def answer(self, image: Image.Image, question: str) -> str:
        """Answer one question about one image."""
        return self.answer_batch([image], [question])[0]

    def answer_batch(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Answer ``questions[i]`` about ``images[i]``; each distinct image is OCR'd once."""
        images, questions = check_batch(images, questions)
        keys = [pixel_digest(img) for img in images]
        unique: dict[str, Image.Image] = {}
        for k, img in zip(keys, images):
            unique.setdefault(k, img)
        if self.workers > 1 and len(unique) > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                results = dict(zip(unique, pool.map(self.read_words, unique.values())))
        else:
            results = {k: self.read_words(img) for k, img in unique.items()}
        return [answer_from_words(results[k], q) for k, q in zip(keys, questions)]
