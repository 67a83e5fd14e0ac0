"""A second offline reader: PP-OCRv4 through ``rapidocr-onnxruntime`` (``--target ocr:ppocr``).

:class:`PpOcrReader` is a neural text detector plus recognizer (the models ship inside the
``rapidocr-onnxruntime`` wheel; nothing is downloaded), far better than Tesseract on small text
and closer to how a VLM reads. It answers the same extractive question templates as
:class:`~cares_integrations.training.ocr.OcrReader` (see :func:`.ocr.answer_from_words`): each
recognised line is split into words with proportional boxes. PP-OCR drops spaces between words
on long lines, so anchors are also matched inside tokens (``"tothe"`` holds ``"the"``).

:meth:`PpOcrReader.read_lines` reproduces rapidocr's own pipeline on a full page (long side
capped at 2000 px, detector input upscaled so the short side is at least 736 px) and, given the
full page's size as ``context_size``, reads a crop of that page at exactly the scale the full page
would get, which is how the corpus labels stay affordable (see :mod:`.corpus_labels`).

Needs ``pip install 'cares-integrations[train]'`` (``rapidocr-onnxruntime``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from ..core.composite import flatten
from ..core.lru import LRUCache, pixel_digest
from ..core.optional import require
from .ocr import OcrWord, answer_from_words, check_batch
from .targets import Target

__all__ = ["PpOcrReader", "OcrLine", "words_from_lines"]

MAX_SIDE_LEN = 2000
"""rapidocr's cap on the long side of what it reads (its ``max_side_len``)."""
DET_MIN_SIDE = 736
"""rapidocr's detector input: the short side is brought up to at least this (``limit_type: min``)."""


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line: its text, box (pixels of the image read) and confidence."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return (self.y0 + self.y1) / 2


def words_from_lines(lines: Sequence[OcrLine]) -> list[OcrWord]:
    """Split lines into words at spaces, each with a box proportional to its characters."""
    words: list[OcrWord] = []
    for n, line in enumerate(lines):
        text = line.text
        if not text.strip():
            continue
        width = max(1.0, line.x1 - line.x0)
        per_char = width / max(1, len(text))
        pos = 0
        for token in text.split(" "):
            if token:
                left = line.x0 + pos * per_char
                words.append(OcrWord(token, int(left), int(line.y0), max(1, int(len(token) * per_char)),
                                     max(1, int(line.y1 - line.y0)), block=1, par=1, line=n + 1,
                                     conf=100.0 * line.score))
            pos += len(token) + 1
    return words


def _reading_order(boxes: list) -> list:
    """Boxes (4x2 point arrays) top to bottom, and left to right within a line: boxes whose
    vertical centres lie within half a box height of the line's first box share its line."""
    rows: list[list] = []
    for b in sorted(boxes, key=lambda b: float(b[:, 1].mean())):
        cy, h = float(b[:, 1].mean()), float(b[:, 1].max() - b[:, 1].min())
        if rows:
            first = rows[-1][0]
            fcy, fh = float(first[:, 1].mean()), float(first[:, 1].max() - first[:, 1].min())
            if abs(cy - fcy) <= 0.5 * max(1.0, min(h, fh)):
                rows[-1].append(b)
                continue
        rows.append([b])
    return [b for row in rows for b in sorted(row, key=lambda b: float(b[:, 0].min()))]


