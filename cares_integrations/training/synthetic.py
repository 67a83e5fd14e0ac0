"""Synthetic document pages with extractive questions whose right resolution varies by question.

Each page is rendered with PIL and the DejaVu fonts (Sans, Serif, Mono, bold) at a page size
(letter or A4) and a dpi (100-300): a title with a large document number, key-value fields
(invoice-like), a table of numbers, paragraphs with embedded codes, a bar chart with labelled
values, a large total and fine-print footnotes (5.5-7 pt), in one or two columns. Every question
names the anchor it is about in double quotes and needs the answer text to be *read* (numbers,
codes, names); answers range from heading-sized to fine print, so for one page the smallest
sufficient resolution differs from question to question.

Question templates (the reader in :mod:`cares_integrations.training.ocr` understands exactly these):

- ``field``: ``What is the value of "Due date"?``: the text after ``Due date:`` on its line.
- ``table``: ``In the table, what is the value in row "Valves" and column "Q3"?``
- ``chart``: ``In the bar chart, what value is shown for the bar "North"?``
- ``after``: ``Which code comes right after "tracking number" in the text?``
- ``footnote``: ``According to footnote 2, what is the "Audit code"?`` (a field in the footnotes).

Dataset folder format (what ``cares label`` reads), written by :func:`write_dataset`::

    folder/
      samples.jsonl        one JSON object per (page, question) sample
      images/<page-id>.png one PNG per page

Each JSONL line holds ``id`` (unique sample id, ``"<page-id>-q<k>"``), ``image`` (path of the
page PNG, relative to the JSONL file's folder), ``question``, ``answers`` (list of reference
strings; ANLS takes the max over them), and metadata for analysis: ``page_id``, ``kind``
(template above), ``role`` (``heading``, ``body``, ``small`` or ``fine``), ``span_px`` (font size
in native pixels of the answer text), ``bbox`` (``[left, top, right, bottom]`` of the answer text
in native pixels), ``image_size`` (``[width, height]``), ``dpi`` and ``page_size``. Readers must
treat unknown keys as metadata and only need ``id``, ``image``, ``question`` and ``answers``.

Generation is deterministic: page ``i`` of ``generate_pages(n, seed=s)`` depends only on
``(s, i)`` and the arguments, so ``generate_pages(10, seed=s)[:3] == generate_pages(3, seed=s)``.

Run ``python -m cares_integrations.training.synthetic --n 200 --out data/synthetic`` to write a
dataset folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "SyntheticQuestion",
    "SyntheticPage",
    "generate_page",
    "generate_pages",
    "write_dataset",
    "read_dataset",
    "PAGE_SIZES",
    "FONT_DIR",
]

FONT_DIR = Path(os.environ.get("CARES_FONT_DIR", "/usr/share/fonts/truetype/dejavu"))
"""Folder holding the DejaVu TrueType fonts (override with the ``CARES_FONT_DIR`` variable)."""

PAGE_SIZES: dict[str, tuple[float, float]] = {"letter": (8.5, 11.0), "a4": (8.27, 11.69)}
"""Page sizes in inches (portrait)."""

DPIS: tuple[int, ...] = (100, 150, 200, 300)
"""Scan resolutions drawn from when ``dpi`` is not given."""

_FAMILIES = {
    "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
}

# -- vocabulary: pools are disjoint so every anchor is unique on its page ----------------------
_COMPANIES = ["Northwind Traders", "Blue Harbor Supply", "Kestrel Logistics", "Orchard Lane Foods",
              "Granite Peak Tools", "Silverline Textiles", "Redwood Paper Mills", "Lumen Optics",
              "Halcyon Marine", "Copperfield Metals", "Brightwater Labs", "Summit Freight"]
_DOC_TYPES = [("Invoice", "Invoice No."), ("Purchase Order", "Order No."), ("Statement", "Statement No."),
              ("Shipping Notice", "Shipment No."), ("Delivery Receipt", "Receipt No."),
              ("Service Report", "Report No.")]
_FIRST = ["Marta", "Jonas", "Priya", "Diego", "Aiko", "Samuel", "Lena", "Omar", "Grace", "Viktor",
          "Nadia", "Felix", "Rosa", "Tomas", "Ingrid", "Kofi"]
_LAST = ["Kowalski", "Lindqvist", "Raman", "Ortega", "Tanaka", "Okafor", "Brandt", "Haddad",
         "Whitfield", "Petrov", "Moreau", "Svensson", "Alvarez", "Novak", "Berg", "Mensah"]
_CITIES = ["Rotterdam", "Denver", "Osaka", "Porto", "Leeds", "Tampere", "Calgary", "Lyon",
           "Gdansk", "Austin", "Bergen", "Hobart"]
_FIELD_KINDS = {
    "Customer": "name", "Contact": "name", "Account number": "account", "Order date": "date",
    "Due date": "date", "Ship date": "date", "PO number": "code", "Phone": "phone", "Tax ID": "taxid",
    "Terms": "terms", "Branch code": "code", "Vendor ID": "code", "Batch number": "code",
    "Destination": "city", "Invoice total": "money", "Balance": "money", "Deposit": "money",
}
_BIG_FIELDS = ["Total due", "Amount paid", "Grand total", "Net amount"]
_FOOT_FIELDS = ["Contract reference", "Audit code", "Policy number", "Licence key", "Claim ID",
                "Archive code", "Permit number"]
_AFTER_ANCHORS = ["tracking number", "serial number", "lot code", "voucher", "ticket", "docket",
                  "seal number", "pallet tag", "manifest", "waybill"]
_TABLE_ROWS = ["Widgets", "Gaskets", "Brackets", "Sprockets", "Valves", "Hinges", "Rivets",
               "Bearings", "Cables", "Filters", "Pulleys", "Clamps", "Washers", "Nozzles"]
_TABLE_COLS = [["Q1", "Q2", "Q3", "Q4"], ["Jan", "Feb", "Mar", "Apr", "May"],
               ["Units", "Price", "Cost", "Margin"], ["2021", "2022", "2023", "2024"]]
_CHART_BARS = ["North", "South", "East", "West", "Central", "Coastal", "Inland", "Metro"]
_FILLER = ("the a of and to in for with on by from as at this that each all any our your their "
           "order goods delivery customer supplier payment account period review quality service "
           "schedule request approval shipment contract invoice records office team department "
           "process update notice terms agreement summary report item items stock warehouse "
           "storage inspection handling transport carrier route region market product products "
           "unit units price cost budget forecast target result results performance standard "
           "must should will may can please note kindly ensure confirm received returned issued "
           "listed shown above below attached enclosed current previous next final monthly "
           "annual weekly total subtotal balance amount remaining pending complete partial "
           "within after before during under over between against without following including "
           "regarding").split()


@dataclass(frozen=True)
class SyntheticQuestion:
    """An extractive question about one span of a synthetic page.

    ``span_px`` is the font size (em height, native pixels) of the answer text and ``bbox`` its
    box ``(left, top, right, bottom)`` in native pixels; ``kind`` is the template and ``role``
    the kind of text the answer sits in (``heading``, ``body``, ``small``, ``fine``).
    """

    question: str
    answers: list[str]
    span_px: float
    bbox: tuple[int, int, int, int]
    kind: str
    role: str


@dataclass
class SyntheticPage:
    """One rendered page (RGB PIL image) with its questions and how it was made."""

    image: Image.Image
    questions: list[SyntheticQuestion]
    id: str = "page"
    dpi: int = 200
    page_size: str = "letter"
    seed: int = 0
    meta: dict = field(default_factory=dict)


# -- layout primitives --------------------------------------------------------------------------
@dataclass
class _Text:
    x: float
    y: float
    text: str
    font: ImageFont.FreeTypeFont
    fill: int = 0


@dataclass
class _Shape:
    kind: str  # "rect" or "line"
    box: tuple[float, float, float, float]
    fill: int | None = None
    width: int = 1


@dataclass
class _Q:
    question: str
    answer: str
    span_px: float
    bbox: tuple[float, float, float, float]  # relative to the block origin
    kind: str
    role: str


@dataclass
class _Block:
    width: float
    height: float
    items: list = field(default_factory=list)
    questions: list[_Q] = field(default_factory=list)


class _Fonts:
    """Caches TrueType fonts by (family, bold, size)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bool, int], ImageFont.FreeTypeFont] = {}

    def get(self, family: str, size_px: float, bold: bool = False) -> ImageFont.FreeTypeFont:
        size = max(4, int(round(size_px)))
        key = (family, bold, size)
        if key not in self._cache:
            path = FONT_DIR / _FAMILIES[family][1 if bold else 0]
            try:
                self._cache[key] = ImageFont.truetype(str(path), size)
            except OSError as exc:
                raise FileNotFoundError(
                    f"DejaVu font {path} not found; install fonts-dejavu-core (apt-get install "
                    f"fonts-dejavu-core) or point CARES_FONT_DIR at a folder holding it"
                ) from exc
        return self._cache[key]


