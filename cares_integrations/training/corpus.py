"""A real-document corpus from Debian documentation packages, built by one command.

    python -m cares_integrations.training.corpus build [--work DIR] [--limit-docs N]

downloads the packages named in :data:`DOCUMENTS` (``apt-get download``, never installed),
unpacks them (``dpkg -x``), renders HTML documentation to PDF with headless Chromium, renders the
chosen pages with ``pdftoppm`` at each document's dpi (100-300), applies the document's optional
scan-like degradation, and writes extractive questions from the PDF text layer
(``pdftotext -bbox-layout``). Everything is cached under ``--work`` (default
``~/.cache/cares-integrations/corpus``): a rerun only does what is missing.

What lands in the repository (``benchmarks/corpus/``): ``documents.jsonl`` (provenance of every
file: package, version, path, md5, licence, and the document's kind, dpi, degradation, split and
pages) and ``questions.jsonl.gz`` (every question with its kind, answer, answer box and text
height in native pixels). Labels (``labels/*.jsonl.gz``) come from
:mod:`cares_integrations.training.corpus_labels`.

Never uses the packages reserved for independent evaluation (:data:`RESERVED_PACKAGES`).
Needs ``apt-get``/``dpkg`` (Debian), ``poppler-utils`` and, for HTML documents, ``chromium``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "DOCUMENTS", "RESERVED_PACKAGES", "KINDS", "Document", "Word", "Line", "Question",
    "parse_bbox_layout", "questions_for_page", "licence_of", "split_for", "build", "main",
]

RESERVED_PACKAGES = frozenset({
    "texlive-latex-recommended-doc", "pari-doc", "octave-doc", "r-doc-pdf", "gnuplot-doc",
    "libtasn1-doc", "shared-mime-info",
})
"""Kept for an independent check of the routers: never a source of corpus files."""

KINDS = ("slides", "refcard", "manual", "paper", "spec", "book", "table", "html")
"""Document kinds."""

REPO_DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "corpus"
"""Where the corpus's recorded data lives in the repository."""

DPI_CYCLE = (100, 150, 200, 250, 300)
QUESTION_KINDS = ("title", "body", "fine", "number")


@dataclass(frozen=True)
class Document:
    """One corpus document: a file inside a Debian package (``path`` relative to its root)."""

    doc: str
    kind: str
    package: str
    path: str
    max_pages: int = 14
    """Pages used at most (spread evenly over the document, pages with little text skipped)."""
    degrade: bool = False
    """Whether its pages get the scan-like degradation (JPEG, blur, small rotation, noise)."""


