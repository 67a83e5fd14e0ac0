"""What routing saves per target family, in each provider's own cost steps (docs/tokens.md).

Three page types at three router requests; each cell is tokens before -> after and the step
chosen (cares_integrations.core.steps.plan). Pure arithmetic on the token models, no images:

    python benchmarks/savings_table.py

With ``--send-size``: what provider-aware sizing alone (``core.sizing.send_size``, one fixed cost
rule per registered target, aliases left out) does to a 200-dpi letter page at the same requests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cares_integrations import fit_long_side  # noqa: E402
from cares_integrations.core.sizing import send_size  # noqa: E402
from cares_integrations.core.steps import plan  # noqa: E402
from cares_integrations.tokens import get_target, list_targets  # noqa: E402

PAGES = {"200-dpi letter (1700x2200)": (1700, 2200), "slide (1920x1080)": (1920, 1080),
         "phone photo of a receipt (3024x4032)": (3024, 4032)}
REQUESTS = (384, 768, 1024)
TARGETS = ("openai:gpt-4o", "openai:gpt-5.4", "openai:gpt-5.5", "openai:gpt-4.1-mini", "anthropic:claude-sonnet-4",
           "anthropic:claude-opus-4-7", "gemini", "gemini-3", "qwen2.5-vl", "qwen3-vl", "internvl3", "smolvlm",
           "llava-onevision")


def send_size_table(width: int = 1700, height: int = 2200) -> None:
    """Print the base size -> send size table for every distinct registered cost rule."""
    models = {}
    for name in list_targets():
        model = get_target(name)
        models.setdefault(id(model), model)
    print("| target | " + " | ".join(f"request {r}" for r in REQUESTS) + " |")
    print("|---|" + "---|" * len(REQUESTS))
    for model in sorted(models.values(), key=lambda m: m.name):
        cells = []
        for r in REQUESTS:
            base, sent = fit_long_side(width, height, r), send_size(width, height, r, model)
            if sent == base:
                cells.append(f"{base[0]}x{base[1]} ({model.tokens(*base)})")
            else:
                ratio = sent[0] * sent[1] / (base[0] * base[1])
                cells.append(f"{base[0]}x{base[1]} → **{sent[0]}x{sent[1]}** ({model.tokens(*sent)}; {ratio:.2f}x px)")
        print(f"| `{model.name}` | " + " | ".join(cells) + " |")


def main() -> None:
    """Print one markdown table per page type (or, with ``--send-size``, the sizing table)."""
    if "--send-size" in sys.argv[1:]:
        send_size_table()
        return
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
