"""``cares label``, ``cares train`` and ``cares eval``: the label -> train -> eval loop.

The top-level ``cares`` command (``cares_integrations.cli``) hands these three subcommands to
:func:`main` with the full argument list, subcommand name first, e.g.
``main(["label", "--dataset", "data/", "--target", "ocr", "--out", "labels.jsonl"])``.

Targets for ``cares label`` (:func:`make_target`):

- ``ocr`` (or ``ocr:tesseract``): the offline Tesseract reader (``training.ocr.OcrReader``);
- ``ocr:ppocr``: the offline PP-OCRv4 reader (``training.ppocr.PpOcrReader``, rapidocr-onnxruntime);
- ``hf:MODEL_ID_OR_PATH``: a local transformers VLM (:class:`.targets.TransformersTarget`);
- ``langchain:module.path:attribute``: a LangChain chat model object, or a class / factory
  called with no arguments that returns one (:class:`.targets.LangChainChatTarget`), e.g.
  ``langchain:langchain_openai:ChatOpenAI`` or ``langchain:my_models:gpt4o``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ..cli import CliParser, router_source, target_name

__all__ = ["build_parser", "main", "make_target"]

_FORMATS = """\
file formats:
  dataset   a folder with samples.jsonl, one JSON object per line:
            {"id": str, "image": "path/relative/to/folder.png", "question": str,
             "answers": [str, ...], ...other keys are kept in the labels}
  labels    JSONL, one JSON object per line: the sample's keys plus
            "target": str, "resolutions": [int, ...], "predictions": [str per resolution],
            "scores": [ANLS per resolution], "label": index into resolutions,
            "label_resolution": int (px)