_TL = "usr/share/doc/texlive-doc/latex"
DOCUMENTS: tuple[Document, ...] = (
    # slides
    Document("beamerswitch-example", "slides", "texlive-pictures-doc", f"{_TL}/beamerswitch/beamerswitch-example.pdf"),
    Document("beamer-verona", "slides", "texlive-publishers-doc", f"{_TL}/beamer-verona/beamer-verona-default.pdf"),
    Document("bfh-beamer", "slides", "texlive-publishers-doc", f"{_TL}/bfh-ci/DEMO-BFHBeamer.pdf", degrade=True),
    Document("uantwerpen-beamer", "slides", "texlive-publishers-doc", f"{_TL}/uantwerpendocs/beamerthemeuantwerpenuserguide.pdf"),
    Document("abntex2-slides", "slides", "texlive-publishers-doc", f"{_TL}/abntex2/examples/abntex2-modelo-slides.pdf"),
    Document("tikz-relay-beamer", "slides", "texlive-pictures-doc", f"{_TL}/tikz-relay/BeamerAnimation.pdf"),
    # reference cards
    Document("debian-refcard-en-a4", "refcard", "debian-refcard", "usr/share/doc/debian-refcard/refcard-en-a4.pdf.gz"),
    Document("debian-refcard-en-lt", "refcard", "debian-refcard", "usr/share/doc/debian-refcard/refcard-en-lt.pdf.gz", degrade=True),
    Document("debian-refcard-fr-lt", "refcard", "debian-refcard", "usr/share/doc/debian-refcard/refcard-fr-lt.pdf.gz"),
    Document("debian-refcard-de-a4", "refcard", "debian-refcard", "usr/share/doc/debian-refcard/refcard-de-a4.pdf.gz"),
    Document("asy-refcard", "refcard", "asymptote-doc", "usr/share/doc/asymptote/asyRefCard.pdf"),
    # manuals
    Document("glpk-manual", "manual", "glpk-doc", "usr/share/doc/glpk-doc/glpk.pdf"),
    Document("gmpl-manual", "manual", "glpk-doc", "usr/share/doc/glpk-doc/gmpl.pdf", degrade=True),
    Document("asymptote-manual", "manual", "asymptote-doc", "usr/share/doc/asymptote/asymptote.pdf"),
    Document("dblatex-manual", "manual", "dblatex-doc", "usr/share/doc/dblatex/manual.pdf.gz"),
    Document("scons-user", "manual", "scons-doc", "usr/share/doc/scons/PDF/scons-user.pdf.gz"),
    Document("tree-dvips-manual", "manual", "texlive-humanities-doc", f"{_TL}/tree-dvips/tree-manual.pdf"),
    Document("tikzposter-manual", "manual", "texlive-pictures-doc", f"{_TL}/tikzposter/tikzposter.pdf"),
    Document("chemfig-manual", "manual", "texlive-pictures-doc", "usr/share/doc/texlive-doc/generic/chemfig/chemfig-en.pdf"),
    # papers in journal styles
    Document("acm-sigconf", "paper", "texlive-publishers-doc", f"{_TL}/acmart/samples/sample-sigconf.pdf"),
    Document("acm-small", "paper", "texlive-publishers-doc", f"{_TL}/acmart/samples/sample-acmsmall.pdf", degrade=True),
    Document("elsarticle-3p", "paper", "texlive-publishers-doc", f"{_TL}/elsarticle/elstest-3p.pdf"),
    Document("elsarticle-5p", "paper", "texlive-publishers-doc", f"{_TL}/elsarticle/elstest-5p.pdf"),
    Document("aastex-sample", "paper", "texlive-publishers-doc", f"{_TL}/aastex/sample631.pdf"),
    Document("ieeeconf", "paper", "texlive-publishers-doc", f"{_TL}/ieeeconf/IEEEconf.pdf"),
    Document("apa7-long", "paper", "texlive-publishers-doc", f"{_TL}/apa7/samples/longsample.pdf"),
    Document("pracjourn-sample", "paper", "texlive-publishers-doc", f"{_TL}/pracjourn/pjsample.pdf"),
    Document("resphilosophica-sample", "paper", "texlive-publishers-doc", f"{_TL}/resphilosophica/rpsample.pdf", degrade=True),
    Document("els-cas-sc", "paper", "texlive-publishers-doc", f"{_TL}/els-cas-templates/doc/sc-sample.pdf"),
    Document("ejpecp-sample", "paper", "texlive-publishers-doc", f"{_TL}/ejpecp/sample.pdf"),
    # specifications
    Document("xace-spec", "spec", "xorg-docs", "usr/share/doc/xorg-docs/Xserver/XACE-Spec.pdf.gz"),
    Document("xserver-analysis", "spec", "xorg-docs", "usr/share/doc/xorg-docs/Xserver/analysis.pdf.gz"),
    Document("xserver-appgroup", "spec", "xorg-docs", "usr/share/doc/xorg-docs/Xserver/appgroup.pdf.gz", degrade=True),
    Document("xserver-secint", "spec", "xorg-docs", "usr/share/doc/xorg-docs/Xserver/secint.pdf.gz"),
    Document("glpk-cnfsat", "spec", "glpk-doc", "usr/share/doc/glpk-doc/cnfsat.pdf"),
    # books
    Document("tufte-sample-book", "book", "texlive-pictures-doc", f"{_TL}/tufte-latex/sample-book.pdf"),
    Document("nostarch-sample", "book", "texlive-publishers-doc", f"{_TL}/nostarch/nssample.pdf"),
    Document("msu-thesis", "book", "texlive-publishers-doc", f"{_TL}/msu-thesis/samples/MSU-thesis-template.pdf"),
    Document("mugsthesis", "book", "texlive-publishers-doc", f"{_TL}/mugsthesis/sample/mugsthesis_sample.pdf", degrade=True),
    Document("maxima-book", "book", "maxima-doc", "usr/share/doc/maxima-doc/maximabook-19-Sept-2004.pdf.gz"),
    Document("glpk-graphs", "book", "glpk-doc", "usr/share/doc/glpk-doc/graphs.pdf"),
    # tables and forms
    Document("xorg-versions", "table", "xorg-docs", "usr/share/doc/xorg-docs/Versions.pdf.gz"),
    Document("bfh-factsheet", "table", "texlive-publishers-doc", f"{_TL}/bfh-ci/DEMO-BFHFactsheet.pdf"),
    Document("bfh-letter", "table", "texlive-publishers-doc", f"{_TL}/bfh-ci/DEMO-BFHLetter.pdf"),
    Document("siunitx-tables", "table", "texlive-science-doc", f"{_TL}/siunitx/siunitx.pdf", degrade=True),
    Document("mhchem-tables", "table", "texlive-science-doc", f"{_TL}/mhchem/mhchem.pdf"),
    # HTML documentation rendered with headless Chromium
    Document("debian-reference-ch01", "html", "debian-reference-en", "usr/share/debian-reference/ch01.en.html", max_pages=12),
    Document("debian-reference-ch07", "html", "debian-reference-en", "usr/share/debian-reference/ch07.en.html", max_pages=12),
    Document("debian-handbook-apt", "html", "debian-handbook", "usr/share/doc/debian-handbook/html/en-US/apt.html", max_pages=12, degrade=True),
    Document("scons-html-ch02", "html", "scons-doc", "usr/share/doc/scons/HTML/ch02.html", max_pages=8),
    Document("fftw-html-2", "html", "fftw-docs", "usr/share/doc/fftw-docs/html/fftw_2.html", max_pages=12),
    Document("asymptote-faq-2", "html", "asymptote-doc", "usr/share/doc/asymptote/faq/section2.html", max_pages=8),
    Document("xorg-releasenotes-html", "html", "xorg-docs", "usr/share/doc/xorg-docs/ReleaseNotes.html", max_pages=12),
    # second batch (appended: the dpi of a document follows its position here)
    Document("icccm-spec", "spec", "xorg-docs", "usr/share/doc/xorg-docs/icccm/icccm.pdf.gz"),
    Document("ctext-spec", "spec", "xorg-docs", "usr/share/doc/xorg-docs/ctext/ctext.pdf.gz"),
    Document("xlfd-spec", "spec", "xorg-docs", "usr/share/doc/xorg-docs/xlfd/xlfd.pdf.gz", degrade=True),
    Document("dps-spec", "spec", "xorg-docs", "usr/share/doc/xorg-docs/graphics/dps.pdf.gz"),
    Document("xkb-config-manual", "manual", "xorg-docs", "usr/share/doc/xorg-docs/input/XKB-Config.pdf.gz"),
    Document("xorg-fonts-manual", "manual", "xorg-docs", "usr/share/doc/xorg-docs/fonts/fonts.pdf.gz"),
    Document("gmpl-es-manual", "manual", "glpk-doc", "usr/share/doc/glpk-doc/gmpl_es.pdf"),
    Document("numerica-manual", "manual", "texlive-science-doc", f"{_TL}/numerica/numerica.pdf", degrade=True),
    Document("expex-manual", "manual", "texlive-humanities-doc", "usr/share/doc/texlive-doc/generic/expex/expex-doc.pdf"),
    Document("poemscol-book", "book", "texlive-humanities-doc", f"{_TL}/poemscol/poemscol.pdf"),
    Document("bytefield-tables", "table", "texlive-science-doc", f"{_TL}/bytefield/bytefield.pdf"),
    Document("hepnames-tables", "table", "texlive-science-doc", f"{_TL}/hepnames/hepnicenames-rm.pdf"),
    Document("debian-reference-ch02", "html", "debian-reference-en", "usr/share/debian-reference/ch02.en.html", max_pages=12),
    Document("debian-handbook-basic-config", "html", "debian-handbook",
             "usr/share/doc/debian-handbook/html/en-US/basic-configuration.html", max_pages=12),
    Document("scons-html-apa", "html", "scons-doc", "usr/share/doc/scons/HTML/apa.html", max_pages=12, degrade=True),
)
"""The corpus: 68 documents of 8 kinds from 15 Debian documentation packages."""


