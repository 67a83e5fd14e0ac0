"""The Tesseract reader: question parsing and layout rules on word boxes, then real OCR runs."""

from __future__ import annotations

import shutil

import pytest
from helpers import render_text
from PIL import Image

from cares_integrations.core.resize import fit_long_side, resize_image
from cares_integrations.training.anls import anls
from cares_integrations.training.ocr import (
    OcrReader,
    OcrWord,
    TesseractMissingError,
    answer_from_words,
    parse_question,
)
from cares_integrations.training.targets import Target

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract binary not installed")


def W(text, left, top, width=None, height=20):
    return OcrWord(text, left, top, width or 12 * len(text), height)


def test_parse_question_templates():
    assert parse_question('What is the value of "Due date"?').kind == "field"
    assert parse_question('According to footnote 2, what is the "Audit code"?').anchors == ("Audit code",)
    t = parse_question('In the table, what is the value in row "Valves" and column "Q3"?')
    assert (t.kind, t.anchors) == ("table", ("Valves", "Q3"))
    assert parse_question('In the bar chart, what value is shown for the bar "North"?').kind == "chart"
    assert parse_question('Which code comes right after "lot code" in the text?').kind == "after"
    assert parse_question("What is this?").kind == "unknown"
    with pytest.raises(TypeError):
        parse_question(3)


def test_field_value_stops_at_a_wide_gap():
    words = [W("Due", 10, 100), W("date:", 50, 100), W("2024-03-17", 120, 100),
             W("Unrelated", 900, 100), W("Phone:", 10, 140), W("+1", 90, 140), W("555", 120, 140)]
    assert answer_from_words(words, 'What is the value of "Due date"?') == "2024-03-17"
    assert answer_from_words(words, 'What is the value of "Phone"?') == "+1 555"
    assert answer_from_words(words, 'What is the value of "Fax"?') == ""


def test_table_cell_at_row_and_column():
    words = [W("Q1", 200, 10), W("Q2", 320, 10),
             W("Valves", 10, 50), W("1,200", 200, 50), W("3,400", 320, 50),
             W("Hinges", 10, 90), W("5,600", 200, 90), W("7,800", 320, 90)]
    q = 'In the table, what is the value in row "Hinges" and column "Q2"?'
    assert answer_from_words(words, q) == "7,800"
    assert answer_from_words(words, q.replace("Q2", "Q1").replace("Hinges", "Valves")) == "1,200"


def test_chart_value_above_the_bar_label():
    words = [W("Shipments", 10, 0), W("412", 105, 60), W("87", 305, 200),
             W("North", 95, 300), W("South", 295, 300)]
    assert answer_from_words(words, 'In the bar chart, what value is shown for the bar "North"?') == "412"
    assert answer_from_words(words, 'In the bar chart, what value is shown for the bar "South"?') == "87"


def test_word_after_phrase_in_reading_order_and_fuzzy_anchor():
    words = [W(t, 10 + 80 * i, 10) for i, t in enumerate("goods with tracking".split())]
    words += [W("nurnber", 10, 40), W("ZK-4411.", 100, 40)]  # anchor split over lines, OCR slip
    assert answer_from_words(words, 'Which code comes right after "tracking number" in the text?') == "ZK-4411"


def _field_page(text_px: int, label: str, value: str) -> Image.Image:
    return render_text((1700, 2200), [((150, 1000), f"{label}: {value}", text_px),
                                      ((150, 300), "Delivery note for the quarter, see the fields below.", 28)])


@pytest.fixture(scope="module")
def reader():
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract binary not installed")
    return OcrReader(workers=2)


def test_reader_is_a_target(reader):
    assert isinstance(reader, Target)
    assert reader.name == "tesseract"


@needs_tesseract
def test_reads_large_text_at_native(reader):
    img = _field_page(64, "Invoice No.", "INV-48213")
    questions = ['What is the value of "Invoice No."?', 'What is the value of "Order date"?']
    calls = []
    original = reader._ocr
    reader._ocr = lambda gray: calls.append(gray.size) or original(gray)
    try:
        answers = reader.answer_batch([img, img], questions)
    finally:
        del reader._ocr
    assert len(calls) == 1  # one OCR run for two questions on one image
    assert anls(answers[0], ["INV-48213"]) >= 0.85
    assert answers[1] == ""  # no such field: no answer, no guess


@needs_tesseract
def test_fine_print_is_read_at_native_but_not_at_384(reader):
    # 6.5 pt at 200 dpi = 18 px: legible on the native page, a few pixels tall at 384 long side
    img = _field_page(18, "Audit code", "KX-730215")
    q = 'According to footnote 1, what is the "Audit code"?'
    small = resize_image(img, fit_long_side(*img.size, 384))
    native, low = reader.answer_batch([img, small], [q, q])
    assert anls(native, ["KX-730215"]) >= 0.85
    assert anls(low, ["KX-730215"]) < 0.85


def test_working_scale_and_modes():
    r = OcrReader.__new__(OcrReader)
    r.work_long_side = 1000
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    out = r.to_working_scale(rgba)
    assert out.mode == "L" and out.size == (1000, 667)
    assert out.getpixel((10, 10)) == 255  # transparent -> white paper
    with pytest.raises(TypeError):
        r.to_working_scale(b"png")


def test_missing_binary_says_how_to_install():
    with pytest.raises(TesseractMissingError, match="apt-get install tesseract-ocr"):
        OcrReader(tesseract_cmd="/nonexistent/tesseract")
    if shutil.which("tesseract"):
        OcrReader()  # the global command was restored


def test_batch_arguments_are_checked():
    r = OcrReader.__new__(OcrReader)
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        r.answer_batch([Image.new("L", (5, 5))] * 2, ["q"])
    with pytest.raises(ValueError, match="work_long_side"):
        OcrReader(work_long_side=10)
