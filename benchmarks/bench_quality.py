"""Quality on real documents: every shipped router against every fixed size and the oracle.

    python benchmarks/bench_quality.py [--split test] [--plot quality.png] [--json quality.json]
        [--pages DIR [--refresh default]]  # compute missing (or refreshed) router long sides from the pages

For each reader whose labels are in ``benchmarks/corpus/labels/`` (Tesseract, PP-OCR), on the
corpus's split (test by default; the routers were never tuned on it): accuracy kept (mean score
over the mean score with pages as is) and savings under five cost models (pixels, OpenAI tiles,
Claude, Gemini, Qwen2.5-VL 28-px patches), with 95% bootstrap intervals over documents, then the
same by document kind and by question kind, and a savings-vs-kept plot. A fixed size that keeps
at least as much and saves at least as much as a router *dominates* it; the table marks it.

The routers' long sides are cached in ``benchmarks/corpus/router_long_sides.jsonl.gz`` (keyed by
page image and question, for every corpus question), so the benchmark runs without the rendered
pages; ``--pages`` (the corpus build folder) computes missing ones, and ``--refresh ROUTER``
recomputes a router's after it changed.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from _quality import (CORPUS, COST_MODELS, FIXED, ROUTERS, Scorer, cached_sides, compute_router_sides, doc_bootstrap,
                      load_reader_labels, load_router_sides, summarise)

MAIN_COST = "qwen-patch"


def corpus_questions() -> list[SimpleNamespace]:
    """Every question of the corpus (``benchmarks/corpus/questions.jsonl.gz``) as (image, question)."""
    path = CORPUS / "questions.jsonl.gz"
    if not path.exists():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [SimpleNamespace(id=row["id"], image=row["image"], question=row["question"]) for row in rows]


def policies(scorer: Scorer, records, sides_cache) -> dict[str, np.ndarray]:
    """Requested long side per record for every policy."""
    n = len(records)
    out: dict[str, np.ndarray] = {"native": scorer.native.astype(float)}
    for r in FIXED:
        out[f"fixed-{r}"] = np.minimum(np.full(n, float(r)), scorer.native)
    for name in ROUTERS:
        out[name] = cached_sides(sides_cache, name, records)
    out["oracle"] = scorer.oracle()
    return out


def evaluate_reader(records, sides_cache, *, n_boot: int) -> dict:
    """All numbers for one reader's records."""
    scorer = Scorer(records)
    pols = policies(scorer, records, sides_cache)
    docs = [r.extra.get("doc", r.image) for r in records]
    native_costs = {c: scorer.costs(scorer.native.astype(float), m) for c, m in COST_MODELS.items()}
    result: dict = {"n": len(records), "documents": len(set(docs)), "native_accuracy": float(scorer.native_scores.mean()),
                    "policies": {}}
    groups = {"doc_kind": defaultdict(list), "kind": defaultdict(list)}
    for i, rec in enumerate(records):
        for g in groups:
            groups[g][str(rec.extra.get(g, "?"))].append(i)
    for name, sides in pols.items():
        score = scorer.credit(sides)
        upper = scorer.credit(sides, upper=True)
        row: dict = {"mean_long_side": float(sides.mean())}
        for cname, model in COST_MODELS.items():
            cost = scorer.costs(sides, model)
            kept, saved = summarise(score, cost, scorer.native_scores, native_costs[cname])
            row[cname] = {"saved": saved}
            row["kept"] = kept
            if cname == MAIN_COST:
                ci_kept, ci_saved = doc_bootstrap(
                    docs, lambda idx: summarise(score, cost, scorer.native_scores, native_costs[cname], idx),
                    n_boot=n_boot)
                row["kept_ci"], row[cname]["saved_ci"] = ci_kept, ci_saved
                for g, members in groups.items():
                    row[g] = {k: dict(zip(("kept", "saved"), summarise(score, cost, scorer.native_scores,
                                                                        native_costs[cname], np.array(v))))
                              | {"n": len(v)} for k, v in sorted(members.items())}
        row["kept_upper"] = summarise(upper, native_costs["pixels"], scorer.native_scores, native_costs["pixels"])[0]
        result["policies"][name] = row
    # domination: a fixed size that keeps at least as much and saves at least as much (main cost)
    for name in [p for p in pols if p in ROUTERS]:
        r = result["policies"][name]
        result["policies"][name]["dominated_by"] = [
            f for f in pols if f.startswith("fixed-")
            and result["policies"][f]["kept"] >= r["kept"] and result["policies"][f][MAIN_COST]["saved"] >= r[MAIN_COST]["saved"]]
    return result