# -- text layer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One word of the PDF text layer, box in PDF points (origin top left)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class Line:
    """One text line (pdftotext's ``<line>``) with its words, in reading order."""

    words: list[Word]
    block: int

    @property
    def text(self) -> str:
        """The words joined by spaces."""
        return " ".join(w.text for w in self.words)

    @property
    def height(self) -> float:
        """The line's height (median word box height), points."""
        hs = sorted(w.y1 - w.y0 for w in self.words)
        return hs[len(hs) // 2]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Bounding box of the line, points."""
        return _union(self.words)


def _union(words: Sequence[Word]) -> tuple[float, float, float, float]:
    return (min(w.x0 for w in words), min(w.y0 for w in words), max(w.x1 for w in words), max(w.y1 for w in words))


def parse_bbox_layout(xhtml: str) -> list[dict[str, Any]]:
    """Pages of a ``pdftotext -bbox-layout`` file: ``[{"width", "height", "lines": [Line]}]``."""
    text = re.sub(r"<!DOCTYPE[^>]*>", "", xhtml)
    text = re.sub(r'\sxmlns="[^"]*"', "", text, count=1)
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", text)
    root = ET.fromstring(text)
    pages = []
    for page in root.iter("page"):
        lines: list[Line] = []
        for b, block in enumerate(page.iter("block")):
            for line in block.iter("line"):
                words = [Word((w.text or "").strip(), float(w.get("xMin")), float(w.get("yMin")),
                              float(w.get("xMax")), float(w.get("yMax"))) for w in line.iter("word")]
                words = [w for w in words if w.text and w.x1 > w.x0 and w.y1 > w.y0]
                if words:
                    lines.append(Line(words, b))
        pages.append({"width": float(page.get("width")), "height": float(page.get("height")), "lines": lines})
    return pages


# -- questions ----------------------------------------------------------------------------------


@dataclass
class Question:
    """One extractive question; ``box`` is the answer's box in native page pixels."""

    id: str
    doc: str
    page: int
    kind: str
    form: str
    question: str
    answer: str
    box: list[int]
    text_height_px: float
    extra: dict[str, Any] = field(default_factory=dict)


_NUMBER = re.compile(r"^\(?[$€£]?[-+]?\d[\d,.:/]*%?\)?[.,;:]?$")
_WORDLIKE = re.compile(r"^[A-Za-z][A-Za-z'\-]*[A-Za-z]$")
_CAPTION = re.compile(r"^(Figure|Fig\.|Table|Listing)\s*(\d+(\.\d+)*)[:.]?$", re.I)


def _strip(t: str) -> str:
    return re.sub(r"^[(\[\"'“‘]+|[)\]\"'”’.,;:!?]+$", "", t)


def _clean_answer(words: Sequence[Word]) -> str:
    return _strip(" ".join(w.text for w in words))


def _ascii_ok(text: str) -> bool:
    return all(ord(c) < 0x250 for c in text)


def questions_for_page(page: dict[str, Any], *, doc: str, page_no: int, scale: float,
                       rng: random.Random, per_kind: int = 2) -> list[Question]:
    """Questions from one page's text layer (``scale``: pixels per point at the native dpi).

    Kinds: ``title`` (the largest line on the page, when clearly larger than body text),
    ``body`` (a few words after a quoted anchor in a body-size line), ``fine`` (small text:
    footnotes, captions, table cells, code, with "What does footnote N say?" / "What is the
    caption of Table N?" forms where the text supports them), ``number`` (a number after its
    anchor, plus "What is the total?" and the page number where the text supports them).
    Every answer occurs exactly once in the page's text, so a reader that reads it is right.
    """
    lines = [ln for ln in page["lines"] if _ascii_ok(ln.text)]
    if len(lines) < 3:
        return []
    all_text = " ".join(ln.text for ln in page["lines"]).lower()
    heights = sorted(ln.height for ln in lines)
    body_h = heights[len(heights) // 2]
    out: list[Question] = []
    used: set[str] = set()

    def unique(ans: str) -> bool:
        a = ans.lower()
        return len(a) >= 2 and a not in used and all_text.count(a) == 1

    def add(kind: str, form: str, question: str, words: Sequence[Word], line: Line) -> None:
        ans = _clean_answer(words)
        if not unique(ans):
            return
        used.add(ans.lower())
        x0, y0, x1, y1 = _union(words)
        box = [int(math.floor(x0 * scale)), int(math.floor(y0 * scale)), int(math.ceil(x1 * scale)),
               int(math.ceil(y1 * scale))]
        out.append(Question(f"{doc}-p{page_no:03d}-{len(out):02d}", doc, page_no, kind, form, question, ans, box,
                            round(line.height * scale, 2)))

    def anchor_of(line: Line, i: int, n: int = 3) -> str | None:
        if i < 2:
            return None
        a = " ".join(w.text for w in line.words[max(0, i - n):i])
        return a if len(a) >= 6 and '"' not in a else None

    # title: the largest line, clearly above body size, 1-10 words
    big = [ln for ln in lines if ln.height >= 1.3 * body_h and 1 <= len(ln.words) <= 10
           and any(_WORDLIKE.match(w.text) for w in ln.words)]
    if big:
        top = max(big, key=lambda ln: (round(ln.height, 1), -ln.box[1]))
        form = "heading" if top.box[1] > 0.25 * page["height"] else "title"
        q = "What is the title of this page?" if form == "title" else "What is the heading on this page?"
        if len(" ".join(w.text for w in top.words)) <= 60:
            add("title", form, q, top.words, top)
        second = [ln for ln in big if ln is not top and len(ln.words) <= 8]
        if second:
            ln = rng.choice(second)
            add("title", "heading", f'What is the section heading that starts with "{ln.words[0].text}"?'
                if len(ln.words) > 1 else "What is the other heading on this page?", ln.words, ln)

    body = [ln for ln in lines if 0.85 * body_h <= ln.height <= 1.15 * body_h and len(ln.words) >= 6]
    fine = [ln for ln in lines if ln.height <= 0.85 * body_h and len(ln.words) >= 3]
    numbers = []
    for ln in lines:
        for i, w in enumerate(ln.words):
            t = _strip(w.text)
            if _NUMBER.match(w.text) and sum(c.isdigit() for c in t) >= 2:
                numbers.append((ln, i))

    # body text
    for ln in rng.sample(body, min(len(body), 3 * per_kind)):
        if sum(1 for q in out if q.kind == "body") >= per_kind:
            break
        i = rng.randint(2, max(2, len(ln.words) - 3))
        anchor = anchor_of(ln, i)
        span = ln.words[i:i + 3]
        if anchor and len(span) >= 2 and all(_WORDLIKE.match(_strip(w.text)) for w in span):
            add("body", "after", f'Which words come right after "{anchor}" in the text?', span, ln)

    # fine print: footnotes, captions, small text
    for ln in fine:
        first = ln.words[0].text
        if re.fullmatch(r"\d{1,2}", first) and ln.box[1] > 0.6 * page["height"] and len(ln.words) >= 4:
            add("fine", "footnote", f"What does footnote {first} say?", ln.words[1:5], ln)
        m = _CAPTION.match(" ".join(w.text for w in ln.words[:2]))
        if m and len(ln.words) >= 4:
            label = f"{m.group(1).capitalize()} {m.group(2)}"
            add("fine", "caption", f"What is the caption of {label}?", ln.words[2:6], ln)
    for ln in rng.sample(fine, min(len(fine), 3 * per_kind)):
        if sum(1 for q in out if q.kind == "fine") >= per_kind + 1:
            break
        i = rng.randint(2, max(2, len(ln.words) - 2)) if len(ln.words) > 3 else 1
        anchor = anchor_of(ln, i) if i >= 2 else None
        span = ln.words[i:i + 2]
        if anchor and span and sum(c.isalnum() for c in _clean_answer(span)) >= 3:
            add("fine", "small", f'In the small print, what comes right after "{anchor}"?', span, ln)

    # numbers: a total, the page number, numbers after their anchors
    for ln, i in numbers:
        prev = _strip(ln.words[i - 1].text).lower() if i else ""
        if prev in ("total", "sum", "totals"):
            add("number", "total", "What is the total?", [ln.words[i]], ln)
    for ln in lines:
        if len(ln.words) == 1 and re.fullmatch(r"\d{1,4}", ln.words[0].text) and (
                ln.box[1] > 0.88 * page["height"] or ln.box[3] < 0.1 * page["height"]):
            add("number", "page-number", "What page number is printed on this page?", ln.words, ln)
            break
    for ln, i in rng.sample(numbers, min(len(numbers), 3 * per_kind)):
        if sum(1 for q in out if q.kind == "number") >= per_kind + 1:
            break
        anchor = anchor_of(ln, i, 2) if i >= 2 else None
        if anchor:
            add("number", "after", f'Which number comes right after "{anchor}"?', [ln.words[i]], ln)
    return out


# -- provenance ---------------------------------------------------------------------------------


def split_for(doc: str) -> str:
    """The fixed split of a document (by a hash of its name): 60% train, 20% validation, 20% test."""
    h = int(hashlib.sha256(doc.encode()).hexdigest()[:8], 16) % 10
    return "train" if h < 6 else ("validation" if h < 8 else "test")


def licence_of(copyright_text: str, path: str) -> str:
    """The licence names of a Debian ``copyright`` file (machine-readable format when present),
    preferring the stanza whose ``Files:`` patterns match ``path``; otherwise its first lines."""
    stanzas = [s for s in re.split(r"\n\s*\n", copyright_text) if s.strip()]
    best, best_len = None, -1
    for s in stanzas:
        files = re.search(r"^Files:\s*(.+(?:\n[ \t].+)*)", s, re.M)
        lic = re.search(r"^License:\s*(.+)", s, re.M)
        if not files or not lic:
            continue
        for pat in files.group(1).split():
            rx = "^" + re.escape(pat).replace(r"\*", ".*").replace(r"\?", ".") + "$"
            tails = [path] + ["/".join(path.split("/")[k:]) for k in range(1, path.count("/") + 1)]
            if pat == "*" or any(re.match(rx, t) for t in tails):
                n = 0 if pat == "*" else len(pat)
                if n > best_len:
                    best, best_len = lic.group(1).strip(), n
    if best:
        return best
    licences = sorted(set(m.strip() for m in re.findall(r"^License:\s*(.+)", copyright_text, re.M)))
    if licences:
        return " / ".join(licences)
    flat = " ".join(copyright_text.split())
    named = [name for name, rx in _LICENCE_NAMES if re.search(rx, flat, re.I)]
    if named:
        return " / ".join(named) + " (free-form copyright file)"
    return f"see copyright file: {flat[:200]}"


_LICENCE_NAMES = (
    ("MIT/X11", r"\bMIT\b|X11 License|X/MIT|XFree86 License|X\.Org Preferred License"),
    ("GPL", r"GNU General Public License|\bGPL\b"),
    ("LGPL", r"Lesser General Public License|\bLGPL\b"),
    ("GFDL", r"Free Documentation License|\bGFDL\b"),
    ("LPPL", r"LaTeX Project Public License|\bLPPL\b"),
    ("BSD", r"\bBSD\b|Berkeley"),
    ("Apache", r"Apache License"),
    ("public domain", r"public domain"),
)


# -- building -----------------------------------------------------------------------------------


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=True, capture_output=True, **kw)


def _require_tool(name: str, package: str) -> None:
    if shutil.which(name) is None:
        raise RuntimeError(f"{name!r} not found; install the Debian package {package!r} (apt-get install {package})")


def _fetch_package(package: str, work: Path) -> tuple[Path, str]:
    """Download and unpack ``package`` into ``work/pkg/PACKAGE`` (cached); returns (root, version)."""
    if package in RESERVED_PACKAGES:
        raise ValueError(f"{package} is reserved for independent evaluation and must not be used")
    root = work / "pkg" / package
    stamp = root / ".version"
    if stamp.is_file():
        return root, stamp.read_text().strip()
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    deb = found[-1]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], text=True).stdout.strip()
    root.mkdir(parents=True, exist_ok=True)
    _run(["dpkg", "-x", str(deb), str(root)])
    stamp.write_text(version)
    return root, version


