"""Calibration with a guarantee: fit a router's safety margin on a labeled sample.

Given label records (every resolution's score for each (page, question), as written by
``cares label``) and a base router, :func:`calibrate` picks an operating point
``theta = (scale, floor)``: the long side sent is ``max(floor, scale * base long side)``, rounded
up to the sample's grid of labeled sizes (:class:`~cares_integrations.routers.calibrated.CalibratedRouter`).
It guarantees, with probability at least ``confidence`` over the draw of the sample, that the
*retention* on new pages from the same collection,

    E[score at the size sent] / E[score with the page as is]  >=  retention,

for the reader or model the labels came from.

Method: **Learn then Test** (Angelopoulos, Bates, Candes, Jordan, Lei, "Learn then Test:
Calibrating Predictive Algorithms to Achieve Risk Control", arXiv 2110.01052, 2021). For each
operating point the null hypothesis "retention < R" is the statement ``E[x] > 1 / (1 + R)`` for
the per-sample loss ``x = (R * s_native - s_theta + 1) / (1 + R)``, which lies in [0, 1]. A
valid p-value for it comes from

- ``method="wsr"`` (default): the betting (hedged-capital) test of Waudby-Smith and Ramdas,
  "Estimating means of bounded random variables by betting" (JRSS-B 2023, arXiv 2010.09686), with
  their predictable plug-in bets; it adapts to the loss's small variance (most samples are read
  alike at both sizes), so it needs far fewer samples than
- ``method="hb"``: the Hoeffding-Bentkus p-value (Bates et al., "Distribution-free, risk-controlling
  prediction sets", arXiv 2101.02703), the variance-blind bound of the LTT paper.

The family of operating points is two chains: the base router's request scaled (floor 0), from
a large scale (near native, surely valid) down to a small one; and the fixed sizes (scale 0),
from the largest grid size down to the smallest. Along a chain the sizes sent only shrink, so
risk grows (up to a reader's flukes), and each chain is tested by **fixed-sequence testing** at
level ``delta / 2`` (``delta = 1 - confidence``, Bonferroni across the two chains): every point
before the first non-rejection is certified (valid in any order fixed before the labels are
read; the order only decides how much is certified). With probability at least ``1 - delta``
every certified point is valid, so the cheapest certified point on the sample (for
``cost_target``) is too. Sending the page as is is always valid and is the fallback.

Assumptions, stated plainly: the sample is exchangeable with the new pages (a random sample of
the same collection); the guarantee is on the mean over new (page, question) pairs, not on every
page; where a record lacks a grid size, its score at the next smaller labeled size is used (exact
when all records share their resolutions, as ``cares label`` writes them).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .labeling import LabelRecord, labels_and_dataset

__all__ = [
    "CalibrationReport",
    "CalibrationTable",
    "calibrate",
    "calibration_table",
    "hb_pvalues",
    "operating_points",
    "select_operating_point",
    "wsr_pvalues",
]

DEFAULT_SCALES: tuple[float, ...] = tuple(float(s) for s in np.round(np.geomspace(4.0, 0.25, 41), 4)) + (0.0,)
"""Scales on the base router's long side, from conservative to aggressive (0 = the fixed floor)."""


# -- p-values -----------------------------------------------------------------------------------


