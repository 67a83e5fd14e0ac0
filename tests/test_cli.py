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


@pytest.mark.parametrize("name,fmt", [("out.png", "PNG"), ("out.jpg", "JPEG"), ("OUT.JPEG", "JPEG"),
                                      ("out.webp", "WEBP")])
@pytest.mark.parametrize("input_format", ["PNG", "JPEG"])
def test_output_format_follows_the_extension(name, fmt, input_format, tmp_path, page_png, capsys):
    page = tmp_path / f"page.{input_format.lower()}"
    Image.open(io.BytesIO(page_png)).convert("RGB").save(page, format=input_format)
    assert main(["route", str(page), "q", "--router", "fixed:300", "--target", "qwen2.5-vl",
                 "-o", str(tmp_path / name)]) == 0
    assert Image.open(tmp_path / name).format == fmt


@pytest.mark.parametrize("args,message", [
    (["route", "PAGE", "q", "--router", "fixed:abc"], "argument --router: fixed router needs a positive pixel size"),
    (["route", "PAGE", "q", "--router", "fixed:0"], "argument --router: fixed router needs a positive pixel size"),
    (["route", "PAGE", "q", "--router", "fixed:-5"], "argument --router: fixed router needs a positive pixel size"),
    (["route", "PAGE", "q", "--target", "gpt-9000"], "argument --target: unknown target 'gpt-9000'"),
    (["route", "PAGE", "q", "-o", "out.gif"], "argument --output/-o: cannot tell the image format"),
    (["route", "PAGE", "q", "-o", "out"], "argument --output/-o: cannot tell the image format"),
    (["route", "PAGE", "q", "--max-pixels", "0"], "argument --max-pixels: expected a positive integer"),
    (["route", "PAGE", "q", "--mode", "fast"], "argument --mode: invalid choice"),
    (["route", "PAGE"], "the following arguments are required: question"),
    (["route", "PAGE", "q", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["eval", "--labels", "l.jsonl", "--router", "fixed:abc"], "argument --router: fixed router needs"),
    (["eval", "--labels", "l.jsonl", "--target", "gpt-9000"], "argument --target: unknown target"),
    (["train", "--labels", "l", "--base-model", "m", "--out", "o", "--class-weights", "a,b"],
     "argument --class-weights: expected 'balanced' or comma-separated numbers"),
    (["label", "--dataset", "d", "--target", "ocr", "--out", "o", "--resolutions", "x"], "argument --resolutions"),
    (["frobnicate"], "argument command: invalid choice"),
    ([], "the following arguments are required: command"),
])
def test_argument_errors_are_one_line_with_exit_code_2(args, message, page_file, capsys):
    args = [str(page_file) if a == "PAGE" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    command = f"cares {args[0]}" if args and args[0] != "frobnicate" else "cares"
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), captured.err
    assert message in lines[0] and "Traceback" not in captured.err and captured.out == ""


def test_fixed_router_errors_in_python_too():
    from cares_integrations import load_router

    for bad in ("fixed:abc", "fixed:0", "fixed:-3"):
        with pytest.raises(ValueError, match="positive pixel size"):
            load_router(bad)


def test_version(capsys):
    import cares_integrations

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"cares {cares_integrations.__version__}"


@pytest.mark.parametrize("command", [["route", "--help"], ["eval", "--help"]])
def test_router_help_names_every_source_form(command, capsys):
    with pytest.raises(SystemExit):
        main(command)
    help_text = " ".join(capsys.readouterr().out.split())
    for form in ("'default'", "'text-scale'", "'learned-default'", "'fixed:N'", "gate, learned or calibrated router folder",
                 "hub id", "'hub:org/name'"):
        assert form in help_text, form


def test_every_router_name_in_the_help_loads(page_file, capsys):
    from cares_integrations.routers.registry import BUILTIN_ROUTERS

    for name in BUILTIN_ROUTERS + ("fixed:640",):
        assert main(["route", str(page_file), "q", "--router", name, "--target", "qwen2.5-vl"]) == 0
    assert "learned" in capsys.readouterr().out


def test_synthetic_help_says_n_counts_pages(capsys):
    from cares_integrations.training.synthetic import main as synthetic_main

    with pytest.raises(SystemExit):
        synthetic_main(["--help"])
    assert "number of pages (not samples" in capsys.readouterr().out


def test_max_pixels_can_be_lowered_and_raised(page_file, capsys):
    assert main(["route", str(page_file), "q", "--router", "fixed:300", "--max-pixels", "100000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cares route: error:") and "--max-pixels" in err and len(err.splitlines()) == 1
    assert main(["route", str(page_file), "q", "--router", "fixed:300", "--max-pixels", "935000"]) == 0


def test_default_pixel_limit_is_raised_by_max_pixels(tmp_path, capsys):
    from cares_integrations.core.payload import DEFAULT_MAX_PIXELS

    big = tmp_path / "scan.png"
    Image.new("1", (8200, 8200), 1).save(big)  # 67 MP, over the default limit
    assert 8200 * 8200 > DEFAULT_MAX_PIXELS
    assert main(["route", str(big), "q", "--router", "fixed:300", "--target", "qwen2.5-vl"]) == 1
    assert "--max-pixels" in capsys.readouterr().err
    assert main(["route", str(big), "q", "--router", "fixed:300", "--target", "qwen2.5-vl",
                 "--max-pixels", "70000000"]) == 0


@pytest.fixture()
def page_server(page_png):
    """A loopback http server handing out the test page; records the paths asked for."""
    import http.server
    import threading

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(page_png)))
            self.end_headers()
            self.wfile.write(page_png)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page.png", requests
    server.shutdown()
    server.server_close()


def test_allow_host_fetches_a_remote_page(page_server, capsys):
    url, requests = page_server
    assert main(["route", url, "q", "--router", "fixed:384", "--target", "qwen2.5-vl"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cares route: error:") and requests == []
    assert main(["route", url, "q", "--router", "fixed:384", "--target", "qwen2.5-vl",
                 "--allow-host", "127.0.0.1"]) == 0
    assert "page: 850x1100" in capsys.readouterr().out and requests == ["/page.png"]
