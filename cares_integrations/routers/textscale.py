"""The embedded default router: pick the long side at which the page's small text stays legible.

:class:`TextScaleRouter` needs no model, no download and no GPU (numpy + Pillow). It measures
how tall the page's text is in native pixels and asks for the smallest long side at which that
text keeps a legible x-height:

1. grayscale (alpha composited on white), reduce by an integer factor to at most
   ``working_size`` on the long side, invert dark-background pages;
2. binarise with Otsu's threshold; a page without a clear background (most pixels far from the
   dominant grey level) is treated as a photo, a page without ink as blank;
3. cut the page into vertical strips and find text-line fragments in each strip's horizontal
   projection profile; keep fragments that look like text (ink density and height), and
   measure each one's *core band*, the rows holding at least half the fragment's peak ink, an
   estimate of the x-height (cap height for digits and capitals);
4. take a low, width-weighted quantile of the core heights (the small text that still makes up a
   real part of the page) and scale the page so that height becomes ``min_text_px``;
5. round the long side up to the router's ``ladder`` (the sizes the corpus labels were scored at).

With ``question_hints`` on, the question picks the rule (:func:`question_kind`): a question about
a title or heading, fine print (footnotes, captions, small print), a page number or another
number is sized by that kind's :class:`KindRule` (which measured text height to scale, to how
many pixels, between which floor and cap); any other question by ``min_text_px``, ``floor`` and
``text_cap``.

Every constant, and the measurement behind it, is documented in ``docs/default-router.md``.
The router returns ``Prediction(long_side=...)`` (direct mode).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..core.composite import flatten
from ..core.geometry import snap_long_side
from ..core.payload import DecodedImage
from ..core.router import Prediction, Router
from ..core.view import ViewSpec

__all__ = ["DEFAULT_KIND_RULES", "DEFAULT_LADDER", "KindRule", "TextScaleRouter", "TextMeasure", "measure_text",
           "measure_view", "question_kind"]

DEFAULT_MIN_TEXT_PX = 4.0
DEFAULT_WORKING_SIZE = 2400
DEFAULT_QUANTILE = 0.02
DEFAULT_FLOOR = 384
DEFAULT_PHOTO_LONG_SIDE = 1024
DEFAULT_BLANK_LONG_SIDE = 384
DEFAULT_TEXT_CAP = 768
DEFAULT_LADDER = (384, 512, 640, 768, 896, 1024, 1280, 1536)
"""The long sides the router sends: a request is rounded up to the next one (the page as is above
the top), so every size it sends is one the corpus labels were scored at and its benchmark
figures are exact, not lower bounds (docs/quality.md)."""
_FINE_PRINT = re.compile(r"\b(foot\s?notes?|fine\s+print|small\s+print|disclaimers?|legal\s+notice|captions?"
                         r"|legends?|small\s+text|tiny\s+text)\b", re.I)
_TITLE = re.compile(r"\b(title|heading|headline|subtitle|header)\b", re.I)
_PAGE_NUMBER = re.compile(r"\b(page\s+(numbers?|no\.?|#)|what\s+page|which\s+page)\b", re.I)
_NUMBER = re.compile(r"\b(numbers?|numerals?|digits?|total|sum|amount|how\s+(many|much)|price|cost|dates?|year"
                     r"|percent(age)?|count|phone)\b", re.I)
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<!\w)'[^']*'(?!\w)")
QUESTION_KINDS = ("title", "fine", "page", "number", "body")
_MEASURES = ("small", "median", "min")
"""The kinds :func:`question_kind` tells apart."""


def question_kind(query: str) -> str:
    """Which text a question asks about, from its words outside quotes: ``"fine"`` (footnotes,
    captions, legends, small or fine print, disclaimers), else ``"title"`` (a title, heading or
    header), else ``"page"`` (a page number: "page number", "what page"), else ``"number"`` (a
    number, total, amount, count, date, price), else ``"body"`` (also for an empty question).
    Quoted text is what the question quotes from the page, not what it asks for, so it is left
    out."""
    words = _QUOTED.sub(" ", query)
    if _FINE_PRINT.search(words):
        return "fine"
    if _TITLE.search(words):
        return "title"
    if _PAGE_NUMBER.search(words):
        return "page"
    if _NUMBER.search(words):
        return "number"
    return "body"


@dataclass(frozen=True)
class KindRule:
    """How the text-scale router sizes one kind of question on a text page: scale the page so
    its ``measure`` text height (``"small"``, ``"median"`` or ``"min"``, see :class:`TextMeasure`)
    becomes ``text_px`` pixels, then keep the long side within ``floor`` and ``cap`` (None: no
    cap) and never above the page's own."""

    text_px: float
    measure: str = "small"
    floor: int = 384
    cap: int | None = None

    def __post_init__(self) -> None:
        if not self.text_px > 0:
            raise ValueError(f"KindRule text_px must be positive, got {self.text_px}")
        if self.measure not in _MEASURES:
            raise ValueError(f"KindRule measure must be one of {_MEASURES}, got {self.measure!r}")
        if int(self.floor) <= 0 or (self.cap is not None and int(self.cap) < int(self.floor)):
            raise ValueError(f"KindRule needs 0 < floor <= cap, got floor {self.floor}, cap {self.cap}")

    def long_side(self, measure: "TextMeasure", long_side: int) -> float:
        """The long side this rule asks for on a measured text page with native ``long_side``."""
        text_px = getattr(measure, f"{self.measure}_px")
        assert text_px is not None
        wanted = max(float(self.floor), long_side * self.text_px / max(text_px, 1e-6))
        if self.cap is not None:
            wanted = min(wanted, float(self.cap))
        return float(min(long_side, wanted))