_FONTS = _Fonts()


def _text_box(item: _Text) -> tuple[float, float, float, float]:
    l, t, r, b = item.font.getbbox(item.text)
    return (item.x + l, item.y + t, item.x + r, item.y + b)


def _line_height(font: ImageFont.FreeTypeFont) -> float:
    ascent, descent = font.getmetrics()
    return (ascent + descent) * 1.25


# -- value generators ---------------------------------------------------------------------------
def _code(rng: random.Random, letters: int = 2, digits: int = 5) -> str:
    head = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(letters))
    return f"{head}-{rng.randint(10 ** (digits - 1), 10 ** digits - 1)}"


def _money(rng: random.Random, lo: int = 100, hi: int = 99_999) -> str:
    return f"${rng.randint(lo, hi):,}.{rng.randint(0, 99):02d}"


def _value(kind: str, rng: random.Random) -> str:
    if kind == "name":
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    if kind == "account":
        return f"{rng.randint(1000, 9999)}-{rng.randint(100000, 999999)}"
    if kind == "date":
        return f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == "code":
        return _code(rng, rng.choice((2, 3)), rng.choice((4, 5)))
    if kind == "phone":
        return f"+1 {rng.randint(200, 989)} 555 {rng.randint(1000, 9999)}"
    if kind == "taxid":
        return f"{rng.choice('ABCDEFGH')}{rng.randint(10000000, 99999999)}"
    if kind == "terms":
        return f"Net {rng.choice((15, 30, 45, 60, 90))}"
    if kind == "city":
        return rng.choice(_CITIES)
    if kind == "money":
        return _money(rng)
    raise ValueError(kind)


