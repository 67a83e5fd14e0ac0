"""Held-out comparison of the shipped routers with exact scoring.

    python benchmarks/compare_default_routers.py --run DIR   # DIR: a `training.recipe --out` folder

Scores text-scale, learned-default and fixed-1024 on the recipe's held-out pages twice: with the
bracket of `evaluate` (an in-between request gets the next smaller / next larger labeled size's
score), and exactly, with every request rounded up to a labeled size (what a deployment that
snaps to the labeled sizes would send).
"""
import argparse
from pathlib import Path
from PIL import Image
from cares_integrations import load_router
from cares_integrations.training.labeling import load_labels
from cares_integrations.training.recipe import split_pages, _page_of
from cares_integrations.training.evaluate import evaluate_long_sides

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--run", default="/tmp/cares_runs/ld", help="the recipe's output folder")
parser.add_argument("--seed", type=int, default=0, help="the recipe's split seed")
args = parser.parse_args()
ds = Path(args.run) / "dataset"
recs = load_labels(Path(args.run) / "labels.jsonl")
assign = split_pages([_page_of(r) for r in recs], args.seed)
test = [r for r in recs if assign[_page_of(r)] == "test"]
pages = {}
for r in test:
    if r.image not in pages:
        pages[r.image] = Image.open(ds / r.image).convert("RGB")
pil = [pages[r.image] for r in test]; sizes = [p.size for p in pil]; qs = [r.question for r in test]
res = test[0].resolutions
def up(L, wh):
    if L >= max(wh): return L
    for r in res:
        if r >= L: return min(r, max(wh))
    return max(wh)
out = {}
for name in ("text-scale", "learned-default"):
    router = load_router(name)
    sides = []
    for s in range(0, len(pil), 32):
        sides += [d.long_side for d in router.route_batch(pil[s:s+32], qs[s:s+32], target=None)]
    out[name] = sides
out["fixed-1024"] = [1024] * len(test)
print(f"held-out: {len(test)} questions on {len(pages)} pages")
print(f"{'router':<18} {'target':<14} {'retention (bracket)':>22} {'saved':>7} | {'rounded up: retention':>22} {'saved':>7}")
for name, sides in out.items():
    for t in ("openai:gpt-4o", "qwen2.5-vl"):
        a = evaluate_long_sides(test, sizes, sides, name=name, target=t)
        b = evaluate_long_sides(test, sizes, [up(L, wh) for L, wh in zip(sides, sizes)], name=name, target=t)
        print(f"{name:<18} {t:<14} {a.retention:>10.3f}-{a.retention_upper:<11.3f} {a.tokens_saved:>7.1%} | {b.retention:>22.3f} {b.tokens_saved:>7.1%}")