def wsr_pvalues(x: np.ndarray, m0: float, delta: float, *, seed: int = 0) -> np.ndarray:
    """Betting p-values for H0: E[x] >= ``m0`` (x in [0, 1]), one per column of ``x`` (n, K).

    The capital ``K_t = prod (1 + lambda_t (m0 - x_t))`` is a nonnegative supermartingale under
    H0, so ``1 / max_t K_t`` is a valid p-value (Ville's inequality). Bets are the predictable
    plug-in of Waudby-Smith and Ramdas, truncated to half the largest safe bet; samples are taken
    in one fixed random order (``seed``), independent of the scores.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    if n == 0:
        return np.ones(x.shape[1])
    x = x[np.random.default_rng(seed).permutation(n)]
    t = np.arange(1, n + 1, dtype=np.float64)[:, None]
    csum = np.cumsum(x, axis=0)
    mu = (0.5 + csum) / (t + 1)
    sq = np.cumsum((x - mu) ** 2, axis=0)
    var = (0.25 + sq) / (t + 1)
    var_prev = np.vstack([np.full((1, x.shape[1]), 0.25), var[:-1]])
    lam = np.sqrt(2.0 * math.log(1.0 / delta) / (n * np.maximum(var_prev, 1e-12)))
    lam = np.minimum(lam, 0.5 / max(1.0 - m0, 1e-12))
    log_k = np.cumsum(np.log1p(lam * (m0 - x)), axis=0)
    return np.minimum(1.0, np.exp(-np.max(log_k, axis=0)))


def _binom_cdf(k: int, n: int, p: float) -> float:
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    i = np.arange(0, k + 1)
    logs = (np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in i])
            + i * math.log(p) + (n - i) * math.log1p(-p))
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def hb_pvalues(x: np.ndarray, m0: float, delta: float | None = None) -> np.ndarray:
    """Hoeffding-Bentkus p-values for H0: E[x] >= ``m0`` (x in [0, 1]), one per column of ``x``:
    ``min(exp(-n KL(mean || m0)), e * P(Binomial(n, m0) <= ceil(n mean)))``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    out = np.ones(x.shape[1])
    for k, mean in enumerate(x.mean(axis=0) if n else []):
        if mean >= m0:
            continue
        a = min(max(mean, 1e-12), 1 - 1e-12)
        kl = a * math.log(a / m0) + (1 - a) * math.log((1 - a) / (1 - m0))
        out[k] = min(1.0, math.exp(-n * kl), math.e * _binom_cdf(math.ceil(n * mean - 1e-9), n, m0))
    return out


# -- the sample as tables -----------------------------------------------------------------------


@dataclass
class CalibrationTable:
    """The sample as arrays: for each record i and each sent size j (``grid`` then native), the
    score credited ``scores[i, j]`` and the cost ``costs[i, j]``; ``base`` is the base router's
    long side per record, ``native`` each page's long side; ``unit`` of the costs."""

    grid: list[int]
    scores: np.ndarray
    costs: np.ndarray
    base: np.ndarray
    native: np.ndarray
    unit: str = "pixels"

    @property
    def n(self) -> int:
        """Number of records."""
        return int(self.scores.shape[0])

    def sent_index(self, scale: float, floor: float) -> np.ndarray:
        """Column sent for each record at operating point (scale, floor) (native = len(grid))."""
        grid = np.asarray(self.grid, dtype=np.float64)
        requested = np.maximum(float(floor), float(scale) * self.base)
        j = np.searchsorted(grid, requested - 1e-9, side="left")
        native_col = len(self.grid)
        j = np.where(j >= native_col, native_col, j)
        over = np.zeros(len(j), dtype=bool)
        inside = j < native_col
        over[inside] = grid[j[inside]] >= self.native[inside]
        return np.where(over, native_col, j)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "CalibrationTable":
        """The table of some records (same grid)."""
        idx = np.asarray(idx, dtype=np.int64)
        return CalibrationTable(self.grid, self.scores[idx], self.costs[idx], self.base[idx], self.native[idx],
                                self.unit)