def _pt(pt: float, dpi: int) -> float:
    return pt * dpi / 72.0


# -- blocks ---------------------------------------------------------------------------------------
def _field_lines(labels_values: Sequence[tuple[str, str]], font_px: float, family: str, role: str,
                 kind: str = "field", footnote: bool = False) -> _Block:
    label_font = _FONTS.get(family, font_px, bold=True)
    value_font = _FONTS.get(family, font_px)
    block = _Block(0, 0)
    y = 0.0
    for n, (label, value) in enumerate(labels_values, 1):
        x = 0.0
        if footnote:
            block.items.append(_Text(x, y, str(n), value_font))
            x += value_font.getlength(f"{n} ")
        lab = _Text(x, y, f"{label}:", label_font)
        block.items.append(lab)
        vx = x + label_font.getlength(f"{label}:") + value_font.getlength(" ")
        val = _Text(vx, y, value, value_font)
        block.items.append(val)
        if footnote:
            question = f'According to footnote {n}, what is the "{label}"?'
        else:
            question = f'What is the value of "{label}"?'
        block.questions.append(_Q(question, value, font_px, _text_box(val), kind, role))
        block.width = max(block.width, _text_box(val)[2])
        y += _line_height(value_font)
    block.height = y
    return block


def _title_block(rng: random.Random, dpi: int, family: str, width: float) -> _Block:
    doc_type, number_label = rng.choice(_DOC_TYPES)
    company = rng.choice(_COMPANIES)
    title_px = _pt(rng.uniform(18, 26), dpi)
    name_px = _pt(rng.uniform(10, 13), dpi)
    block = _Block(width, 0)
    title_font = _FONTS.get(family, title_px, bold=True)
    block.items.append(_Text(0, 0, doc_type.upper(), title_font))
    y = _line_height(title_font)
    name_font = _FONTS.get(family, name_px)
    block.items.append(_Text(0, y, company, name_font))
    y += _line_height(name_font) * 1.2
    num_px = _pt(rng.uniform(13, 18), dpi)
    fields = _field_lines([(number_label, _code(rng, 3, 5))], num_px, family, "heading")
    for item in fields.items:
        item.y += y
    for q in fields.questions:
        b = q.bbox
        q.bbox = (b[0], b[1] + y, b[2], b[3] + y)
    block.items += fields.items
    block.questions += fields.questions
    block.height = y + fields.height
    return block