DEFAULT_KIND_RULES: dict[str, KindRule] = {
    "title": KindRule(3.0, "min", floor=384, cap=768),
    "fine": KindRule(4.0, "small", floor=640, cap=1280),
    "page": KindRule(6.75, "median", floor=896, cap=1280),
    "number": KindRule(4.5, "min", floor=896, cap=1280),
}
"""The shipped per-kind rules, refit on the corpus's train and validation documents with the
router's ladder (``benchmarks/refit_text_scale.py``, docs/quality.md); a body question (any other
kind) uses ``min_text_px``, ``floor`` and ``text_cap``."""


@dataclass(frozen=True)
class TextMeasure:
    """What the router measured on one page (native pixels).

    ``kind`` is ``"text"``, ``"blank"``, ``"photo"`` or ``"tiny"``; ``small_px`` is the small
    text's core (x-) height, ``min_px`` the smallest text's and ``median_px`` the typical text's;
    ``fragments`` counts the text-line fragments found.
    """

    kind: str
    small_px: float | None = None
    min_px: float | None = None
    median_px: float | None = None
    fragments: int = 0
    ink_fraction: float = 0.0
    background_fraction: float = 0.0


def _otsu(hist: np.ndarray) -> int:
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * levels)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return int(np.argmax(between))


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(v[min(idx, len(v) - 1)])


def measure_text(image: Image.Image, *, working_size: int = DEFAULT_WORKING_SIZE, quantile: float = DEFAULT_QUANTILE,
                 min_fragments: int = 4) -> TextMeasure:
    """Measure the text height of a page image (see the module docstring for the method)."""
    gray = flatten(image, "L")
    long_side = max(gray.size)
    factor = max(1, math.ceil(long_side / working_size))
    if factor > 1:
        gray = gray.reduce(factor)
    return measure_view(gray, factor, page_long_side=long_side, quantile=quantile, min_fragments=min_fragments)