def print_reader(reader: str, res: dict) -> None:
    """The tables for one reader."""
    print(f"\n## reader {reader}: {res['n']} questions on {res['documents']} documents; "
          f"native accuracy {res['native_accuracy']:.3f}")
    head = f"{'policy':<16} {'kept':>6} {'95% CI (docs)':>15} " + " ".join(f"{c:>12}" for c in COST_MODELS) + f" {'mean px':>8}"
    print(head)
    for name, row in res["policies"].items():
        ci = row.get("kept_ci")
        ci_s = f"[{ci[0]:.3f},{ci[1]:.3f}]" if ci else ""
        saves = " ".join(f"{row[c]['saved']:>12.1%}" for c in COST_MODELS)
        flag = f"  dominated by {', '.join(row['dominated_by'])}" if row.get("dominated_by") else ""
        print(f"{name:<16} {row['kept']:>6.3f} {ci_s:>15} {saves} {row['mean_long_side']:>8.0f}{flag}")
    print(f"(savings CI, {MAIN_COST}: " + "; ".join(
        f"{n} [{r[MAIN_COST]['saved_ci'][0]:.1%},{r[MAIN_COST]['saved_ci'][1]:.1%}]"
        for n, r in res["policies"].items() if n in ROUTERS or n == "oracle") + ")")
    for g in ("doc_kind", "kind"):
        keys = list(next(iter(res["policies"].values()))[g])
        print(f"\nby {g} (kept / {MAIN_COST} saved)")
        print(f"{'policy':<16} " + " ".join(f"{k + ' (' + str(res['policies']['native'][g][k]['n']) + ')':>15}" for k in keys))
        for name, row in res["policies"].items():
            print(f"{name:<16} " + " ".join(f"{row[g][k]['kept']:>7.3f}/{row[g][k]['saved']:>6.1%}" for k in keys))


def markdown(results: dict, split: str) -> str:
    """The tables as markdown (what docs/quality.md shows)."""
    out = []
    for reader, res in results.items():
        pol = res["policies"]
        out.append(f"### {reader}: {res['n']} questions on {res['documents']} documents ({split} split), "
                   f"native accuracy {res['native_accuracy']:.3f}\n")
        out.append("| policy | kept (95% CI, docs) | " + " | ".join(f"{c} saved" for c in COST_MODELS) + " | mean px |")
        out.append("|---|---|" + "---|" * len(COST_MODELS) + "---|")
        for name, row in pol.items():
            ci = row.get("kept_ci")
            flag = f" (dominated by {', '.join(x[6:] for x in row['dominated_by'])})" if row.get("dominated_by") else ""
            out.append(f"| {name}{flag} | {row['kept']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                       + " | ".join(f"{row[c]['saved']:.1%}" for c in COST_MODELS) + f" | {row['mean_long_side']:.0f} |")
        for g in ("doc_kind", "kind"):
            keys = list(pol["native"][g])
            out.append(f"\nBy {'document kind' if g == 'doc_kind' else 'question kind'} (kept / {MAIN_COST} saved):\n")
            out.append("| policy | " + " | ".join(f"{k} ({pol['native'][g][k]['n']})" for k in keys) + " |")
            out.append("|---|" + "---|" * len(keys))
            for name, row in pol.items():
                if name == "native":
                    continue
                out.append(f"| {name} | " + " | ".join(f"{row[g][k]['kept']:.2f} / {row[g][k]['saved']:.0%}"
                                                     for k in keys) + " |")
        out.append("")
    return "\n".join(out)


def plot(results: dict, path: Path) -> None:
    """Savings (main cost) against accuracy kept, one panel per reader."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(results), 4.8), dpi=110)
    for k, (reader, res) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), k + 1)
        pol = res["policies"]
        fixed = [n for n in pol if n.startswith("fixed-")]
        ax.plot([pol[n]["kept"] for n in fixed], [pol[n][MAIN_COST]["saved"] for n in fixed], "x-", color="grey",
                label="fixed sizes")
        for n in fixed:
            ax.annotate(n[6:], (pol[n]["kept"], pol[n][MAIN_COST]["saved"]), fontsize=7, color="grey",
                        textcoords="offset points", xytext=(3, 3))
        for n, style in (("default", ("P", "tab:purple")), ("learned-default", ("D", "tab:green")),
                         ("oracle", ("*", "tab:red"))):
            if n in pol:
                ax.plot([pol[n]["kept"]], [pol[n][MAIN_COST]["saved"]], style[0], color=style[1], markersize=10, label=n)
        ax.set_xlabel("accuracy kept (vs pages as is)")
        ax.set_ylabel(f"{MAIN_COST} tokens saved")
        ax.set_title(f"{reader}: {res['n']} questions, test split")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", help="train, validation, test or all")
    ap.add_argument("--labels-dir", type=Path, default=None, help="label files (default: benchmarks/corpus/labels)")
    ap.add_argument("--pages", type=Path, default=None, help="the corpus build folder the labels' image paths are relative to; computes missing router long sides")
    ap.add_argument("--refresh", nargs="*", default=[], choices=ROUTERS,
                    help="with --pages: drop these routers' cached long sides first (after a router changes)")
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown")
    args = ap.parse_args(argv)
    labels = load_reader_labels(*([args.labels_dir] if args.labels_dir else []))
    cache = load_router_sides()
    selected = {reader: [r for r in recs if args.split == "all" or r.extra.get("split") == args.split]
                for reader, recs in labels.items()}
    if args.pages is not None:
        from cares_integrations import load_router

        for name in args.refresh:
            cache.pop(name, None)
        # every labeled record and every corpus question, so labels added later need no pages
        every = [r for recs in labels.values() for r in recs] + corpus_questions()
        cache = compute_router_sides(every, args.pages, [(n, load_router(n)) for n in ROUTERS], cache)
    results = {reader: evaluate_reader(recs, cache, n_boot=args.bootstrap) for reader, recs in selected.items() if recs}
    for reader, res in results.items():
        print_reader(reader, res)
    if args.plot:
        plot(results, args.plot)
        print(f"\nwrote {args.plot}")
    if args.markdown:
        args.markdown.write_text(markdown(results, args.split))
        print(f"wrote {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