def _fields_block(rng: random.Random, dpi: int, family: str, width: float, used: set[str]) -> _Block:
    small = rng.random() < 0.4
    font_px = _pt(rng.uniform(6.5, 8) if small else rng.uniform(8.5, 12), dpi)
    labels = [l for l in _FIELD_KINDS if l not in used]
    chosen = rng.sample(labels, k=min(len(labels), rng.randint(3, 6)))
    used.update(chosen)
    block = _field_lines([(l, _value(_FIELD_KINDS[l], rng)) for l in chosen], font_px, family,
                         "small" if small else "body")
    return block


def _big_total_block(rng: random.Random, dpi: int, family: str, used: set[str]) -> _Block:
    label = rng.choice([l for l in _BIG_FIELDS if l not in used])
    used.add(label)
    return _field_lines([(label, _money(rng, 1_000, 999_999))], _pt(rng.uniform(14, 20), dpi), family, "heading")


def _table_block(rng: random.Random, dpi: int, family: str, width: float) -> _Block:
    small = rng.random() < 0.5
    font_px = _pt(rng.uniform(6.5, 8) if small else rng.uniform(8.5, 11), dpi)
    font = _FONTS.get(family, font_px)
    bold = _FONTS.get(family, font_px, bold=True)
    cols = list(rng.choice(_TABLE_COLS))
    rows = rng.sample(_TABLE_ROWS, k=rng.randint(3, 7))
    decimals = rng.random() < 0.5

    def cell() -> str:
        v = rng.randint(10, 99_999)
        return f"{v:,}.{rng.randint(0, 99):02d}" if decimals else f"{v:,}"

    values = [[cell() for _ in cols] for _ in rows]
    pad = font.getlength("  ") * 2
    while True:
        first_w = max(bold.getlength(r) for r in rows) + pad
        col_w = max(max(font.getlength(v) for row in values for v in row), max(bold.getlength(c) for c in cols)) + pad
        if first_w + col_w * len(cols) <= width or len(cols) <= 2:
            break
        cols.pop()
        values = [row[: len(cols)] for row in values]
    block = _Block(first_w + col_w * len(cols), 0)
    lh = _line_height(font)
    y = 0.0
    for j, c in enumerate(cols):
        block.items.append(_Text(first_w + j * col_w, y, c, bold))
    y += lh
    block.items.append(_Shape("line", (0, y - lh * 0.1, block.width, y - lh * 0.1), width=max(1, int(font_px / 12))))
    y += lh * 0.15
    role = "small" if small else "body"
    cells = []
    for i, r in enumerate(rows):
        block.items.append(_Text(0, y, r, bold))
        for j, v in enumerate(values[i]):
            t = _Text(first_w + j * col_w, y, v, font)
            block.items.append(t)
            cells.append((r, cols[j], t))
        y += lh
    block.height = y
    for r, c, t in rng.sample(cells, k=min(2, len(cells))):
        q = f'In the table, what is the value in row "{r}" and column "{c}"?'
        block.questions.append(_Q(q, t.text, font_px, _text_box(t), "table", role))
    return block