def measure_view(gray: Image.Image, factor: int, *, page_long_side: int | None = None,
                 quantile: float = DEFAULT_QUANTILE, min_fragments: int = 4) -> TextMeasure:
    """Measure a page from its working view: the grayscale page reduced by the integer ``factor``
    (what :func:`measure_text` does first). Heights come back in the page's native pixels."""
    if gray.mode != "L":
        raise ValueError(f"the text-scale view is a grayscale ('L') image, got mode {gray.mode!r}")
    if (page_long_side if page_long_side is not None else max(gray.size) * factor) < 32:
        return TextMeasure("tiny")
    hist = np.asarray(gray.histogram(), dtype=np.float64)
    total = hist.sum()
    bg_level = int(np.argmax(hist))
    lo, hi = max(0, bg_level - 24), min(255, bg_level + 24)
    background = float(hist[lo:hi + 1].sum() / total)
    arr = np.asarray(gray)
    if bg_level < 128:  # dark background: light text
        arr = 255 - arr
        hist = hist[::-1].copy()
        bg_level = 255 - bg_level
    cdf = np.cumsum(hist) / total
    p_lo = int(np.searchsorted(cdf, 0.002))
    if bg_level - p_lo < 48:  # nothing clearly darker than the background
        return TextMeasure("blank", background_fraction=background)
    if background < 0.5:
        return TextMeasure("photo", background_fraction=background)
    threshold = min(_otsu(hist), bg_level - 24)
    ink = arr <= threshold
    ink_fraction = float(ink.mean())
    if ink_fraction < 1e-4:
        return TextMeasure("blank", ink_fraction=ink_fraction, background_fraction=background)

    H, W = ink.shape
    # Strips at most as wide as the page: a receipt narrower than one strip is one strip.
    strip = min(W, max(16, round(max(H, W) / 14)))
    n_strips = max(1, W // strip)
    used_w = n_strips * strip
    strips = ink[:, :used_w].reshape(H, n_strips, strip)
    profile = strips.sum(axis=2, dtype=np.int32)  # (H, n_strips)
    on = profile > 0
    pad = np.zeros((1, n_strips), dtype=bool)
    edges = np.diff(np.concatenate([pad, on, pad]).astype(np.int8), axis=0)
    cols_hint = strips.any(axis=0)  # (n_strips, strip): columns with any ink, per strip
    heights: list[float] = []
    widths: list[float] = []
    max_h = max(H, W) / 12
    for s in range(n_strips):
        if not cols_hint[s].any():
            continue
        starts = np.flatnonzero(edges[:, s] == 1)
        ends = np.flatnonzero(edges[:, s] == -1)
        col = profile[:, s]
        for top, bottom in zip(starts, ends):
            run_h = bottom - top
            if run_h < 3 or run_h > max_h:
                continue
            band = strips[top:bottom, s, :]
            inked_cols = band.any(axis=0)
            n_cols = int(inked_cols.sum())
            if n_cols < max(3, run_h // 2):
                continue
            density = float(band[:, inked_cols].mean())
            if density > 0.62 or density < 0.06:  # solid bars, photos / stray specks and rules
                continue
            # coverage: text leaves gaps between glyphs; a filled shape does not
            coverage = n_cols / strip
            if coverage < 0.05:
                continue
            seg = col[top:bottom]
            core = int((seg >= 0.5 * seg.mean()).sum())
            if core < 2:
                continue
            heights.append(core)
            widths.append(n_cols)
    if len(heights) < min_fragments:
        kind = "photo" if ink_fraction > 0.25 else "blank"
        return TextMeasure(kind, fragments=len(heights), ink_fraction=ink_fraction, background_fraction=background)
    hs = np.asarray(heights, dtype=np.float64) * factor
    ws = np.asarray(widths, dtype=np.float64)
    return TextMeasure(
        "text",
        small_px=_weighted_quantile(hs, ws, quantile),
        min_px=_weighted_quantile(hs, ws, 0.005),
        median_px=_weighted_quantile(hs, ws, 0.5),
        fragments=len(heights),
        ink_fraction=ink_fraction,
        background_fraction=background,
    )


class TextScaleRouter(Router):
    """The default router: the smallest long side at which the page's small text stays legible.

    Options (defaults and the measurements behind them in ``docs/default-router.md``):

    - ``min_text_px``: core (x-) height in pixels the small text must keep at the chosen size.
    - ``quantile``: which text counts as "small": the width-weighted quantile of text heights.
    - ``working_size``: pages are analysed at most this large (integer reduction above it).
    - ``floor``: never ask for less than this long side on a text page.
    - ``photo_long_side``: long side for images that are not documents (no paper background).
    - ``blank_long_side``: long side for pages without text.
    - ``text_cap``: a body question never asks for more than this long side on a text page
      (None: no cap; a cap below ``floor`` is raised to it).
    - ``ladder``: the long sides the router sends, ascending: a request is rounded up to the next
      one, the page as is above the top (None: send the request itself). Default
      :data:`DEFAULT_LADDER`.
    - ``question_hints``: size titles, fine print, page numbers and numbers by their own rules (below); off,
      every question is sized like a body question (``min_text_px``, ``floor``, ``text_cap``).
    - ``kind_rules``: ``{kind: KindRule}`` for the kinds of :func:`question_kind` (``"title"``,
      ``"fine"``, ``"page"``, ``"number"``); a kind without a rule is sized like a body question.
      Default :data:`DEFAULT_KIND_RULES`.

    Plus the options every :class:`~cares_integrations.router.Router` takes (``policy``,
    ``target``, ``free_detail``, ``max_pixels``, ``fetch``). Returns a direct long side.
    """

    name = "text-scale"

    def __init__(self, *, min_text_px: float = DEFAULT_MIN_TEXT_PX, quantile: float = DEFAULT_QUANTILE,
                 working_size: int = DEFAULT_WORKING_SIZE, floor: int = DEFAULT_FLOOR,
                 photo_long_side: int = DEFAULT_PHOTO_LONG_SIDE, blank_long_side: int = DEFAULT_BLANK_LONG_SIDE,
                 question_hints: bool = True, text_cap: int | None = DEFAULT_TEXT_CAP,
                 kind_rules: "dict[str, KindRule] | None" = None,
                 ladder: "tuple[int, ...] | None" = DEFAULT_LADDER, **options: Any) -> None:
        super().__init__(**options)
        if not min_text_px > 0:
            raise ValueError(f"min_text_px must be positive, got {min_text_px}")
        if not 0 <= quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        if working_size < 64:
            raise ValueError(f"working_size must be at least 64 pixels, got {working_size}")
        for key, value in (("floor", floor), ("photo_long_side", photo_long_side), ("blank_long_side", blank_long_side)):
            if int(value) <= 0:
                raise ValueError(f"{key} must be a positive pixel size, got {value}")
        self.min_text_px = float(min_text_px)
        self.quantile = float(quantile)
        self.working_size = int(working_size)
        self.floor = int(floor)
        self.photo_long_side = int(photo_long_side)
        self.blank_long_side = int(blank_long_side)
        self.question_hints = bool(question_hints)
        rules = DEFAULT_KIND_RULES if kind_rules is None else dict(kind_rules)
        for kind, rule in rules.items():
            if kind not in QUESTION_KINDS or not isinstance(rule, KindRule):
                raise ValueError(f"kind_rules maps a kind of {QUESTION_KINDS} to a KindRule, got {kind!r}: {rule!r}")
        self.kind_rules = dict(rules)
        if text_cap is not None and int(text_cap) <= 0:
            raise ValueError(f"text_cap must be a positive pixel size or None, got {text_cap}")
        self.text_cap = None if text_cap is None else int(text_cap)
        if ladder is not None:
            ladder = tuple(int(v) for v in ladder)
            if not ladder or ladder[0] <= 0 or list(ladder) != sorted(set(ladder)):
                raise ValueError(f"ladder must be ascending positive pixel sizes or None, got {ladder}")
        self.ladder = ladder

    @property
    def view_spec(self) -> ViewSpec:
        """The page in grayscale, reduced by an integer factor to at most ``working_size``."""
        return ViewSpec(mode="L", reduce_to=self.working_size)

    def measure(self, image: Image.Image | DecodedImage) -> TextMeasure:
        """Measure one page's text (native pixels); what :meth:`long_side_for` works from.

        A :class:`DecodedImage` is measured from its view (made here unless it already is one)."""
        if not isinstance(image, DecodedImage):
            return measure_text(image, working_size=self.working_size, quantile=self.quantile)
        view = self.view(image)
        factor = self.view_spec.reduce_factor(image.size)
        if view.image.size != self.view_spec.size_for(image.size):
            raise ValueError(
                f"a {view.image.size[0]}x{view.image.size[1]} view does not belong to a "
                f"{image.size[0]}x{image.size[1]} page (expected {self.view_spec.size_for(image.size)})"
            )
        return measure_view(view.image, factor, page_long_side=max(image.size), quantile=self.quantile)

    def long_side_for(self, measure: TextMeasure, image_size: tuple[int, int], query: str = "") -> float:
        """The long side (before the policy's clamps) for a measured page and a question."""
        long_side = max(image_size)
        if measure.kind == "tiny":
            return float(long_side)
        if measure.kind == "blank":
            return self.on_ladder(min(self.blank_long_side, long_side), long_side)
        if measure.kind == "photo":
            return self.on_ladder(min(self.photo_long_side, long_side), long_side)
        return self.on_ladder(self.rule_for(query).long_side(measure, long_side), long_side)

    def on_ladder(self, requested: float, long_side: int) -> float:
        """``requested`` rounded up to the ladder (the page's ``long_side`` above its top); the
        request itself without a ladder."""
        if self.ladder is None:
            return float(requested)
        return float(snap_long_side(requested, self.ladder, long_side))

    def rule_for(self, query: str) -> KindRule:
        """The rule a question is sized by on a text page (see ``kind_rules``)."""
        if self.question_hints:
            rule = self.kind_rules.get(question_kind(query))
            if rule is not None:
                return rule
        return KindRule(self.min_text_px, "small", floor=self.floor,
                        cap=None if self.text_cap is None else max(self.text_cap, self.floor))

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        out = []
        for decoded, query in zip(images, queries):
            m = self.measure(decoded)
            out.append(Prediction(long_side=self.long_side_for(m, decoded.size, query)))
        return out