"""


def make_target(spec: str, *, max_new_tokens: int = 32, batch_size: int = 8, device: str | None = None,
                dtype: str | None = None, max_concurrency: int = 4, max_retries: int = 3,
                prompt_template: str | None = None, image_format: str = "PNG") -> Any:
    """Build a labeling target from its command-line form (``ocr``, ``hf:...``, ``langchain:...``)."""
    if spec in ("ocr", "ocr:tesseract"):
        from .ocr import OcrReader

        return OcrReader()
    if spec == "ocr:ppocr":
        from .ppocr import PpOcrReader

        return PpOcrReader()
    if spec.startswith("hf:"):
        from .targets import TransformersTarget

        model = spec[3:]
        if not model:
            raise ValueError("--target hf: needs a model id or path, e.g. hf:HuggingFaceTB/SmolVLM-256M-Instruct")
        return TransformersTarget(model, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device,
                                  dtype=dtype, prompt_template=prompt_template)
    if spec.startswith("langchain:"):
        from .targets import LangChainChatTarget

        chat_model = _import_object(spec[len("langchain:"):])
        from langchain_core.runnables import Runnable

        if not isinstance(chat_model, Runnable) and callable(chat_model):
            chat_model = chat_model()
        return LangChainChatTarget(chat_model, max_concurrency=max_concurrency, max_retries=max_retries,
                                   prompt_template=prompt_template, image_format=image_format)
    raise ValueError(f"unknown target {spec!r}; use 'ocr', 'ocr:ppocr', 'hf:MODEL_ID_OR_PATH' or "
                     "'langchain:module.path:attribute'")


def _import_object(ref: str) -> Any:
    module_name, sep, attribute = ref.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"langchain target must look like 'langchain:module.path:attribute', got 'langchain:{ref}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module_name!r} for the langchain target: {exc}") from exc
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


# -- label --------------------------------------------------------------------------------------


def _label_parser(parser: CliParser, sub: argparse._SubParsersAction) -> None:
    p = parser.add_command(
        sub, "label", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Label samples with a target model at each resolution (CARES Algorithm 1).",
        description=(
            "Run TARGET on every sample of DATASET at each resolution (the page resized to that long\n"
            "side, never upscaled), score each answer with ANLS against the reference answers, and\n"
            "label the sample with the lowest resolution whose score >= tau and within delta of\n"
            "the best score (the highest when none is). Results are appended to OUT as they finish;\n"
            "rerunning the same command resumes where it stopped.\n\n"
            "targets:\n"
            "  ocr (or ocr:tesseract)           the offline Tesseract reader\n"
            "  ocr:ppocr                        the offline PP-OCRv4 reader (rapidocr-onnxruntime)\n"
            "  hf:MODEL_ID_OR_PATH              a local transformers VLM (greedy decoding)\n"
            "  langchain:module.path:attribute  a LangChain chat model object or factory,\n"
            "                                   e.g. langchain:langchain_openai:ChatOpenAI\n\n" + _FORMATS),
    )
    p.add_argument("--dataset", required=True, help="dataset folder holding samples.jsonl")
    p.add_argument("--target", required=True, help="the model to label with (see 'targets' above)")
    p.add_argument("--out", required=True, help="labels JSONL to write (appended to; resumed if it exists)")
    p.add_argument("--resolutions", type=_ints, default=[384, 768, 1024],
                   help="comma-separated long sides in px, ascending (default: 384,768,1024)")
    p.add_argument("--tau", type=float, default=0.85, help="ANLS a resolution needs to be sufficient (default: 0.85)")
    p.add_argument("--delta", type=float, default=0.1,
                   help="plateau rule: a sufficient score must also be within delta of the best (default: 0.1)")
    p.add_argument("--anls-threshold", type=float, default=None,
                   help="ANLS cut-off: 0.5 for the DocVQA metric (default: none, as in the CARES code)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per target call and per file write (default: 8)")
    p.add_argument("--no-resume", action="store_true", help="start OUT afresh instead of skipping labeled ids")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("target options")
    g.add_argument("--max-new-tokens", type=int, default=32, help="hf: answer length limit (default: 32)")
    g.add_argument("--device", default=None, help="hf: cuda, mps or cpu (default: auto)")
    g.add_argument("--dtype", default=None, help="hf: bf16, fp16 or fp32 (default: bf16 on CUDA, else fp32)")
    g.add_argument("--max-concurrency", type=int, default=4, help="langchain: requests in flight (default: 4)")
    g.add_argument("--max-retries", type=int, default=3, help="langchain: retries of transient errors (default: 3)")
    g.add_argument("--image-format", default="PNG", help="langchain: PNG, JPEG or WEBP (default: PNG)")
    g.add_argument("--prompt-template", default=None,
                   help="hf/langchain: prompt with a {question} placeholder (default: the question, then "
                        "'Answer the question using a single word or phrase.')")


def _cmd_label(args: argparse.Namespace) -> int:
    from .labeling import label_dataset

    target = make_target(args.target, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                         device=args.device, dtype=args.dtype, max_concurrency=args.max_concurrency,
                         max_retries=args.max_retries, prompt_template=args.prompt_template,
                         image_format=args.image_format)
    records = label_dataset(args.dataset, target, resolutions=args.resolutions, tau=args.tau, delta=args.delta,
                            out_path=args.out, batch_size=args.batch_size, resume=not args.no_resume,
                            progress=not args.no_progress, anls_threshold=args.anls_threshold)
    counts = [0] * len(args.resolutions)
    for r in records:
        counts[r.label] += 1
    mean = [sum(r.scores[k] for r in records) / len(records) for k in range(len(args.resolutions))] if records else []
    print(f"labeled {len(records)} samples with {target.name} -> {args.out}")
    for res, n, m in zip(args.resolutions, counts, mean):
        print(f"  {res:>5} px: {n:>6} labels, mean ANLS {m:.3f}")
    return 0


# -- train --------------------------------------------------------------------------------------


def _train_parser(parser: CliParser, sub: argparse._SubParsersAction) -> None:
    p = parser.add_command(
        sub, "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Train and calibrate a gate head on labeled samples; saves a router folder.",
        description=(
            "Extract proxy-VLM features for every labeled sample once (cached), train a small head\n"
            "per feature layer with label smoothing and early stopping, keep the best layer,\n"
            "calibrate it with temperature scaling, and save the gate to OUT (cares_gate.json +\n"
            "head.safetensors + training_report.json). Load it with\n"
            "cares_integrations.load_router(OUT) or 'cares route --router OUT'.\n\n" + _FORMATS),
    )
    p.add_argument("--labels", required=True, help="labels JSONL written by 'cares label'")
    p.add_argument("--dataset", default=None,
                   help="folder the labels' image paths are relative to (default: the labels file's folder)")
    p.add_argument("--base-model", required=True, help="proxy VLM: hub id or local folder (e.g. SmolVLM-256M-Instruct)")
    p.add_argument("--out", required=True, help="folder to save the gate in")
    p.add_argument("--layer", type=int, default=None, help="text layer to pool (default: the middle one)")
    p.add_argument("--layers-sweep", type=_ints, default=None,
                   help="comma-separated layers to try from one backbone pass; the best is kept")
    p.add_argument("--pooling", choices=("mean", "last"), default="mean", help="feature pooling (default: mean)")
    p.add_argument("--preprocessing", choices=("tile", "upstream"), default="tile",
                   help="proxy image pipeline (default: tile)")
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default: OUT/feature_cache)")
    p.add_argument("--hidden", type=int, default=256, help="head hidden size (default: 256)")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default: 30)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size (default: 32)")
    p.add_argument("--label-smoothing", type=float, default=0.05, help="(default: 0.05)")
    p.add_argument("--class-weights", type=_class_weights, default=None,
                   help="'balanced' or comma-separated weights (default: none)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="stratified validation split (default: 0.2)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="split, init and order seed (default: 0)")
    p.add_argument("--revision", default=None, help="hub revision of the base model")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: auto)")
    p.add_argument("--dtype", default=None, help="bf16, fp16 or fp32 (default: bf16 on CUDA, else fp32)")
    p.add_argument("--feature-batch-size", type=int, default=8, help="backbone batch size (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _class_weights(text: str) -> Any:
    if text == "balanced":
        return text
    try:
        return [float(w) for w in text.replace(" ", "").split(",") if w]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'balanced' or comma-separated numbers, got {text!r}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        from .train import train_gate_from_labels
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(f"cares train: the training module is not available ({exc})") from exc
    weights: Any = args.class_weights
    report = train_gate_from_labels(
        args.labels, args.dataset, base_model=args.base_model, out_dir=args.out, feature_layer=args.layer,
        pooling=args.pooling, preprocessing=args.preprocessing, layers_sweep=args.layers_sweep,
        cache_dir=args.cache_dir, hidden=args.hidden, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        label_smoothing=args.label_smoothing, class_weights=weights, val_fraction=args.val_fraction,
        patience=args.patience, seed=args.seed, revision=args.revision, device=args.device, dtype=args.dtype,
        feature_batch_size=args.feature_batch_size, progress=not args.no_progress,
    )
    m = report.val_metrics
    print(f"saved gate to {report.out_dir} ({report.n_samples} samples, layer {report.feature_layer}, "
          f"temperature {report.temperature:.3f})")
    print(f"validation: accuracy {m.get('accuracy', float('nan')):.3f}  macro-F1 {m.get('macro_f1', float('nan')):.3f}"
          f"  ECE {m.get('ece', float('nan')):.3f}")
    return 0


# -- eval ---------------------------------------------------------------------------------------


def _eval_parser(parser: CliParser, sub: argparse._SubParsersAction) -> None:
    from ..routers.registry import ROUTER_SOURCES

    p = parser.add_command(
        sub, "eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Evaluate a router on labeled samples: accuracy, calibration, tokens saved vs retention.",
        description=(
            "Score policies on a labels file without calling the target again: native (pages as is),\n"
            "fixed sizes, the labels themselves, the oracle (smallest sufficient size per sample), and,\n"
            "with --router, the router's own decisions (plus, for gates, the discrete and continuous\n"
            "policies, a threshold sweep and classifier accuracy / macro-F1 / ECE). A long side is\n"
            "credited with the score at the largest labeled resolution at or below it (the page's own\n"
            "score at its long side); records may carry different resolution lists. Prints a table;\n"
            "--plots writes savings.png (savings against retention) and reliability.png.\n\n" + _FORMATS),
    )
    p.add_argument("--labels", required=True, help="labels JSONL written by 'cares label'")
    p.add_argument("--dataset", default=None,
                   help="folder the labels' image paths are relative to (default: the labels file's folder)")
    p.add_argument("--router", type=router_source, default=None,
                   help=f"router to evaluate: {ROUTER_SOURCES} (default: none, labels-only policies)")
    p.add_argument("--target", type=target_name, default=None,
                   help="token cost model, e.g. openai:gpt-4o, anthropic:claude-sonnet-4, qwen2.5-vl "
                        "(default: none, cost in pixels)")
    p.add_argument("--mode", choices=("continuous", "discrete"), default=None, help="gate policy mode")
    p.add_argument("--no-free-detail", action="store_true",
                   help="send the requested size only, not the largest size costing the same tokens")
    p.add_argument("--device", default=None, help="device for gates: cuda, mps, cpu (default: auto)")
    p.add_argument("--batch-size", type=int, default=16, help="images per routing call (default: 16)")
    p.add_argument("--plots", default=None, help="folder to write savings.png and reliability.png to")
    p.add_argument("--json", default=None, help="write the full report as JSON to this file")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_labels, evaluate_router

    if args.router is not None:
        from ..routers.registry import load_router

        options: dict[str, Any] = {}
        if args.mode:
            from ..core.policy import ResolutionPolicy

            options["policy"] = ResolutionPolicy(mode=args.mode)
        if args.no_free_detail:
            options["free_detail"] = False
        router = load_router(None if args.router == "default" else args.router, device=args.device, **options)
        report = evaluate_router(router, args.labels, dataset_dir=args.dataset, target=args.target,
                                 batch_size=args.batch_size)
    else:
        report = evaluate_labels(args.labels, dataset_dir=args.dataset, target=args.target,
                                 free_detail=not args.no_free_detail)
    print(report.table())
    if args.plots:
        for path in report.plot(args.plots):
            print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


# -- calibrate ----------------------------------------------------------------------------------


def _calibrate_parser(parser: CliParser, sub: argparse._SubParsersAction) -> None:
    p = parser.add_command(
        sub, "calibrate", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Fit a router's safety margin on labeled samples, with a retention guarantee.",
        description=(
            "Pick an operating point (a scale on the router's long side and a floor, the fixed sizes\n"
            "included) so that, with probability >= CONFIDENCE over the sample, the score kept on new\n"
            "pages of the same collection is >= RETENTION of the score with pages sent as is, for the\n"
            "reader or model the labels came from (Learn then Test, docs/calibration.md). Saves a\n"
            "folder that 'load_router(DIR)' and '--router DIR' load; prints the guarantee, the savings\n"
            "on the sample and the sample size needed.\n\n" + _FORMATS),
    )
    p.add_argument("--labels", required=True, help="labels JSONL written by 'cares label'")
    p.add_argument("--router", type=router_source, default="default",
                   help="base router: 'default', 'text-scale', 'learned-default', 'fixed:N' or a gate folder")
    p.add_argument("--retention", type=float, required=True, help="retention to guarantee, e.g. 0.97")
    p.add_argument("--confidence", type=float, default=0.9, help="probability of the guarantee (default: 0.9)")
    p.add_argument("--out", required=True, help="folder to write the calibrated router to")
    p.add_argument("--cost-target", default=None,
                   help="token cost model savings are counted for, e.g. openai:gpt-4o (default: pixels)")
    p.add_argument("--dataset", default=None,
                   help="folder the labels' image paths are relative to (default: the labels file's folder)")
    p.add_argument("--method", choices=("wsr", "hb"), default="wsr",
                   help="p-values: wsr (betting, variance-adaptive; default) or hb (Hoeffding-Bentkus)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    if args.cost_target is not None:
        from ..core.tokens import get_target

        get_target(args.cost_target)  # fail before any work on an unknown name
    _, report = calibrate(args.labels, args.router, retention=args.retention, confidence=args.confidence,
                          cost_target=args.cost_target, dataset_dir=args.dataset, method=args.method,
                          out_dir=args.out)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    if not args.json:
        print(f"wrote {Path(args.out) / 'calibration.json'}")
    return 0


# -- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``cares label|train|eval|calibrate``."""
    parser = CliParser(prog="cares", description="Label, train and evaluate CARES routers.")
    sub = parser.add_subparsers(dest="command", required=True)
    _label_parser(parser, sub)
    _train_parser(parser, sub)
    _eval_parser(parser, sub)
    _calibrate_parser(parser, sub)
    return parser


_COMMANDS = {"label": _cmd_label, "train": _cmd_train, "eval": _cmd_eval, "calibrate": _cmd_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cares label|train|eval|calibrate``; ``argv`` starts with the subcommand name."""
    from ..core.errors import CaresError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (CaresError, ValueError, TypeError, FileNotFoundError, ImportError, AttributeError) as exc:
        print(f"cares {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
