"""An unreachable hub fails at once with one line: the id, the cache folder, how to use a local copy.

The hub is made unreachable deterministically: ``HF_ENDPOINT`` points at a loopback port nothing
listens on (the connection is refused at once), and ``HF_HOME`` at an empty folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parent.parent


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


def _run_offline(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HF_HUB_CACHE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf-home"))
    return subprocess.run([sys.executable, "-m", "cares_integrations", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_one_clear_line(result: subprocess.CompletedProcess, command: str, model_id: str, tmp_path: Path):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"cares {command}: error: cannot reach the Hugging Face hub")
    assert repr(model_id) in line and str(tmp_path / "hf-home" / "hub") in line
    assert "HF_HUB_OFFLINE" in line and "local folder" in line


def test_train_with_the_documented_base_model_fails_fast_offline(tmp_path):
    pytest.importorskip("transformers")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": "s0", "image": "p.png", "question": "q", "answers": ["a"],
                                  "target": "ocr", "resolutions": [384, 768], "predictions": ["a", "a"],
                                  "scores": [1.0, 1.0], "label": 0, "label_resolution": 384}) + "\n")
    model_id = "HuggingFaceTB/SmolVLM-256M-Instruct"
    result = _run_offline(["train", "--labels", str(labels), "--base-model", model_id,
                           "--out", str(tmp_path / "gate")], tmp_path)
    _assert_one_clear_line(result, "train", model_id, tmp_path)


def test_gate_by_hub_id_fails_fast_offline(tmp_path):
    pytest.importorskip("torch")
    page = ROOT / "examples" / "pages" / "report-serif.png"
    result = _run_offline(["route", str(page), "q", "--router", "some-org/some-gate"], tmp_path)
    _assert_one_clear_line(result, "route", "some-org/some-gate", tmp_path)
