"""``cares label | train | eval`` end to end: help texts, targets, the whole loop on tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import render_text
from langchain_helpers import RecordingChatModel, decode
from PIL import Image, ImageDraw

from cares_integrations.cli import main as cares_main
from cares_integrations.training.cli import main, make_target


class SizeChat(RecordingChatModel):
    """The recording chat model, reading "need N" in the prompt and answering right only when the
    image's long side reaches N px."""

    def answer(self, messages) -> str:
        image_block, text_block = messages[0].content
        return "the answer" if max(decode(image_block).size) >= int(text_block["text"].split()[1]) else "no idea"

    @property
    def _llm_type(self) -> str:
        return "size-chat"


def make_dataset(folder: Path, needs: list[int], size: tuple[int, int] = (850, 1100)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, need in enumerate(needs):
        img = Image.new("RGB", size, "white")
        ImageDraw.Draw(img).rectangle([20 + i * 7, 40, 200, 300], outline="black", width=3 + i % 4)
        img.save(folder / f"p{i}.png")
        lines.append(json.dumps({"id": f"s{i}", "image": f"p{i}.png", "question": f"need {need}",
                                 "answers": ["the answer"], "split": "test"}))
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("command, words", [
    ("label", ["samples.jsonl", "hf:MODEL_ID_OR_PATH", "langchain:module.path:attribute", "--tau", "resume"]),
    ("train", ["--base-model", "cares_gate.json", "label_resolution", "--layers-sweep"]),
    ("eval", ["--router", "--target", "--plots", "savings.png", "oracle"]),
])
def test_help_explains_inputs_and_outputs(command, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cares_main([command, "--help"])  # through the top-level dispatcher
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in words:
        assert word in out, word


def test_make_target_forms(tmp_path):
    target = make_target("langchain:test_training_cli:SizeChat", max_concurrency=2)
    assert target.name == "langchain:size-chat" and target.max_concurrency == 2
    with pytest.raises(ValueError, match="unknown target 'gpt'"):
        make_target("gpt")
    with pytest.raises(ValueError, match="module.path:attribute"):
        make_target("langchain:nothing")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        make_target("langchain:test_training_cli:Nope")
    with pytest.raises(ValueError, match="model id or path"):
        make_target("hf:")


def test_label_then_eval_with_a_langchain_target(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", [100, 700, 1000, 100, 5000, 700])
    out = tmp_path / "labels.jsonl"
    rc = main(["label", "--dataset", str(data), "--target", "langchain:test_training_cli:SizeChat",
               "--out", str(out), "--no-progress", "--batch-size", "4", "--prompt-template", "{question} please"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "labeled 6 samples with langchain:size-chat" in printed
    labels = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["label_resolution"] for x in labels] == [384, 768, 1024, 384, 1024, 768]
    assert labels[0]["split"] == "test"

    rc = main(["eval", "--labels", str(out), "--dataset", str(data), "--router", "fixed:768", "--target", "openai:gpt-4o",
               "--plots", str(tmp_path / "plots"), "--json", str(tmp_path / "report.json")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "router (fixed-768)" in printed and "oracle" in printed and "tokens saved" in printed
    assert (tmp_path / "plots" / "savings.png").stat().st_size > 0
    report = json.loads((tmp_path / "report.json").read_text())
    # fixed 768 is credited with each sample's 768-px score
    assert report["router"]["mean_score"] == pytest.approx(sum(x["scores"][1] for x in labels) / 6)
    assert [x["scores"][1] for x in labels].count(1.0) == 4


def test_eval_reports_errors_cleanly(tmp_path, capsys):
    rc = main(["eval", "--labels", str(tmp_path / "missing.jsonl")])
    assert rc == 1
    assert "cares eval: error" in capsys.readouterr().err
    labels = tmp_path / "l.jsonl"
    labels.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--labels", str(labels), "--target", "no-such-model"])
    assert exit_info.value.code == 2
    assert "no-such-model" in capsys.readouterr().err


def test_ocr_target_labels_a_tiny_page(tmp_path, capsys):
    """The Tesseract reader as a target on one small page with large text."""
    pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:  # pytesseract alone cannot read: it runs the binary
        pytest.skip("tesseract binary not installed (CI requires it: tests/test_environment.py)")
    img = render_text((320, 90), [((10, 25), "Total: 4821", 26)])
    (tmp_path / "ds").mkdir()
    img.save(tmp_path / "ds" / "page.png")
    (tmp_path / "ds" / "samples.jsonl").write_text(json.dumps(
        {"id": "t", "image": "page.png", "question": 'What is the value of "Total"?', "answers": ["4821"]}) + "\n")
    out = tmp_path / "labels.jsonl"
    assert main(["label", "--dataset", str(tmp_path / "ds"), "--target", "ocr", "--out", str(out),
                 "--resolutions", "40,320", "--no-progress"]) == 0
    [label] = [json.loads(x) for x in out.read_text().splitlines()]
    assert label["target"] == "tesseract"
    assert label["predictions"][1] == "4821" and label["scores"][1] == 1.0
    assert label["scores"][0] < 0.85 and label["label_resolution"] == 320


def test_train_then_eval_the_gate(tmp_path, capsys):
    """The whole loop: label, train a gate on a tiny random proxy VLM, evaluate it."""
    from tiny_models import tiny_idefics3

    data = make_dataset(tmp_path / "ds", [100, 500, 5000] * 3, size=(400, 520))
    labels = tmp_path / "labels.jsonl"
    assert main(["label", "--dataset", str(data), "--target", "langchain:test_training_cli:SizeChat",
                 "--out", str(labels), "--no-progress"]) == 0
    gate = tmp_path / "gate"
    rc = main(["train", "--labels", str(labels), "--dataset", str(data), "--base-model", str(tiny_idefics3()),
               "--out", str(gate), "--epochs", "3", "--batch-size", "4", "--no-progress", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "saved gate to" in capsys.readouterr().out
    assert (gate / "training_report.json").is_file()
    rc = main(["eval", "--labels", str(labels), "--dataset", str(data), "--router", str(gate), "--target", "qwen2.5-vl",
               "--plots", str(tmp_path / "plots"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "classifier: accuracy" in printed and "continuous" in printed
    assert (tmp_path / "plots" / "reliability.png").is_file()
