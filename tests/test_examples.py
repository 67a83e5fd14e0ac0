"""The LlamaIndex example runs offline and prints its per-page rows in aligned columns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_llamaindex_example_columns_line_up():
    pytest.importorskip("llama_index.core")
    out = subprocess.run([sys.executable, "examples/llamaindex_query_engine.py"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    rows = [line for line in out.splitlines() if re.search(r"\d+x\d+ +-> +\d+x\d+", line)]
    assert len(rows) >= 2, out
    for marker in (" -> ", "tokens"):
        assert len({row.index(marker) for row in rows}) == 1, "\n".join(rows)
    assert len({len(row) for row in rows}) == 1, "\n".join(rows)
