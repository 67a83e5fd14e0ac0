"""The ``cares`` command line: ``cares route`` here; ``serve`` from serve; ``label``, ``train``, ``eval`` from training."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

DEFAULT_TARGETS = ("openai:gpt-4o", "anthropic:claude-sonnet-4", "qwen2.5-vl")

_TRAINING_COMMANDS = {
    "label": "Label (image, question, answers) samples with a target model at each resolution.",
    "train": "Train (and calibrate) a gate head on labeled samples; saves a router folder.",
    "eval": "Evaluate a router on labeled samples: accuracy, calibration, tokens saved vs retention.",
    "calibrate": "Fit a router's safety margin on labeled samples, with a retention guarantee.",
}


def _route_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "route",
        help="Route one page image for a question and print the decision.",
        description=(
            "Route PAGE (a path, or '-' for image bytes on standard input) for QUESTION: print the "
            "size the router picks and, for each target, the visual tokens before and after."
        ),
    )
    p.add_argument("page", help="page image: a file path, a data URL, or '-' to read bytes from stdin")
    p.add_argument("question", help="the question the page should answer")
    p.add_argument("--router", default=None, help="router source: a gate folder or hub id, 'text-scale', "
                   "'fixed:768'; default: the embedded default router")
    p.add_argument("--target", action="append", default=None,
                   help=f"target model for sizing and token counts (repeatable; default: {', '.join(DEFAULT_TARGETS)})")
    p.add_argument("--mode", choices=("continuous", "discrete"), default=None,
                   help="how class probabilities become a long side (gates only)")
    p.add_argument("--device", default=None, help="device for gates: cuda, mps, cpu (default: auto)")
    p.add_argument("--output", "-o", default=None,
                   help="write the image resized for the first target to this file")
    p.add_argument("--json", action="store_true", help="print decisions as JSON lines")


def _cmd_route(args: argparse.Namespace) -> int:
    from .routers.registry import load_router
    from .core.payload import load_image
    from .core.policy import ResolutionPolicy
    from .core.resize import resize_image

    options = {}
    if args.mode:
        options["policy"] = ResolutionPolicy(mode=args.mode)
    router = load_router(args.router, device=args.device, **options)
    source = sys.stdin.buffer.read() if args.page == "-" else args.page
    decoded = load_image(source)
    targets = args.target or list(DEFAULT_TARGETS)
    # One prediction for the page and question; only the provider-aware sizing differs per target.
    prediction = router.predict([decoded], [args.question])[0]
    decisions = [router.decide(decoded, prediction, target=t) for t in targets]
    first = decisions[0]
    if args.json:
        for d in decisions:
            print(json.dumps(d.model_dump(mode="json")))
    else:
        w, h = first.original_size
        print(f"page: {w}x{h}  question: {args.question!r}")
        print(f"router: {first.router}  asked long side: {first.long_side} px")
        if first.probabilities is not None:
            probs = ", ".join(f"{b}px: {p:.2f}" for b, p in zip(first.bins or [], first.probabilities))
            print(f"class probabilities: {probs}  ({first.mode})")
        for note in first.notes:
            print(f"note: {note}")
        print(f"{'target':<28} {'send size':>11} {'tokens before':>14} {'after':>7} {'saved':>7}  step")
        for d in decisions:
            saved = (1 - d.tokens_after / d.tokens_before) if d.tokens_before else 0.0
            size = f"{d.send_size[0]}x{d.send_size[1]}"
            print(f"{d.target:<28} {size:>11} {d.tokens_before:>14} {d.tokens_after:>7} {saved:>7.0%}  {d.step or ''}")
        for d in decisions:
            if d.cannot_save:
                print(f"why 0%: {d.cannot_save}")
    if args.output:
        data = decoded.encode(resize_image(decoded.image, first.send_size))
        with open(args.output, "wb") as fh:
            fh.write(data)
        if not args.json:
            print(f"wrote {args.output} ({first.send_size[0]}x{first.send_size[1]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``cares``."""
    parser = argparse.ArgumentParser(
        prog="cares", description="Context-aware resolution routing for vision-language model calls."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _route_parser(sub)
    sub.add_parser("serve", help="Serve a router over HTTP on Ray Serve (extra 'serve').", add_help=False)
    for name, text in _TRAINING_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cares`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from .serve.cli import main as serve_main

        return int(serve_main(argv[1:]) or 0)
    if argv and argv[0] in _TRAINING_COMMANDS:
        from .training.cli import main as training_main

        return int(training_main(argv) or 0)
    args = build_parser().parse_args(argv)
    if args.command == "route":
        from .core.errors import CaresError

        try:
            return _cmd_route(args)
        except (CaresError, ImportError, OSError) as exc:
            print(f"cares route: error: {exc}", file=sys.stderr)
            return 1
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