def _record_size(rec: LabelRecord) -> tuple[int, int] | None:
    size = rec.extra.get("native_size") or rec.extra.get("image_size") or rec.extra.get("page_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return int(size[0]), int(size[1])
    if "width" in rec.extra and "height" in rec.extra:
        return int(rec.extra["width"]), int(rec.extra["height"])
    return None


def _base_long_sides(router: Any, records: Sequence[LabelRecord], dataset_dir: Path | None,
                     batch_size: int) -> tuple[list[float], list[tuple[int, int]]]:
    from ..core.payload import load_image
    from ..routers.calibrated import base_long_side
    from .evaluate import label_page_path

    sides: list[float] = []
    sizes: list[tuple[int, int]] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        decoded = [load_image(label_page_path(r, dataset_dir), max_pixels=router.max_pixels) for r in chunk]
        predictions = router.predict(decoded, [r.question for r in chunk])
        sides.extend(base_long_side(router, d, p) for d, p in zip(decoded, predictions))
        sizes.extend(tuple(d.size) for d in decoded)
    return sides, sizes


def calibration_table(records: Sequence[LabelRecord], sizes: Sequence[tuple[int, int]], base_sides: Sequence[float],
                      *, cost_target: str | None = None, free_detail: bool = True) -> CalibrationTable:
    """Build the :class:`CalibrationTable` of a sample (records may have different resolution
    lists; each page's own long side is its native size; scores credited by
    :func:`~cares_integrations.training.evaluate.credited_score`)."""
    from .evaluate import credited_score, sent_cost

    if not (len(records) == len(sizes) == len(base_sides)) or not records:
        raise ValueError(f"need the same non-zero number of records ({len(records)}), page sizes ({len(sizes)}) "
                         f"and base long sides ({len(base_sides)})")
    model = None
    if cost_target is not None:
        from ..core.tokens import get_target

        model = get_target(cost_target)
    native = np.array([max(s) for s in sizes], dtype=np.int64)
    grid = sorted({int(r) for rec, nat in zip(records, native) for r in rec.resolutions if r < nat})
    if not grid:
        raise ValueError("no labeled resolution is smaller than its page: nothing to calibrate")
    n, g = len(records), len(grid)
    scores = np.zeros((n, g + 1))
    costs = np.zeros((n, g + 1))
    cache: dict[tuple[int, int, int], int] = {}
    for i, (rec, (w, h)) in enumerate(zip(records, sizes)):
        for j in range(g + 1):
            side = grid[j] if j < g and grid[j] < native[i] else int(native[i])
            scores[i, j] = credited_score(rec.resolutions, rec.scores, int(native[i]), side)
            key = (w, h, side)
            if key not in cache:
                cache[key] = sent_cost(w, h, side, model, free_detail=free_detail)
            costs[i, j] = cache[key]
    return CalibrationTable(grid, scores, costs, np.asarray(base_sides, dtype=np.float64), native,
                            "tokens" if model is not None else "pixels")


# -- selection ----------------------------------------------------------------------------------


def operating_points(grid: Sequence[int], scales: Sequence[float] = DEFAULT_SCALES) -> list[list[tuple[float, int]]]:
    """The two chains of operating points: the base router's request scaled, from large
    (conservative) to small scales (floor 0); and the fixed sizes (scale 0), from the largest grid
    size to the smallest."""
    return [[(float(s), 0) for s in scales if s > 0],
            [(0.0, int(f)) for f in sorted(grid, reverse=True)]]


def _losses(table: CalibrationTable, points: list[tuple[float, int]], retention: float):
    rows = np.arange(table.n)
    native_scores = table.scores[:, -1]
    sent = np.stack([table.scores[rows, table.sent_index(s, f)] for s, f in points], axis=1)
    cost = np.stack([table.costs[rows, table.sent_index(s, f)] for s, f in points], axis=1)
    x = (retention * native_scores[:, None] - sent + 1.0) / (1.0 + retention)
    return x, sent, cost


def select_operating_point(table: CalibrationTable, retention: float, confidence: float, *, method: str = "wsr",
                           scales: Sequence[float] = DEFAULT_SCALES, seed: int = 0) -> dict[str, Any]:
    """Learn then Test on ``table``: the cheapest certified operating point and the numbers
    behind it (see the module docstring). Returns a dict with ``scale``, ``floor``, ``certified``
    (how many points were), ``sample_retention``, ``sample_savings``, ``n_needed`` and more."""
    if not 0 < retention <= 1:
        raise ValueError(f"retention must be in (0, 1], got {retention}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in ("wsr", "hb"):
        raise ValueError(f"method must be 'wsr' or 'hb', got {method!r}")
    native_mean = float(table.scores[:, -1].mean())
    if native_mean <= 0:
        raise ValueError("the reader scores 0 on every page sent as is: retention is undefined")
    delta = 1.0 - confidence
    chains = operating_points(table.grid, scales)
    m = len(chains)
    points = [p for chain in chains for p in chain]
    x, sent, cost = _losses(table, points, retention)
    m0 = 1.0 / (1.0 + retention)
    pvals = wsr_pvalues(x, m0, delta / m, seed=seed) if method == "wsr" else hb_pvalues(x, m0)
    certified = np.zeros(len(points), dtype=bool)
    k = 0
    for chain in chains:
        for offset in range(len(chain)):
            if pvals[k + offset] > delta / m:
                break
            certified[k + offset] = True
        k += len(chain)
    native_cost = float(table.costs[:, -1].sum())
    emp_ret = sent.mean(axis=0) / native_mean
    total = cost.sum(axis=0)
    fixed = [i for i, (s, f) in enumerate(points) if s == 0]
    best_fixed_emp = min((i for i in fixed if emp_ret[i] >= retention), key=lambda i: total[i], default=None)
    best_fixed_cert = min((i for i in fixed if certified[i]), key=lambda i: total[i], default=None)
    out: dict[str, Any] = {"n": table.n, "chains": m, "points": len(points), "certified": int(certified.sum()),
                           "native_mean_score": native_mean, "unit": table.unit}
    if certified.any():
        cand = np.flatnonzero(certified)
        best = int(cand[np.lexsort((-emp_ret[cand], total[cand]))[0]])
        scale, floor = points[best]
        out.update(scale=scale, floor=floor, sample_retention=float(emp_ret[best]),
                   sample_savings=1.0 - float(total[best]) / native_cost, p_value=float(pvals[best]))
    else:
        best = None
        out.update(scale=None, floor=None, sample_retention=1.0, sample_savings=0.0, p_value=None)
    bernstein = math.log(m / delta)

    def needed(i: int | None) -> int | None:
        if i is None:
            return None
        gap = m0 - float(x[:, i].mean())
        if gap <= 0:
            return None
        var = float(x[:, i].var())
        return int(math.ceil(bernstein * (2 * var + 2 * gap / 3) / gap ** 2))

    ok = np.flatnonzero(emp_ret >= retention)
    best_emp = int(ok[np.argmin(total[ok])]) if len(ok) else None
    out["n_needed"] = needed(best)
    out["best_on_sample"] = None if best_emp is None else {
        "scale": points[best_emp][0], "floor": points[best_emp][1], "sample_retention": float(emp_ret[best_emp]),
        "sample_savings": 1.0 - float(total[best_emp]) / native_cost, "certified": bool(certified[best_emp]),
        "n_needed": needed(best_emp)}
    out["best_fixed"] = None if best_fixed_emp is None else {
        "long_side": points[best_fixed_emp][1], "sample_retention": float(emp_ret[best_fixed_emp]),
        "sample_savings": 1.0 - float(total[best_fixed_emp]) / native_cost,
        "certified": bool(certified[best_fixed_emp]), "n_needed": needed(best_fixed_emp)}
    out["best_certified_fixed"] = None if best_fixed_cert is None else {
        "long_side": points[best_fixed_cert][1], "sample_retention": float(emp_ret[best_fixed_cert]),
        "sample_savings": 1.0 - float(total[best_fixed_cert]) / native_cost}
    return out


# -- the public entry point ---------------------------------------------------------------------


@dataclass
class CalibrationReport:
    """What a calibration guarantees and what it found on the sample.

    With probability >= ``confidence`` over the sample, retention on new pages of the same
    collection is >= ``retention`` for ``reader`` (the labels' target). ``sample_savings`` is in
    ``unit`` (pixels, or ``cost_target``'s tokens); ``n_needed`` estimates the sample size at
    which the chosen point would still be certified (empirical Bernstein, from its observed mean
    and variance); ``best_on_sample`` is the cheapest point whose sample retention reaches the
    target, with the sample size it would need; ``best_fixed`` the same among fixed sizes.
    """

    base: str
    reader: str
    retention: float
    confidence: float
    method: str
    n: int
    scale: float | None
    floor: int | None
    grid: list[int]
    cost_target: str | None
    unit: str
    sample_retention: float
    sample_savings: float
    certified: int
    points: int
    n_needed: int | None
    best_on_sample: dict | None = None
    best_fixed: dict | None = None
    best_certified_fixed: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """A few plain lines: the guarantee, the operating point, the sample's numbers."""
        point = (f"none certified, so pages are sent as they are (sizes tested: {self.grid})" if self.scale is None
                 else f"fixed {self.floor} px" if self.scale == 0 else
                 f"max({self.floor} px, {self.scale:g} x {self.base}), rounded up to {self.grid}")
        lines = [
            f"guarantee: with probability >= {self.confidence:g}, retention >= {self.retention:g} on new pages "
            f"of this collection for {self.reader} (Learn then Test, {self.method}, {self.n} samples)",
            f"operating point: {point}",
            f"on the sample: retention {self.sample_retention:.3f}, {self.unit} saved {self.sample_savings:.1%} "
            f"({self.certified} of {self.points} operating points certified)",
        ]
        if self.n_needed is not None:
            lines.append(f"sample size needed for this point: about {self.n_needed}")
        if self.best_fixed:
            bf = self.best_fixed
            lines.append(f"best fixed size on the sample at this retention: {bf['long_side']} px, saving "
                         f"{bf['sample_savings']:.1%} ({'certified' if bf['certified'] else 'not certified'}"
                         + (f"; needs about {bf['n_needed']} samples" if bf["n_needed"] else "") + ")")
        b = self.best_on_sample
        if b and not b["certified"]:
            lines.append(f"cheapest point reaching the target on the sample saves {b['sample_savings']:.1%} but is not "
                         f"certified" + (f"; it needs about {b['n_needed']} samples" if b["n_needed"] else ""))
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def calibrate(
    labels: Sequence[LabelRecord] | str | os.PathLike,
    router: Any = "default",
    *,
    retention: float,
    confidence: float = 0.9,
    cost_target: str | None = None,
    dataset_dir: str | os.PathLike | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    base_long_sides: Sequence[float] | None = None,
    method: str = "wsr",
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[Any, CalibrationReport]:
    """Fit ``router``'s operating point on ``labels`` so that, with probability >= ``confidence``,
    retention on new pages of the same collection is >= ``retention``.

    - ``labels``: label records or a labels JSONL (page paths relative to ``dataset_dir``, by
      default the labels file's folder); records may carry different resolution lists.
    - ``router``: a :func:`~cares_integrations.load_router` source (``"default"``, ``"text-scale"``,
      ``"learned-default"``, a gate folder) or a Router (then ``out_dir`` needs a source string).
    - ``cost_target``: the token model savings are counted and minimised for (pixels when None).
    - ``sizes`` / ``base_long_sides``: page sizes and the base router's long side per record, if
      already known (skips reading the pages).
    - ``out_dir``: where to save the calibrated router (``load_router(out_dir)`` loads it).

    Returns ``(calibrated router, report)``.
    """
    from ..routers.calibrated import CalibratedRouter
    from ..routers.registry import load_router

    records, dataset_dir = labels_and_dataset(labels, dataset_dir)
    if not records:
        raise ValueError("no label records to calibrate on")
    source = router if isinstance(router, str) else getattr(router, "base_source", None)
    if isinstance(router, (str, os.PathLike)):
        source = str(router)
        if Path(source).exists():
            source = str(Path(source).resolve())
        base = load_router(source)
    else:
        base = router
    if isinstance(base, CalibratedRouter):
        raise ValueError("calibrate the base router, not an already calibrated one")
    folder = Path(dataset_dir) if dataset_dir is not None else None
    if base_long_sides is None:
        base_long_sides, read_sizes = _base_long_sides(base, records, folder, batch_size)
        sizes = sizes if sizes is not None else read_sizes
    if sizes is None:
        sizes = [_record_size(r) for r in records]
        if any(s is None for s in sizes):
            from .evaluate import page_sizes

            sizes = page_sizes(records, folder)
    table = calibration_table(records, list(sizes), list(base_long_sides), cost_target=cost_target,
                              free_detail=bool(getattr(base, "free_detail", True)))
    found = select_operating_point(table, retention, confidence, method=method, seed=seed)
    readers = sorted({r.target for r in records})
    notes = []
    if len(readers) > 1:
        notes.append(f"the labels mix readers {readers}: the guarantee is for that mixture")
    if len({tuple(r.resolutions[:-1]) for r in records}) > 1:
        notes.append("records have different resolution lists: a size a record was not labeled at is credited "
                     "with its next smaller labeled size's score")
    report = CalibrationReport(
        base=str(source or base.name), reader=", ".join(readers), retention=float(retention),
        confidence=float(confidence), method=method, n=table.n, scale=found["scale"], floor=found["floor"],
        grid=table.grid, cost_target=cost_target, unit=table.unit, sample_retention=found["sample_retention"],
        sample_savings=found["sample_savings"], certified=found["certified"], points=found["points"],
        n_needed=found["n_needed"], best_on_sample=found["best_on_sample"], best_fixed=found["best_fixed"],
        best_certified_fixed=found["best_certified_fixed"], notes=notes,
    )
    if found["scale"] is None:  # nothing certified: send pages as they are
        scale, floor = 0.0, int(table.grid[-1]) + 1
        grid = table.grid
    else:
        scale, floor, grid = found["scale"], found["floor"], table.grid
    calibrated = CalibratedRouter(base, scale=scale, floor=floor, grid=grid, base_source=source,
                                  report=report.to_dict())
    if out_dir is not None:
        calibrated.save(out_dir)
        (Path(out_dir) / "calibration_report.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return calibrated, report


def load_report(folder: str | os.PathLike) -> dict[str, Any]:
    """The report stored in a calibration folder."""
    from ..routers.calibrated import CALIBRATION_NAME

    return json.loads((Path(folder) / CALIBRATION_NAME).read_text(encoding="utf-8"))["report"]
