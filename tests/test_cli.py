"""``cares route``: the decision, sizes and tokens, JSON output, the resized file, clean errors."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from cares_integrations.cli import main
from cares_integrations.core.tokens import visual_tokens


@pytest.fixture()
def page_file(tmp_path, page_png):
    path = tmp_path / "page.png"
    path.write_bytes(page_png)
    return path


def test_route_prints_decision_and_tokens_per_target(page_file, capsys):
    assert main(["route", str(page_file), "What is the total?", "--router", "fixed:384",
                 "--target", "openai:gpt-4o", "--target", "qwen2.5-vl"]) == 0
    out = capsys.readouterr().out
    assert "page: 850x1100" in out and "asked long side: 384 px" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("openai:", "qwen"))}
    assert set(lines) == {"openai:gpt-4o", "qwen2.5-vl"}
    before, after = int(lines["qwen2.5-vl"][2]), int(lines["qwen2.5-vl"][3])
    assert before == visual_tokens("qwen2.5-vl", 850, 1100) and after < before


def test_route_json_and_output_file(page_file, tmp_path, capsys):
    out_path = tmp_path / "small.png"
    assert main(["route", str(page_file), "q", "--router", "fixed:500", "--target", "anthropic:claude-sonnet-4",
                 "--json", "-o", str(out_path)]) == 0
    decision = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert decision["long_side"] == 500 and decision["target"] == "anthropic:claude-sonnet-4"
    written = Image.open(out_path)
    assert written.format == "PNG" and list(written.size) == decision["send_size"]


def test_route_reads_stdin(page_png, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(page_png)))
    assert main(["route", "-", "q", "--router", "fixed:384", "--target", "gemini"]) == 0
    assert "gemini" in capsys.readouterr().out


def test_route_with_the_default_router(page_file, capsys):
    assert main(["route", str(page_file), "What is the title?"]) == 0
    out = capsys.readouterr().out
    assert "router: " in out and "openai:gpt-4o" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["route", "/no/such/page.png", "q"], "cannot read image file"),
        (["route", "PAGE", "q", "--target", "gpt-9000"], "unknown"),
    ],
)
def test_route_errors_are_one_clean_line(args, message, page_file, capsys):
    args = [str(page_file) if a == "PAGE" else a for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("cares route: error:") and message in err.lower()


def test_corrupt_page_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["route", str(bad), "q"]) == 1
    assert "not a recognisable image" in capsys.readouterr().err


def test_help_lists_training_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("route", "label", "train", "eval"):
        assert command in out


def test_route_predicts_once_for_several_targets(page_file, monkeypatch, capsys):
    from cares_integrations.routers.fixed import FixedRouter

    calls = []
    original = FixedRouter._predict

    def counting(self, images, queries):
        calls.append(len(images))
        return original(self, images, queries)

    monkeypatch.setattr(FixedRouter, "_predict", counting)
    assert main(["route", str(page_file), "q", "--router", "fixed:384", "--target", "openai:gpt-4o",
                 "--target", "qwen2.5-vl", "--target", "gemini"]) == 0
    assert calls == [1]
