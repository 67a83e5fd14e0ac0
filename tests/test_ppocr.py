"""The PP-OCR reader (``--target ocr:ppocr``) on a real page, and answer matching that survives
its dropped spaces."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from cares_integrations.training.anls import find_answer, reading_score, squash
from cares_integrations.training.ocr import OcrWord, answer_from_words, split_glued

FIXTURE = Path(__file__).parent / "fixtures" / "real_pages"


def _words(text: str) -> list[OcrWord]:
    out, x = [], 0
    for token in text.split():
        out.append(OcrWord(token, x, 10, 9 * len(token), 20, 1, 1, 1))
        x += 9 * len(token) + 9
    return out


def test_find_answer_matches_inside_tokens_and_across_dropped_spaces():
    assert find_answer("to the", "rows totheproblem object") == (1.0, "tothe")
    assert find_answer("Problem Object", "addsthreerows to theproblemobject.")[0] == 1.0
    score, span = find_answer("symbolic link to", "Create a symbollc link t0 file")
    assert 0.8 < score < 1.0 and span.startswith("symbollc")
    assert find_answer("2010", "")[0] == 0.0
    assert find_answer("fi", "\ufb01le")[0] == 1.0  # a ligature reads as its letters
    assert reading_score("© 2004, 2O10 W.", ["2004, 2010"]) == pytest.approx(8 / 9)  # "2004,2010": one slip in nine
    assert squash(" A  b\u2019c ") == "ab'c"


def test_split_glued_cuts_an_anchor_out_of_a_glued_token():
    words = _words("The statements4 adds three rows totheproblem object.")
    split = split_glued(words, "rows to")
    assert [w.text for w in split][4:7] == ["rows", "to", "theproblem"]
    assert split[5].left > split[4].right and split[6].left >= split[5].right
    assert split_glued(words, "absent anchor") == words


def test_answers_survive_glued_tokens():
    words = _words("The statements4 adds three rows totheproblem object.")
    assert answer_from_words(words, 'Which code comes right after "statement" in the text?') == "s4"
    assert answer_from_words(words, 'Which word comes right after "rows to" in the text?') == "theproblem"
    # a glued multi-word anchor ("Createa") still anchors
    glued = _words("Createa symbolic link")
    assert answer_from_words(glued, 'Which word comes right after "Create a" in the text?') == "symbolic"


@pytest.fixture(scope="module")
def refcard_page(tmp_path_factory) -> Image.Image:
    if shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils not installed")
    tmp = tmp_path_factory.mktemp("refcard")
    pdf = tmp / "refcard.pdf"
    pdf.write_bytes(gzip.decompress((FIXTURE / "refcard-en-a4.pdf.gz").read_bytes()))
    subprocess.run(["pdftoppm", "-r", "150", "-f", "1", "-l", "1", "-singlefile", "-png", str(pdf), str(tmp / "p")],
                   check=True)
    return Image.open(tmp / "p.png").convert("RGB")


@pytest.fixture(scope="module")
def reader():
    pytest.importorskip("rapidocr_onnxruntime")
    from cares_integrations.training.ppocr import PpOcrReader

    return PpOcrReader()


def test_ppocr_reads_a_real_title_in_a_crop_at_the_page_scale(reader, refcard_page):
    page = refcard_page  # 1754 x 1241, the Debian reference card (landscape A4) at 150 dpi
    crop = page.crop((1250, 80, 1700, 140))
    lines = reader.read_lines(crop, context_size=page.size)
    assert any("Debian Reference Card" in ln.text or "DebianReferenceCard" in ln.text for ln in lines)
    assert all(0 <= ln.x0 < ln.x1 <= crop.width + 1 and 0 <= ln.y0 < ln.y1 <= crop.height + 1 for ln in lines)
    # the same crop from a page sent at 384 px is read at that page's scale: the title blurs away
    small = page.resize((384, page.height * 384 // page.width), Image.Resampling.LANCZOS)
    s = 384 / page.width
    tiny = small.crop((int(1250 * s), int(80 * s), int(1700 * s), int(140 * s)))
    text = " ".join(ln.text for ln in reader.read_lines(tiny, context_size=small.size))
    assert reading_score(text, "Debian Reference Card") < 1.0


def test_ppocr_target_answers_template_questions(reader, refcard_page):
    band = refcard_page.crop((1250, 80, 1700, 140))
    answers = reader.answer_batch([band, band], ['Which word comes right after "Debian Reference" in the text?',
                                                 'Which word comes right after "Nowhere" in the text?'])
    assert answers == ["Card", ""]
    with pytest.raises(ValueError, match="questions"):
        reader.answer_batch([band], [])


def test_cli_builds_the_ppocr_target():
    pytest.importorskip("rapidocr_onnxruntime")
    from cares_integrations.training.cli import make_target
    from cares_integrations.training.ppocr import PpOcrReader

    target = make_target("ocr:ppocr")
    assert isinstance(target, PpOcrReader) and target.name == "ocr:ppocr"