class PpOcrReader(Target):
    """PP-OCRv4 (rapidocr-onnxruntime) answering extractive questions about page images.

    Options: ``threads`` (onnxruntime intra-op threads per model; 1 suits labeling several
    pages in parallel), ``text_score`` (lines recognised with lower confidence are dropped, as
    rapidocr does), ``cache_size`` (pages whose lines are kept, keyed by pixel content).
    """

    name = "ocr:ppocr"

    def __init__(self, *, threads: int = 1, text_score: float = 0.5, cache_size: int = 64) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        rapidocr = require("rapidocr_onnxruntime", "train", purpose="the PP-OCR reader")
        self._np = require("numpy", "train")
        self._cv2 = require("cv2", "train", purpose="the PP-OCR reader (opencv, a rapidocr dependency)")
        self._engine = rapidocr.RapidOCR(intra_op_num_threads=int(threads), inter_op_num_threads=1)
        self.text_score = float(text_score)
        self.cache_size = int(cache_size)
        self._cache: LRUCache[list[OcrLine]] = LRUCache(self.cache_size)
        self._lock = threading.Lock()  # onnxruntime sessions are not re-entrant here

    def __repr__(self) -> str:
        return f"PpOcrReader(text_score={self.text_score})"

    # -- reading ---------------------------------------------------------------------------------
    def read_lines(self, image: Image.Image, *, context_size: tuple[int, int] | None = None,
                   band: tuple[float, float] | None = None) -> list[OcrLine]:
        """Text lines of ``image``, boxes in its pixels, top to bottom.

        ``context_size``: the (width, height) of the full page ``image`` was cropped from, at the
        same scale; the crop is then read at the scale rapidocr would read that full page.
        ``band``: (top, bottom) in ``image`` pixels; only detected lines whose vertical centre
        lies in it (padded by 15%) are recognised, which saves the recogniser's time on crops.
        """
        np, cv2 = self._np, self._cv2
        if not isinstance(image, Image.Image):
            raise TypeError(f"images must be PIL images, got {type(image).__name__}")
        arr = np.ascontiguousarray(np.asarray(flatten(image, "RGB"))[:, :, ::-1])
        cw, ch = context_size or (image.width, image.height)
        cap = min(1.0, MAX_SIDE_LEN / max(cw, ch))
        if cap < 1.0:
            arr = cv2.resize(arr, (max(1, round(arr.shape[1] * cap)), max(1, round(arr.shape[0] * cap))))
        up = max(1.0, DET_MIN_SIDE / (min(cw, ch) * cap))
        pad = 16
        det_in = cv2.resize(arr, None, fx=up, fy=up) if up > 1.0 else arr
        det_in = cv2.copyMakeBorder(det_in, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        eng = self._engine
        with self._lock:
            eng.text_det.limit_type, eng.text_det.limit_side_len = "max", 10 ** 6
            boxes, _ = eng.text_det(det_in)
            if boxes is None or len(boxes) == 0:
                return []
            boxes = _reading_order([((b - pad) / up).astype(np.float32) for b in boxes])
            h, w = arr.shape[:2]
            for b in boxes:
                b[:, 0] = np.clip(b[:, 0], 0, w - 1)
                b[:, 1] = np.clip(b[:, 1], 0, h - 1)
            boxes = [b for b in boxes if (b[:, 0].max() - b[:, 0].min()) >= 2 and (b[:, 1].max() - b[:, 1].min()) >= 2]
            if band is not None:
                top, bottom = band[0] * cap, band[1] * cap
                margin = 0.15 * (bottom - top)
                boxes = [b for b in boxes if top - margin <= float(b[:, 1].max() + b[:, 1].min()) / 2 <= bottom + margin]
            if not boxes:
                return []
            crops = eng.get_crop_img_list(arr, boxes)
            results, _ = eng.text_rec(crops)
        lines = []
        for b, (text, score) in zip(boxes, results):
            if score < self.text_score or not text.strip():
                continue
            x0, y0 = float(b[:, 0].min()) / cap, float(b[:, 1].min()) / cap
            x1, y1 = float(b[:, 0].max()) / cap, float(b[:, 1].max()) / cap
            lines.append(OcrLine(text.strip(), x0, y0, x1, y1, float(score)))
        return lines

    def _page_lines(self, image: Image.Image) -> list[OcrLine]:
        key = pixel_digest(image)
        lines = self._cache.get(key)
        if lines is None:
            lines = self.read_lines(image)
            self._cache.put(key, lines)
        return lines

    # -- answering -------------------------------------------------------------------------------
    def answer_batch(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Answer ``questions[i]`` about ``images[i]``; each distinct image is read once."""
        images, questions = check_batch(images, questions)
        return [answer_from_words(words_from_lines(self._page_lines(img)), q) for img, q in zip(images, questions)]
