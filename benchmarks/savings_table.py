"""What routing saves per target family, in each provider's own cost steps (docs/tokens.md).

Three page types at three router requests; each cell is tokens before -> after and the step
chosen (cares_integrations.core.steps.plan). Pure arithmetic on the token models, no images:

    python benchmarks/savings_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cares_integrations.core.steps import plan  # noqa: E402

PAGES = {"200-dpi letter (1700x2200)": (1700, 2200), "slide (1920x1080)": (1920, 1080),
         "phone photo of a receipt (3024x4032)": (3024, 4032)}
REQUESTS = (384, 768, 1024)
TARGETS = ("openai:gpt-4o", "openai:gpt-5.4", "openai:gpt-5.5", "openai:gpt-4.1-mini", "anthropic:claude-sonnet-4",
           "anthropic:claude-opus-4-7", "gemini", "gemini-3", "qwen2.5-vl", "qwen3-vl", "internvl3", "smolvlm",
           "llava-onevision")


def main() -> None:
    """Print one markdown table per page type."""
    for page, (w, h) in PAGES.items():
        print(f"\n**{page}**\n")
        print("| target | " + " | ".join(f"request {r}" for r in REQUESTS) + " |")
        print("|---|" + "---|" * len(REQUESTS))
        for target in TARGETS:
            cells = []
            for r in REQUESTS:
                p = plan(w, h, r, target)
                saved = 1 - p.tokens_after / p.tokens_before
                cells.append(f"{p.tokens_before} → {p.tokens_after} (−{saved:.0%}; {p.step.label})")
            print(f"| `{target}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