def _paragraph_block(rng: random.Random, dpi: int, family: str, width: float, used: set[str]) -> _Block:
    r = rng.random()
    pt = rng.uniform(6, 7.5) if r < 0.25 else rng.uniform(8, 12)
    role = "small" if r < 0.25 else "body"
    font_px = _pt(pt, dpi)
    font = _FONTS.get(family, font_px)
    n_words = rng.randint(40, 110)
    words = [rng.choice(_FILLER) for _ in range(n_words)]
    words[0] = words[0].capitalize()
    anchors = [a for a in _AFTER_ANCHORS if a not in used]
    facts = rng.sample(anchors, k=min(len(anchors), rng.randint(1, 2)))
    used.update(facts)
    answers: dict[int, str] = {}
    slots = sorted(rng.sample(range(2, n_words - 2), k=len(facts)))
    tokens: list[str] = []
    answer_token_index: dict[str, int] = {}
    for i, w in enumerate(words):
        tokens.append(w)
        if slots and i == slots[0]:
            slots.pop(0)
            anchor = facts[len(answers)]
            code = _code(rng, rng.choice((1, 2)), rng.choice((3, 4, 5)))
            tokens.extend(anchor.split())
            answer_token_index[anchor] = len(tokens)
            answers[len(tokens)] = code
            tokens.append(code)
    tokens[-1] += "."
    block = _Block(width, 0)
    lh = _line_height(font)
    space = font.getlength(" ")
    x, y = 0.0, 0.0
    positions: dict[int, _Text] = {}
    line_start = 0
    for i, tok in enumerate(tokens):
        w = font.getlength(tok)
        if x > 0 and x + w > width:
            x, y = 0.0, y + lh
            line_start = i
        positions[i] = _Text(x, y, tok, font)
        x += w + space
    # draw whole lines (one text item per line keeps rendering cheap and kerning natural)
    lines: dict[float, list[int]] = {}
    for i, t in positions.items():
        lines.setdefault(t.y, []).append(i)
    for ly, idxs in lines.items():
        block.items.append(_Text(0, ly, " ".join(tokens[i] for i in idxs), font))
    block.height = y + lh
    for anchor, idx in answer_token_index.items():
        t = positions[idx]
        noun = "code"
        q = f'Which {noun} comes right after "{anchor}" in the text?'
        block.questions.append(_Q(q, tokens[idx].rstrip("."), font_px, _text_box(t), "after", role))
    del line_start
    return block


def _chart_block(rng: random.Random, dpi: int, family: str, width: float) -> _Block:
    label_px = _pt(rng.uniform(6.5, 10), dpi)
    font = _FONTS.get(family, label_px)
    title_font = _FONTS.get(family, label_px * 1.3, bold=True)
    bars = rng.sample(_CHART_BARS, k=rng.randint(3, 6))
    values = [rng.randint(10, 999) for _ in bars]
    block = _Block(width, 0)
    block.items.append(_Text(0, 0, f"Shipments by region ({rng.choice(['units', 'tonnes', 'orders'])})", title_font))
    top = _line_height(title_font) * 1.3
    plot_h = min(width * 0.45, 2.0 * dpi)
    lh = _line_height(font)
    base = top + lh + plot_h
    slot = width / len(bars)
    bar_w = min(slot * 0.6, max(font.getlength(b) for b in bars) * 1.1)
    vmax = max(values)
    block.items.append(_Shape("line", (0, base, width, base), width=max(1, int(label_px / 10))))
    role = "small" if label_px < _pt(8, dpi) else "body"
    for i, (b, v) in enumerate(zip(bars, values)):
        cx = slot * (i + 0.5)
        h = plot_h * v / vmax
        shade = rng.choice((90, 120, 150))
        block.items.append(_Shape("rect", (cx - bar_w / 2, base - h, cx + bar_w / 2, base), fill=shade))
        vt = _Text(cx - font.getlength(str(v)) / 2, base - h - lh, str(v), font)
        block.items.append(vt)
        block.items.append(_Text(cx - font.getlength(b) / 2, base + lh * 0.2, b, font))
        if rng.random() < 0.5 or i == 0:
            q = f'In the bar chart, what value is shown for the bar "{b}"?'
            block.questions.append(_Q(q, str(v), label_px, _text_box(vt), "chart", role))
    block.questions = block.questions[:2]
    block.height = base + lh * 1.4
    return block


def _footnotes_block(rng: random.Random, dpi: int, family: str) -> _Block:
    font_px = _pt(rng.uniform(5.5, 7), dpi)
    labels = rng.sample(_FOOT_FIELDS, k=rng.randint(2, 3))
    kinds = ["code", "taxid", "account"]
    return _field_lines([(l, _value(rng.choice(kinds), rng)) for l in labels], font_px, family,
                        "fine", kind="footnote", footnote=True)


