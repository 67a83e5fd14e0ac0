"""The ``cares`` command line: ``cares route`` here; ``serve`` from serve; ``label``, ``train``, ``eval`` from training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence

DEFAULT_TARGETS = ("openai:gpt-4o", "anthropic:claude-sonnet-4", "qwen2.5-vl")

_TRAINING_COMMANDS = {
    "label": "Label (image, question, answers) samples with a target model at each resolution.",
    "train": "Train (and calibrate) a gate head on labeled samples; saves a router folder.",
    "eval": "Evaluate a router on labeled samples: accuracy, calibration, tokens saved vs retention.",
    "calibrate": "Fit a router's safety margin on labeled samples, with a retention guarantee.",
}


#: Output file extensions ``-o`` understands, and the format each one is written in.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``cares <cmd>: error: ...`` line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print one error line naming the command and where its help is, then exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def add_command(self, sub: argparse._SubParsersAction, name: str, **kwargs) -> "CliParser":
        """Add subcommand ``name``; its unrecognized arguments are then reported under its name."""
        parser = sub.add_parser(name, **kwargs)
        parser.set_defaults(command_parser=parser)
        return parser

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parse like argparse, reporting stray arguments as an error of the subcommand given."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            getattr(parsed, "command_parser", self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def router_source(text: str) -> str:
    """argparse type for ``--router``: checks built-in names and ``fixed:N`` before any work."""
    from .routers.registry import fixed_long_side

    if text.startswith("fixed:"):
        try:
            fixed_long_side(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def target_name(text: str) -> str:
    """argparse type for ``--target``: an unknown name is an argument error listing the known ones."""
    from .core.tokens import get_target

    try:
        get_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def positive_int(text: str) -> int:
    """argparse type for counts and limits that must be a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _output_path(text: str) -> str:
    suffix = Path(text).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"cannot tell the image format from {text!r}; end the file name in .png, .jpg, .jpeg or .webp")
    return text


def _route_parser(parser: CliParser, sub: argparse._SubParsersAction) -> None:
    from .core.payload import DEFAULT_MAX_PIXELS
    from .routers.registry import ROUTER_SOURCES

    p = parser.add_command(
        sub, "route",
        help="Route one page image for a question and print the decision.",
        description=(
            "Route PAGE (a path, or '-' for image bytes on standard input) for QUESTION: print the "
            "size the router picks and, for each target, the visual tokens before and after."
        ),
    )
    p.add_argument("page", help="page image: a file path, a data URL, an http(s) URL (host allowed with "
                   "--allow-host), or '-' to read bytes from stdin")
    p.add_argument("question", help="the question the page should answer")
    p.add_argument("--router", type=router_source, default=None,
                   help=f"router source: {ROUTER_SOURCES} (default: 'default')")
    p.add_argument("--target", action="append", type=target_name, default=None,
                   help=f"target model for sizing and token counts (repeatable; default: {', '.join(DEFAULT_TARGETS)})")
    p.add_argument("--mode", choices=("continuous", "discrete"), default=None,
                   help="how class probabilities become a long side (gates only)")
    p.add_argument("--device", default=None, help="device for gates: cuda, mps, cpu (default: auto)")
    p.add_argument("--output", "-o", type=_output_path, default=None,
                   help="write the image resized for the first target to this file, in the format its "
                        "extension names (.png, .jpg/.jpeg, .webp)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse pages with more pixels than this (default: {DEFAULT_MAX_PIXELS}); raise it "
                        "for large scans")
    p.add_argument("--allow-host", action="append", default=None, metavar="HOST",
                   help="allow fetching an http(s) PAGE from HOST ('*.example.com' for subdomains; "
                        "repeatable; default: no remote fetching)")
    p.add_argument("--json", action="store_true", help="print decisions as JSON lines")


def _cmd_route(args: argparse.Namespace) -> int:
    from .routers.registry import load_router
    from .core.payload import FetchPolicy, load_image
    from .core.policy import ResolutionPolicy
    from .core.resize import resize_image

    fetch = FetchPolicy(allowed_hosts=args.allow_host) if args.allow_host else None
    options = {"max_pixels": args.max_pixels, "fetch": fetch}
    if args.mode:
        options["policy"] = ResolutionPolicy(mode=args.mode)
    router = load_router(args.router, device=args.device, **options)
    source = sys.stdin.buffer.read() if args.page == "-" else args.page
    decoded = load_image(source, fetch=fetch, max_pixels=args.max_pixels)
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
        fmt = OUTPUT_FORMATS[Path(args.output).suffix.lower()]
        data = decoded.encode(resize_image(decoded.image, first.send_size), fmt=fmt)
        with open(args.output, "wb") as fh:
            fh.write(data)
        if not args.json:
            print(f"wrote {args.output} ({first.send_size[0]}x{first.send_size[1]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``cares``."""
    from . import __version__

    parser = CliParser(
        prog="cares", description="Context-aware resolution routing for vision-language model calls."
    )
    parser.add_argument("--version", action="version", version=f"cares {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _route_parser(parser, sub)
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
        from .core.errors import CaresError, DecompressionBombError

        try:
            return _cmd_route(args)
        except DecompressionBombError as exc:
            print(f"cares route: error: {exc}; from here: --max-pixels N", file=sys.stderr)
            return 1
        except (CaresError, ImportError, OSError, ValueError) as exc:
            print(f"cares route: error: {exc}", file=sys.stderr)
            return 1
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