def _copyright(root: Path, package: str) -> str:
    path = root / "usr/share/doc" / package / "copyright"
    return path.read_text(errors="replace") if path.is_file() else ""


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pdf_of(doc: Document, src: Path, work: Path) -> Path:
    """The document as a PDF in ``work/pdf`` (gunzipped, or HTML printed by headless Chromium)."""
    out = work / "pdf" / f"{doc.doc}.pdf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    if src.suffix == ".gz":
        tmp.write_bytes(gzip.decompress(src.read_bytes()))
    elif src.suffix == ".pdf":
        shutil.copyfile(src, tmp)
    elif src.suffix in (".html", ".htm"):
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise RuntimeError("HTML documents need headless Chromium: apt-get install chromium")
        _run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
              "--allow-file-access-from-files", f"--print-to-pdf={tmp}", src.resolve().as_uri()], timeout=300)
    else:
        raise ValueError(f"{doc.doc}: unsupported file type {src.suffix}")
    tmp.replace(out)
    return out


def _page_count(pdf: Path) -> int:
    info = _run(["pdfinfo", str(pdf)], text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def _text_layer(pdf: Path, first: int, last: int) -> list[dict[str, Any]]:
    xhtml = _run(["pdftotext", "-bbox-layout", "-f", str(first), "-l", str(last), str(pdf), "-"],
                 text=True).stdout
    return parse_bbox_layout(xhtml)


def choose_pages(word_counts: Sequence[int], max_pages: int, *, min_words: int = 25) -> list[int]:
    """1-based page numbers: up to ``max_pages`` spread evenly over the pages with enough text."""
    ok = [i + 1 for i, n in enumerate(word_counts) if n >= min_words]
    if len(ok) <= max_pages:
        return ok
    step = len(ok) / max_pages
    return [ok[int(k * step + step / 2)] for k in range(max_pages)]


def degrade_image(image: Any, rng: random.Random) -> tuple[Any, dict[str, Any], Any]:
    """Scan-like degradation: small rotation, blur, noise, JPEG; returns (image, params, box map)."""
    import io

    import numpy as np
    from PIL import Image, ImageFilter

    angle = rng.uniform(-0.8, 0.8)
    blur = rng.choice([0.0, 0.5, 0.8])
    noise = rng.choice([0.0, 6.0, 10.0])
    quality = rng.choice([45, 60, 75])
    img = image.convert("RGB").rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    if noise:
        arr = np.asarray(img).astype(np.float32)
        arr += np.random.default_rng(rng.randrange(2**31)).normal(0, noise, arr.shape[:2])[..., None]
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    w, h = image.size
    cx, cy = w / 2, h / 2
    a = math.radians(angle)  # PIL rotates counter-clockwise for positive angles (y down)

    def map_box(box: Sequence[int]) -> list[int]:
        xs, ys = [], []
        for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
            dx, dy = x - cx, y - cy
            xs.append(cx + dx * math.cos(a) + dy * math.sin(a))
            ys.append(cy - dx * math.sin(a) + dy * math.cos(a))
        return [max(0, int(min(xs))), max(0, int(min(ys))), min(w, int(math.ceil(max(xs)))),
                min(h, int(math.ceil(max(ys))))]

    return img, {"rotate_deg": round(angle, 3), "blur": blur, "noise": noise, "jpeg_quality": quality}, map_box


def build(work: str | os.PathLike | None = None, *, out: str | os.PathLike | None = None,
          documents: Sequence[Document] = DOCUMENTS, log: Any = print) -> dict[str, Any]:
    """Build (or complete) the corpus; returns a summary. See the module docstring."""
    from PIL import Image

    for tool, pkg in (("pdftoppm", "poppler-utils"), ("pdftotext", "poppler-utils"), ("dpkg", "dpkg")):
        _require_tool(tool, pkg)
    work = Path(work or os.environ.get("CARES_CORPUS_DIR") or Path.home() / ".cache/cares-integrations/corpus")
    out = Path(out) if out is not None else REPO_DATA
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    doc_rows: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    for n, doc in enumerate(documents):
        if doc.kind not in KINDS:
            raise ValueError(f"{doc.doc}: unknown kind {doc.kind!r}")
        root, version = _fetch_package(doc.package, work)
        src = root / doc.path
        if not src.is_file():
            raise FileNotFoundError(f"{doc.doc}: {doc.path} is not in {doc.package} {version}")
        pdf = _pdf_of(doc, src, work)
        total = _page_count(pdf)
        layer = _text_layer(pdf, 1, total)
        pages = choose_pages([sum(len(ln.words) for ln in p["lines"]) for p in layer], doc.max_pages)
        dpi = DPI_CYCLE[(DOCUMENTS.index(doc) if doc in DOCUMENTS else n) % len(DPI_CYCLE)]
        rng = random.Random(f"corpus:{doc.doc}")
        page_rows = []
        for p in pages:
            img_rel = f"pages/{doc.doc}/p{p:03d}-{dpi}dpi.png"
            img_path = work / img_rel
            meta_path = img_path.with_suffix(".json")
            page_rng = random.Random(f"corpus:{doc.doc}:{p}")
            if not meta_path.is_file():
                img_path.parent.mkdir(parents=True, exist_ok=True)
                stem = img_path.with_suffix("")
                _run(["pdftoppm", "-r", str(dpi), "-f", str(p), "-l", str(p), "-singlefile", "-png", str(pdf),
                      str(stem)])
                meta: dict[str, Any] = {"degradation": None}
                if doc.degrade:
                    with Image.open(img_path) as im:
                        im.load()
                        img, params, _ = degrade_image(im, random.Random(f"degrade:{doc.doc}:{p}"))
                    img.save(img_path)
                    meta["degradation"] = params
                with Image.open(img_path) as im:
                    meta["size"] = list(im.size)
                meta_path.write_text(json.dumps(meta))
            meta = json.loads(meta_path.read_text())
            page = layer[p - 1]
            scale = meta["size"][0] / page["width"]
            qs = questions_for_page(page, doc=doc.doc, page_no=p, scale=scale, rng=page_rng)
            if meta["degradation"]:
                _, _, map_box = degrade_image(Image.new("L", tuple(meta["size"])),
                                              random.Random(f"degrade:{doc.doc}:{p}"))
                for q in qs:
                    q.box = map_box(q.box)
            for q in qs:
                row = asdict(q)
                row.pop("extra")
                row.update({"image": img_rel, "doc_kind": doc.kind, "split": split_for(doc.doc), "dpi": dpi,
                            "native_size": meta["size"], "degraded": bool(meta["degradation"])})
                questions.append(row)
            page_rows.append({"page": p, "image": img_rel, "size": meta["size"], "questions": len(qs),
                              "degradation": meta["degradation"]})
        doc_rows.append({
            "doc": doc.doc, "kind": doc.kind, "split": split_for(doc.doc), "package": doc.package,
            "version": version, "path": doc.path, "md5": _md5(src),
            "licence": licence_of(_copyright(root, doc.package), doc.path),
            "pdf_pages": total, "dpi": dpi, "degraded": doc.degrade, "pages": page_rows,
        })
        log(f"corpus: {doc.doc} ({doc.kind}, {doc.package} {version}): {len(page_rows)} pages at {dpi} dpi, "
            f"{sum(r['questions'] for r in page_rows)} questions")
    with open(out / "documents.jsonl", "w", encoding="utf-8") as fh:
        for row in doc_rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with gzip.open(out / "questions.jsonl.gz", "wt", encoding="utf-8") as fh:
        for row in questions:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = summarize(doc_rows, questions)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(json.dumps(summary))
    return summary


def summarize(doc_rows: Sequence[dict[str, Any]], questions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts: documents and pages per kind and split, questions per kind and split."""
    def count(rows: Iterable[dict[str, Any]], key: str, weight: Any = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in rows:
            out[r[key]] = out.get(r[key], 0) + (weight(r) if weight else 1)
        return dict(sorted(out.items()))

    return {
        "documents": len(doc_rows), "pages": sum(len(r["pages"]) for r in doc_rows), "questions": len(questions),
        "documents_per_kind": count(doc_rows, "kind"),
        "pages_per_kind": count(doc_rows, "kind", lambda r: len(r["pages"])),
        "documents_per_split": count(doc_rows, "split"),
        "pages_per_split": count(doc_rows, "split", lambda r: len(r["pages"])),
        "questions_per_kind": count(questions, "kind"),
        "questions_per_form": count(questions, "form"),
        "questions_per_split": count(questions, "split"),
        "questions_per_doc_kind": count(questions, "doc_kind"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cares_integrations.training.corpus build [--work DIR] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m cares_integrations.training.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="download, render and extract questions (cached)")
    b.add_argument("--work", default=None, help="cache folder (default ~/.cache/cares-integrations/corpus)")
    b.add_argument("--out", default=None, help="where documents.jsonl and questions.jsonl.gz go "
                                                "(default benchmarks/corpus in the repository)")
    b.add_argument("--docs", nargs="*", default=None, help="only these document names")
    args = parser.parse_args(argv)
    docs = DOCUMENTS if not args.docs else tuple(d for d in DOCUMENTS if d.doc in set(args.docs))
    build(args.work, out=args.out, documents=docs, log=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