# -- page composition ---------------------------------------------------------------------------
def _page_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"cares-synthetic-{seed}-{index}")


def generate_page(seed: int = 0, index: int = 0, *, dpi: int | None = None, page_size: str | None = None,
                  max_questions: int = 6) -> SyntheticPage:
    """Render one page; deterministic in ``(seed, index, dpi, page_size, max_questions)``.

    ``dpi`` (50-600) and ``page_size`` (``"letter"`` or ``"a4"``) are drawn at random when None.
    At most ``max_questions`` questions are kept, picked to mix answer sizes.
    """
    rng = _page_rng(seed, index)
    if dpi is None:
        dpi = rng.choice(DPIS)
    if not 50 <= int(dpi) <= 600:
        raise ValueError(f"dpi must be between 50 and 600, got {dpi}")
    dpi = int(dpi)
    if page_size is None:
        page_size = rng.choice(sorted(PAGE_SIZES))
    if page_size not in PAGE_SIZES:
        raise ValueError(f"unknown page_size {page_size!r}; choose one of {sorted(PAGE_SIZES)}")
    if max_questions < 1:
        raise ValueError(f"max_questions must be at least 1, got {max_questions}")
    w_in, h_in = PAGE_SIZES[page_size]
    W, H = int(round(w_in * dpi)), int(round(h_in * dpi))
    family = rng.choice(sorted(_FAMILIES))
    margin = rng.uniform(0.5, 1.0) * dpi
    inner_w = W - 2 * margin
    two_cols = rng.random() < 0.4
    gutter = 0.35 * dpi
    col_w = (inner_w - gutter) / 2 if two_cols else inner_w
    used: set[str] = set()

    placed: list[tuple[float, float, _Block]] = []
    title = _title_block(rng, dpi, family, inner_w)
    placed.append((margin, margin, title))
    top = margin + title.height + 0.25 * dpi

    bottom = H - margin
    if rng.random() < 0.85:
        foot = _footnotes_block(rng, dpi, family)
        foot_y = bottom - foot.height
        placed.append((margin, foot_y, foot))
        rule_y = foot_y - 0.08 * dpi
        rule = _Block(inner_w * 0.3, 1, [_Shape("line", (0, 0, inner_w * 0.3, 0))])
        placed.append((margin, rule_y, rule))
        bottom = rule_y - 0.15 * dpi

    builders = ["fields", "table", "paragraph", "paragraph"]
    if rng.random() < 0.6:
        builders.append("chart")
    if rng.random() < 0.7:
        builders.append("total")
    if rng.random() < 0.5:
        builders.append("fields")
    rng.shuffle(builders)
    columns = [margin] + ([margin + col_w + gutter] if two_cols else [])
    col, y = 0, top
    for kind in builders:
        if kind == "fields":
            block = _fields_block(rng, dpi, family, col_w, used)
        elif kind == "table":
            block = _table_block(rng, dpi, family, col_w)
        elif kind == "paragraph":
            block = _paragraph_block(rng, dpi, family, col_w, used)
        elif kind == "chart":
            block = _chart_block(rng, dpi, family, col_w)
        else:
            block = _big_total_block(rng, dpi, family, used)
        if y + block.height > bottom:
            if col + 1 < len(columns):
                col, y = col + 1, top
            if y + block.height > bottom:
                continue
        placed.append((columns[col], y, block))
        y += block.height + rng.uniform(0.15, 0.35) * dpi

    image = Image.new("L", (W, H), 255)
    draw = ImageDraw.Draw(image)
    questions: list[SyntheticQuestion] = []
    for bx, by, block in placed:
        for item in block.items:
            if isinstance(item, _Text):
                draw.text((bx + item.x, by + item.y), item.text, fill=item.fill, font=item.font)
            elif item.kind == "rect":
                x0, y0, x1, y1 = item.box
                draw.rectangle((bx + x0, by + y0, bx + x1, by + y1), fill=item.fill)
            else:
                x0, y0, x1, y1 = item.box
                draw.line((bx + x0, by + y0, bx + x1, by + y1), fill=0, width=item.width)
        for q in block.questions:
            l, t, r, b = q.bbox
            box = (int(bx + l), int(by + t), int(round(bx + r)), int(round(by + b)))
            questions.append(SyntheticQuestion(q.question, [q.answer], round(q.span_px, 2), box, q.kind, q.role))

    questions = _pick_questions(questions, max_questions, rng)
    page_id = f"s{seed}-p{index:05d}"
    return SyntheticPage(image.convert("RGB"), questions, id=page_id, dpi=dpi, page_size=page_size, seed=seed,
                         meta={"family": family, "columns": 2 if two_cols else 1})


