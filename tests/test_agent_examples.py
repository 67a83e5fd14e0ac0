"""The two offline agent examples run and print, per model call, sizes sent and tokens saved."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^turn (\d), (?:model|LLM) call \d: sent (\d+x\d+(?:, \d+x\d+)*); visual tokens (\d+) -> (\d+) "
                  r"\(saved (\d+)\); cache hits (\d)/(\d)$")


@pytest.mark.slow
@pytest.mark.parametrize("script,calls", [("langchain_agent.py", 4), ("llamaindex_agent.py", 3)])
def test_agent_example_runs(script, calls):
    if script == "langchain_agent.py":
        pytest.importorskip("langchain.agents")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    rows = [LINE.match(line) for line in out.splitlines() if line.startswith("turn ")]
    assert len(rows) == calls and all(rows), out
    for row in rows:
        before, after, saved = int(row[3]), int(row[4]), int(row[5])
        assert before - after == saved >= 0
        assert all(max(map(int, s.split("x"))) < 2200 for s in row[2].split(", "))  # never the 1700x2200 original
    assert any(int(r[5]) > 0 for r in rows)
    assert "1700x2200" in out.splitlines()[-1]  # the stored conversation keeps the original
