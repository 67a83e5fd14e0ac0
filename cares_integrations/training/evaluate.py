"""Evaluating routers on labeled samples: classifier quality, and tokens saved vs score kept.

Two kinds of numbers:

- **Classifier metrics** (:func:`classifier_metrics`): accuracy, macro-F1, confusion matrix
  (rows = true class) and expected calibration error over equal-width confidence bins, from
  class probabilities and the labels.
- **Policy results** (:class:`PolicyResult`): for a policy that picks a long side per sample,
  the mean ANLS the target gets, the *retention* (that mean over the mean when every page is
  sent as is, "native"), and the visual tokens the target is charged, summed over the samples,
  with the fraction saved against native. Token counts come from
  :func:`cares_integrations.tokens.visual_tokens` on the size actually sent
  (:func:`cares_integrations.sizing.send_size`, like a router's decision); without a target the
  cost is pixels (width x height).

How a policy is scored from labels alone (no new target calls). A sample was labeled at
resolutions r_1 < ... < r_K (records may carry different lists; the corpus writes each page's own
long side last). A policy asking for long side L (capped at the page's own long side) is credited
by :func:`credited_score`, the one rule every evaluation in this project uses (``cares eval``,
``cares calibrate``, ``benchmarks/bench_quality.py``): the score at the **largest labeled
resolution <= L** (0 below r_1), and the last score when L reaches the page's own long side (the
page is sent as is; pages larger than r_K are assumed to answer no better at full size than at
r_K). This is exact where L is a labeled resolution or the page (fixed sizes, the oracle, a
calibrated router) and a lower bound in between: 700 px is credited with the 512-px score while
paying for 700 px. So every result also carries the other side of the bracket,
``retention_upper``: the same requests credited with the score at the **smallest labeled
resolution >= L** (optimistic). The true retention lies between the two.

Policies reported:

- ``native``: every page as is (the baseline: retention 1 by construction).
- ``fixed-R``: every page at R px (never upscaled).
- ``labels``: each sample at its label (a perfect classifier with the discrete policy).
- ``oracle``: each sample at the labeled resolution with the best score for the fewest tokens
  (the smallest *sufficient* size): no router choosing among the labeled resolutions keeps as
  much score at fewer tokens. It is the limit of what any router can save.
- ``discrete`` / ``continuous`` (given class probabilities): the most probable bin, or the
  expectation sum_k p_k r_k, as in :class:`cares_integrations.policy.ResolutionPolicy`.
- a threshold sweep (given probabilities): the smallest bin whose cumulative probability reaches
  t, for t from 0 to 1: the savings-against-retention curve a router's probabilities allow.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .labeling import LabelRecord, labels_and_dataset

__all__ = [
    "ClassifierMetrics",
    "EvaluationReport",
    "PolicyResult",
    "classifier_metrics",
    "credited_score",
    "evaluate_labels",
    "evaluate_long_sides",
    "evaluate_router",
    "evaluation_grid",
    "oracle_policy",
    "page_sizes",
    "plot_reliability",
    "plot_savings",
    "sent_cost",
    "threshold_sweep",
]


# -- classifier metrics -------------------------------------------------------------------------


@dataclass
class ClassifierMetrics:
    """Accuracy, macro-F1, confusion matrix, ECE and the reliability table of a classifier.

    ``confusion[i][j]`` counts samples of true class i predicted as j. ``reliability`` has one
    row per non-empty confidence bin: ``(low, high, count, mean_confidence, accuracy)``.
    """

    n: int
    accuracy: float
    macro_f1: float
    confusion: list[list[int]]
    ece: float
    n_bins: int
    reliability: list[tuple[float, float, int, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def classifier_metrics(probabilities: Any, labels: Sequence[int], *, n_bins: int = 10) -> ClassifierMetrics:
    """Metrics of class probabilities (n, K) against integer labels (n,).

    ECE = sum over equal-width confidence bins (0, 1/B], ..., ((B-1)/B, 1] of
    (bin count / n) * |accuracy in bin - mean confidence in bin|, the confidence being the top
    probability. Macro-F1 averages F1 over classes that occur in the labels or the predictions.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError(f"need probabilities of shape (n, K) and n labels, got {p.shape} and {y.shape}")
    k = p.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be class indices in [0, {k}), got values {sorted(set(y.tolist()))}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if n_bins <= 0:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    correct = (pred == y).astype(np.float64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    f1s = []
    for c in range(k):
        tp = confusion[c, c]
        fp = confusion[:, c].sum() - tp
        fn = confusion[c, :].sum() - tp
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    table = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        mask = (conf > lo) & (conf <= hi) if i else (conf >= lo) & (conf <= hi)
        if mask.any():
            acc, mc = float(correct[mask].mean()), float(conf[mask].mean())
            ece += mask.mean() * abs(acc - mc)
            table.append((float(lo), float(hi), int(mask.sum()), mc, acc))
    return ClassifierMetrics(n=int(len(y)), accuracy=float(correct.mean()), macro_f1=float(np.mean(f1s)),
                             confusion=confusion.tolist(), ece=float(ece), n_bins=n_bins, reliability=table)


# -- policies -----------------------------------------------------------------------------------


@dataclass
class PolicyResult:
    """What one policy does on a labeled set for one target.

    ``mean_score``: mean ANLS credited by :func:`credited_score` (see the module docstring);
    ``retention``: that over the native mean score; ``tokens`` / ``native_tokens``: visual
    tokens (or pixels when ``unit == "pixels"``) summed over samples; ``tokens_saved``: 1 - tokens / native_tokens;
    ``mean_long_side``: mean requested long side in px.
    """

    name: str
    n: int
    mean_score: float
    retention: float
    tokens: int
    native_tokens: int
    tokens_saved: float
    mean_long_side: float
    unit: str = "tokens"
    retention_upper: float | None = None
    """Retention with in-between requests credited the next larger labeled size's score: an
    optimistic bound, where ``retention`` is the exact lower one (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def label_page_path(rec: LabelRecord, dataset_dir: str | os.PathLike | None) -> Path:
    """The page image of a label record (its ``image``, relative to ``dataset_dir``); a clear
    FileNotFoundError when it is missing."""
    path = Path(rec.image)
    if not path.is_absolute() and dataset_dir is not None:
        path = Path(dataset_dir) / path
    if not path.is_file():
        raise FileNotFoundError(f"label {rec.id!r}: page image {str(path)!r} not found "
                                "(pass the dataset folder the labels' image paths are relative to)")
    return path


def page_sizes(records: Sequence[LabelRecord], dataset_dir: str | os.PathLike | None) -> list[tuple[int, int]]:
    """The (width, height) of every record's page, EXIF orientation applied, read from headers."""
    from PIL import Image

    base = Path(dataset_dir) if dataset_dir is not None else None
    sizes = []
    for rec in records:
        with Image.open(label_page_path(rec, base)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
        sizes.append((h, w) if orientation in (5, 6, 7, 8) else (w, h))
    return sizes


def credited_score(resolutions: Sequence[int], scores: Sequence[float], native_long: int, long_side: float,
                   *, upper: bool = False) -> float:
    """The score one labeled record is credited with when a policy asks for ``long_side`` px.

    At or above the page's own long side ``native_long``: the page is sent as is, the last score.
    Below it: the score at the largest labeled resolution <= ``long_side`` (0 below the smallest),
    exact at labeled sizes and a lower bound in between; ``upper=True`` credits the smallest
    labeled resolution >= ``long_side`` instead (the optimistic side of the bracket). The one
    crediting rule of ``cares eval``, ``cares calibrate`` and the corpus benchmarks."""
    if long_side >= native_long:
        return float(scores[-1])
    if upper:
        k = bisect.bisect_left(list(resolutions), long_side - 1e-9)
        return float(scores[min(k, len(scores) - 1)])
    k = bisect.bisect_right(list(resolutions), long_side + 1e-9) - 1
    return float(scores[k]) if k >= 0 else 0.0


def evaluation_grid(records: Sequence[LabelRecord], sizes: Sequence[tuple[int, int]]) -> list[int]:
    """The resolutions a labeled set is evaluated at (fixed sizes, bins): the records' common
    list when they share one; otherwise (each page's own long side last, as the corpus labels are
    written) the union of every record's sizes except a last entry that is its page's long side."""
    if not records:
        raise ValueError("no label records to evaluate")
    if len(sizes) != len(records):
        raise ValueError(f"{len(sizes)} page sizes for {len(records)} records")
    first = list(records[0].resolutions)
    if all(list(rec.resolutions) == first for rec in records):
        return first
    grid: set[int] = set()
    for rec, size in zip(records, sizes):
        res = list(rec.resolutions)
        if res and res[-1] >= max(size):
            res = res[:-1]
        grid.update(int(r) for r in res)
    return sorted(grid)


def sent_cost(width: int, height: int, long_side: int, model: Any = None, *, free_detail: bool = True) -> int:
    """What a page of ``width`` x ``height`` costs when a router asks for ``long_side``: the
    tokens ``model`` (a cost model, or None for pixels) charges for the size actually sent."""
    from ..core.resize import fit_long_side
    from ..core.sizing import send_size

    if long_side >= max(width, height):  # the page as is
        sw, sh = width, height
    elif model is None:
        sw, sh = fit_long_side(width, height, long_side)
    else:
        sw, sh = send_size(width, height, long_side, model, free_detail=free_detail)
    return sw * sh if model is None else int(model.tokens(sw, sh))


class _Costs:
    """Score credited and tokens charged per (sample, requested long side), memoised."""

    def __init__(self, records, sizes, target, free_detail):
        from ..core.tokens import get_target

        self.records, self.sizes = records, sizes
        self.res = evaluation_grid(records, sizes)
        self.model = get_target(target) if target is not None else None
        self.free_detail = free_detail
        self.unit = "tokens" if self.model is not None else "pixels"
        self._cost: dict[tuple[int, int, int], int] = {}

    def cost(self, w: int, h: int, long_side: int) -> int:
        key = (w, h, long_side)
        if key not in self._cost:
            self._cost[key] = sent_cost(w, h, long_side, self.model, free_detail=self.free_detail)
        return self._cost[key]

    def requested(self, i: int, long_side: float) -> int:
        """A policy's long side as a router sends it: whole pixels, rounded up, capped at the page."""
        w, h = self.sizes[i]
        return max(1, min(int(math.ceil(float(long_side) - 1e-9)), max(w, h)))

    def score(self, i: int, long_side: int, upper: bool = False) -> float:
        rec = self.records[i]
        return credited_score(rec.resolutions, rec.scores, max(self.sizes[i]), long_side, upper=upper)

    def native(self) -> tuple[float, int]:
        scores = [self.score(i, max(wh)) for i, wh in enumerate(self.sizes)]
        tokens = sum(self.cost(w, h, max(w, h)) for w, h in self.sizes)
        return float(np.mean(scores)), tokens

    def result(self, name: str, long_sides: Sequence[float]) -> PolicyResult:
        if len(long_sides) != len(self.records):
            raise ValueError(f"policy {name!r}: {len(long_sides)} long sides for {len(self.records)} samples")
        asked = [self.requested(i, L) for i, L in enumerate(long_sides)]
        scores = [self.score(i, L) for i, L in enumerate(asked)]
        tokens = sum(self.cost(*self.sizes[i], L) for i, L in enumerate(asked))
        native_score, native_tokens = self.native()
        mean = float(np.mean(scores))
        upper = float(np.mean([self.score(i, L, upper=True) for i, L in enumerate(asked)]))
        return PolicyResult(
            name=name, n=len(asked), mean_score=mean,
            retention=mean / native_score if native_score > 0 else float("nan"),
            retention_upper=upper / native_score if native_score > 0 else float("nan"),
            tokens=int(tokens), native_tokens=int(native_tokens),
            tokens_saved=1.0 - tokens / native_tokens if native_tokens else 0.0,
            mean_long_side=float(np.mean(asked)), unit=self.unit,
        )

    def oracle_sides(self) -> list[int]:
        sides = []
        for i, rec in enumerate(self.records):
            w, h = self.sizes[i]
            options = []
            for r in rec.resolutions:  # each record's own labeled sizes
                L = self.requested(i, r)
                options.append((-self.score(i, L), self.cost(w, h, L), L))
            sides.append(min(options)[2])  # best score, then fewest tokens, then smallest size
        return sides

    def label_indices(self, bins: Sequence[int]) -> list[int] | None:
        """Each record's label as an index into ``bins`` (its label resolution, or the smallest
        bin at or above its page when the label is the page as is); None when one is not a bin."""
        out = []
        for rec, size in zip(self.records, self.sizes):
            r = int(rec.label_resolution)
            if r in bins:
                out.append(list(bins).index(r))
            elif r >= max(size) and bins[-1] >= max(size):
                out.append(bisect.bisect_left(list(bins), max(size)))
            else:
                return None
        return out


def evaluate_long_sides(
    records: Sequence[LabelRecord], sizes: Sequence[tuple[int, int]], long_sides: Sequence[float], *,
    name: str = "policy", target: str | None = None, free_detail: bool = True,
) -> PolicyResult:
    """Score any per-sample choice of long sides (px) on labeled samples for ``target``."""
    return _Costs(records, sizes, target, free_detail).result(name, long_sides)


def oracle_policy(records: Sequence[LabelRecord], sizes: Sequence[tuple[int, int]], *,
                  target: str | None = None, free_detail: bool = True) -> PolicyResult:
    """Each sample at the labeled resolution with its best score for the fewest tokens."""
    costs = _Costs(records, sizes, target, free_detail)
    return costs.result("oracle", costs.oracle_sides())


def _policy_sides(probabilities: np.ndarray, bins: Sequence[int], mode: str) -> list[float]:
    from ..core.policy import ResolutionPolicy

    policy = ResolutionPolicy(bins=tuple(bins), mode=mode)  # type: ignore[arg-type]
    return [policy.raw_long_side(p) for p in probabilities]


def threshold_sweep(
    records: Sequence[LabelRecord], sizes: Sequence[tuple[int, int]], probabilities: Any, *,
    bins: Sequence[int] | None = None, thresholds: Iterable[float] | None = None,
    target: str | None = None, free_detail: bool = True,
) -> list[PolicyResult]:
    """Policies "the smallest bin whose cumulative probability reaches t" for each threshold t
    (default 0, 0.05, ..., 1): low t favours small sizes, high t large ones."""
    costs = _Costs(records, sizes, target, free_detail)
    bins = list(bins or costs.res)
    p = _probabilities(probabilities, len(records), len(bins))
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    out = []
    for t in (np.linspace(0.0, 1.0, 21) if thresholds is None else thresholds):
        idx = [int(np.argmax(row >= min(float(t), row[-1] - 1e-12))) for row in cum]
        out.append(costs.result(f"sweep@{float(t):.2f}", [bins[k] for k in idx]))
    return out


def _probabilities(probabilities: Any, n: int, k: int) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (n, k):
        raise ValueError(f"probabilities must have shape ({n}, {k}) (samples x bins), got {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any() or (p.sum(axis=1) <= 0).any():
        raise ValueError("probabilities must be finite, non-negative and not all zero per sample")
    return p


# -- reports ------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """Everything ``cares eval`` prints and plots.

    ``policies``: native, fixed sizes, labels, oracle, and (with probabilities) discrete and
    continuous; ``router``: the router's own decisions, when a router was evaluated;
    ``sweep``: the threshold sweep (with probabilities); ``classifier``: classifier metrics
    (with probabilities over the labels' resolutions).
    """

    target: str | None
    n: int
    resolutions: list[int]
    policies: list[PolicyResult]
    router: PolicyResult | None = None
    sweep: list[PolicyResult] = field(default_factory=list)
    classifier: ClassifierMetrics | None = None
    label_distribution: list[int] = field(default_factory=list)
    labels_as_is: int = 0
    """Samples labeled at their page's own long side where that is not in ``resolutions``."""
    notes: list[str] = field(default_factory=list)

    def policy(self, name: str) -> PolicyResult:
        """The result of the policy called ``name`` (the router's too)."""
        for p in self.policies + ([self.router] if self.router else []):
            if p.name == name:
                return p
        raise KeyError(f"no policy {name!r}; have {[p.name for p in self.policies]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "target": self.target, "n": self.n, "resolutions": self.resolutions,
            "label_distribution": self.label_distribution, "labels_as_is": self.labels_as_is,
            "policies": [p.to_dict() for p in self.policies],
            "router": self.router.to_dict() if self.router else None,
            "sweep": [p.to_dict() for p in self.sweep],
            "classifier": self.classifier.to_dict() if self.classifier else None,
            "notes": self.notes,
        }

    def table(self) -> str:
        """A plain-text table: one row per policy, then classifier metrics."""
        unit = self.policies[0].unit if self.policies else "tokens"
        lines = [f"{self.n} samples; target: {self.target or 'none (cost in pixels)'}; "
                 f"resolutions {self.resolutions}; labels per resolution {self.label_distribution}",
                 f"{'policy':<22} {'mean ANLS':>9} {'retained':>9} {'at most':>9} {'mean px':>8} "
                 f"{unit + ' saved':>13}"]
        if self.labels_as_is:
            lines[0] += f"; {self.labels_as_is} labeled at the page as is"
        rows = self.policies + ([self.router] if self.router else [])
        for p in rows:
            up = f"{p.retention_upper:>9.1%}" if p.retention_upper is not None else f"{'':>9}"
            lines.append(f"{p.name:<22} {p.mean_score:>9.3f} {p.retention:>9.1%} {up} {p.mean_long_side:>8.0f} "
                         f"{p.tokens_saved:>13.1%}")
        lines.append("retained: a size between labeled resolutions is credited with the next smaller one's score "
                     "(exact at labeled sizes, a lower bound between); at most: with the next larger one's")
        if self.classifier:
            c = self.classifier
            lines.append(f"classifier: accuracy {c.accuracy:.3f}  macro-F1 {c.macro_f1:.3f}  ECE {c.ece:.3f}")
            lines.append("confusion (rows = label, cols = predicted): " + "; ".join(
                " ".join(str(v) for v in row) for row in c.confusion))
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def plot(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``savings.png`` and, with classifier metrics, ``reliability.png``; returns paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [plot_savings(self, out / "savings.png")]
        if self.classifier is not None:
            paths.append(plot_reliability(self.classifier, out / "reliability.png"))
        return paths


def evaluate_labels(
    records: Sequence[LabelRecord] | str | os.PathLike, *, dataset_dir: str | os.PathLike | None = None,
    sizes: Sequence[tuple[int, int]] | None = None, probabilities: Any = None, target: str | None = None,
    free_detail: bool = True, router_result: PolicyResult | None = None,
) -> EvaluationReport:
    """Evaluate the labeled set: native, fixed sizes, labels and oracle; with class
    ``probabilities`` (n x resolutions) also discrete, continuous, the sweep and classifier metrics.

    ``records``: label records or a labels JSONL path; page ``sizes`` are read from
    ``dataset_dir`` (default: the labels file's folder) unless given.
    """
    records, dataset_dir = labels_and_dataset(records, dataset_dir)
    sizes = list(sizes) if sizes is not None else page_sizes(records, dataset_dir)
    costs = _Costs(records, sizes, target, free_detail)
    res = costs.res
    policies = [costs.result("native", [max(s) for s in sizes])]
    policies += [costs.result(f"fixed-{r}", [r] * len(records)) for r in res]
    policies.append(costs.result("labels", [rec.label_resolution for rec in records]))
    policies.append(costs.result("oracle", costs.oracle_sides()))
    distribution = [0] * len(res)
    as_is = 0
    for rec in records:
        if int(rec.label_resolution) in res:
            distribution[res.index(int(rec.label_resolution))] += 1
        else:
            as_is += 1  # labeled "the page as is", a size outside the grid
    report = EvaluationReport(target=target, n=len(records), resolutions=res, policies=policies,
                              router=router_result, label_distribution=distribution, labels_as_is=as_is)
    if len({tuple(rec.resolutions) for rec in records}) > 1:
        report.notes.append("records have different resolution lists (each page's own long side last): "
                            f"fixed sizes and bins are {res}; a size a record was not labeled at is credited "
                            "with its next smaller labeled size's score")
    if probabilities is not None:
        p = _probabilities(probabilities, len(records), len(res))
        report.policies.append(costs.result("discrete", _policy_sides(p, res, "discrete")))
        report.policies.append(costs.result("continuous", _policy_sides(p, res, "continuous")))
        report.sweep = threshold_sweep(records, sizes, p, bins=res, target=target, free_detail=free_detail)
        labels = costs.label_indices(res)
        if labels is None:
            report.notes.append("some labels are the page as is, larger than every bin: no classifier metrics")
        else:
            report.classifier = classifier_metrics(p, labels)
    return report


def evaluate_router(
    router: Any, labels: Sequence[LabelRecord] | str | os.PathLike, *,
    dataset_dir: str | os.PathLike | None = None, target: str | None = None, batch_size: int = 16,
    progress: bool = False,
) -> EvaluationReport:
    """Route every labeled sample with ``router`` and evaluate its decisions.

    Each sample is credited by :func:`credited_score` (the score at the largest labeled
    resolution <= the long side the router asked for, the last one at the page's own size) and
    charged the tokens of the size it would send for ``target``. When the router gives class probabilities over the labels' resolutions
    (a gate), the report also has classifier metrics, the discrete and continuous policies and
    a threshold sweep.
    """
    records, dataset_dir = labels_and_dataset(labels, dataset_dir)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    base = Path(dataset_dir) if dataset_dir is not None else None
    decisions = []
    bar = _bar(len(records), progress, f"routing with {getattr(router, 'name', 'router')}")
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        paths = [Path(r.image) if Path(r.image).is_absolute() or base is None else base / r.image for r in chunk]
        for r, p in zip(chunk, paths):
            if not p.is_file():
                raise FileNotFoundError(f"label {r.id!r}: page image {str(p)!r} not found (pass the dataset "
                                        "folder the labels' image paths are relative to)")
        decisions.extend(router.route_batch([str(p) for p in paths], [r.question for r in chunk], target=target))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    sizes = [tuple(d.original_size) for d in decisions]
    free_detail = bool(getattr(router, "free_detail", True))
    name = getattr(router, "name", type(router).__name__)
    costs = _Costs(records, sizes, target, free_detail)
    routed = costs.result(f"router ({name})", [d.long_side for d in decisions])
    if target is not None and all(d.tokens_after is not None for d in decisions):
        routed.tokens = int(sum(d.tokens_after for d in decisions))  # exactly what the router sends
        routed.tokens_saved = 1.0 - routed.tokens / routed.native_tokens if routed.native_tokens else 0.0
    probabilities = None
    notes = []
    if all(d.probabilities is not None for d in decisions):
        bins = list(decisions[0].bins or [])
        if bins == list(costs.res):
            probabilities = np.array([d.probabilities for d in decisions], dtype=np.float64)
        else:
            notes.append(f"router bins {bins} differ from the labels' resolutions {costs.res}: "
                         "no classifier metrics")
    report = evaluate_labels(records, sizes=sizes, probabilities=probabilities, target=target,
                             free_detail=free_detail, router_result=routed)
    report.notes.extend(notes)
    return report


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="sample")


# -- plots --------------------------------------------------------------------------------------


def _figure(width: float = 6.0, height: float = 4.5):
    from ..core.optional import require

    require("matplotlib", "train", purpose="evaluation plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)  # Agg: no display, no global pyplot state
    return fig


def plot_reliability(metrics: ClassifierMetrics, path: str | os.PathLike) -> Path:
    """Reliability diagram (accuracy against confidence per bin, bar width = bin) as PNG."""
    fig = _figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for lo, hi, count, conf, acc in metrics.reliability:
        ax.bar(lo, acc, width=hi - lo, align="edge", color="tab:blue", alpha=0.7, edgecolor="black")
        ax.plot([conf], [acc], "o", color="tab:red", markersize=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability: ECE {metrics.ece:.3f}, accuracy {metrics.accuracy:.3f} (n={metrics.n})")
    ax.legend(loc="upper left")
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def plot_savings(report: EvaluationReport, path: str | os.PathLike) -> Path:
    """Savings against retention: policies as points, the oracle, and the threshold sweep curve."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    unit = report.policies[0].unit if report.policies else "tokens"
    if report.sweep:
        ax.plot([p.retention for p in report.sweep], [p.tokens_saved for p in report.sweep], "-",
                color="tab:blue", alpha=0.7, label="threshold sweep")
    markers = {"oracle": ("*", "tab:red", 14), "native": ("s", "black", 7), "labels": ("D", "tab:green", 7),
               "discrete": ("o", "tab:orange", 8), "continuous": ("^", "tab:brown", 9)}
    for p in report.policies + ([report.router] if report.router else []):
        if p.name.startswith("fixed-"):
            style = ("x", "grey", 8)
        elif p.name.startswith("router"):
            style = ("P", "tab:purple", 11)
        else:
            style = markers.get(p.name, ("o", "tab:orange", 8))
        ax.plot([p.retention], [p.tokens_saved], style[0], color=style[1], markersize=style[2], label=p.name)
        if p.name.startswith("fixed-"):
            ax.annotate(p.name[6:], (p.retention, p.tokens_saved), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color="grey")
    ax.set_xlabel("score retained (mean ANLS / native)")
    ax.set_ylabel(f"{unit} saved vs native")
    ax.set_title(f"Savings vs retention ({report.target or 'pixels'}, n={report.n})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    path = Path(path)
    fig.savefig(path, format="png")
    return path
