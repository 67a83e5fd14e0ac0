"""The README's quick start and .ci/run must say the same two commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- quickstart:start -->", 1)[1].split("<!-- quickstart:end -->", 1)[0]
    code = re.findall(r"```(?:bash|sh)?\n(.*?)```", block, flags=re.S)
    return [line.strip() for chunk in code for line in chunk.splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_exactly_two_commands():
    commands = _quickstart_commands()
    assert len(commands) == 2, commands
    assert commands[0].startswith("bash scripts/setup.sh") and "route" in commands[0]
    assert commands[1].startswith("bash scripts/setup.sh") and "pytest" in commands[1]


def test_ci_runs_the_readme_commands_verbatim_and_in_order():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    positions = [ci_lines.index(cmd) for cmd in _quickstart_commands()]
    assert positions == sorted(positions)


def test_quickstart_page_exists():
    page = _quickstart_commands()[0].split("route", 1)[1].split()[0]
    assert (ROOT / page).is_file(), page