def _pick_questions(questions: list[SyntheticQuestion], k: int, rng: random.Random) -> list[SyntheticQuestion]:
    """Keep up to ``k`` questions, round-robin over roles so large and fine answers both appear."""
    by_role: dict[str, list[SyntheticQuestion]] = {}
    for q in questions:
        by_role.setdefault(q.role, []).append(q)
    for qs in by_role.values():
        rng.shuffle(qs)
    picked: list[SyntheticQuestion] = []
    roles = sorted(by_role)
    while len(picked) < k and any(by_role.values()):
        for role in roles:
            if by_role[role] and len(picked) < k:
                picked.append(by_role[role].pop())
    order = {id(q): i for i, q in enumerate(questions)}
    return sorted(picked, key=lambda q: order[id(q)])


def generate_pages(n: int, seed: int = 0, *, dpi: int | None = None, page_size: str | None = None,
                   max_questions: int = 6) -> list[SyntheticPage]:
    """Render ``n`` pages (see :func:`generate_page`); page ``i`` depends only on ``(seed, i)``."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    return [generate_page(seed, i, dpi=dpi, page_size=page_size, max_questions=max_questions) for i in range(n)]


def write_dataset(pages: Sequence[SyntheticPage], folder: str | os.PathLike) -> Path:
    """Write pages as ``folder/images/<id>.png`` plus ``folder/samples.jsonl``; returns the JSONL path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    jsonl = folder / "samples.jsonl"
    ids = [p.id for p in pages]
    if len(set(ids)) != len(ids):
        raise ValueError("page ids must be unique within a dataset")
    with jsonl.open("w", encoding="utf-8") as fh:
        for page in pages:
            rel = f"images/{page.id}.png"
            page.image.save(folder / rel, format="PNG", optimize=False)
            for k, q in enumerate(page.questions):
                row = {
                    "id": f"{page.id}-q{k}",
                    "image": rel,
                    "question": q.question,
                    "answers": list(q.answers),
                    "page_id": page.id,
                    "kind": q.kind,
                    "role": q.role,
                    "span_px": q.span_px,
                    "bbox": list(q.bbox),
                    "image_size": list(page.image.size),
                    "dpi": page.dpi,
                    "page_size": page.page_size,
                }
                fh.write(json.dumps(row) + "\n")
    return jsonl


def read_dataset(path: str | os.PathLike) -> list[dict]:
    """Read a ``samples.jsonl`` (or the folder holding it); ``image`` comes back as an absolute path."""
    path = Path(path)
    if path.is_dir():
        path = path / "samples.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}: expected a samples.jsonl written by write_dataset")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            missing = [k for k in ("id", "image", "question", "answers") if k not in row]
            if missing:
                raise ValueError(f"{path}:{lineno}: sample lacks required keys {missing}")
            image = Path(row["image"])
            row["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write a synthetic dataset folder."""
    from ..cli import CliParser, positive_int

    p = CliParser(prog="python -m cares_integrations.training.synthetic",
                  description="Write synthetic document pages with extractive questions.")
    p.add_argument("--n", type=positive_int, default=100,
                   help="number of pages (not samples: each page gets up to --max-questions questions; "
                        "default: 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--dpi", type=int, default=None, help="fixed dpi (default: drawn from 100/150/200/300)")
    p.add_argument("--page-size", choices=sorted(PAGE_SIZES), default=None)
    p.add_argument("--max-questions", type=positive_int, default=6,
                   help="most questions per page (default: 6)")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)
    pages = generate_pages(args.n, args.seed, dpi=args.dpi, page_size=args.page_size, max_questions=args.max_questions)
    path = write_dataset(pages, args.out)
    print(f"wrote {sum(len(p.questions) for p in pages)} samples on {len(pages)} pages to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
