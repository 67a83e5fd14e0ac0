"""Training a gate head on cached features, and calibrating it.

The loop (:func:`fit_classifier`) is the research recipe made deterministic: AdamW, lr 1e-3,
batch 32, cross-entropy with label smoothing 0.05, optional class weights, early stopping on a
stratified, seeded validation split (best validation NLL wins), then temperature scaling fitted
on the same split (one scalar ``T`` minimising the NLL of ``softmax(logits / T)``). The same seed
gives the same head, bit for bit, on the same machine.

:func:`train_head` trains a :class:`cares_integrations.gate.GateHead` on an (n, d) feature
matrix; :func:`train_gate_from_labels` is the whole path behind ``cares train``:

    labels JSONL -> backbone features (cached, one pass for every layer swept)
                 -> one head per layer -> best by validation accuracy
                 -> temperature -> ``save_gate(out_dir, ...)``

so that ``cares_integrations.load_router(out_dir)`` loads the result.

Labels file (shared format): JSONL, one line per sample ``{"id", "image", "question",
"answers", "target", "resolutions": [int, ...], "predictions", "scores", "label": int,
"label_resolution": int}``; ``image`` is relative to the dataset folder.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

__all__ = [
    "GateTrainingReport",
    "TrainResult",
    "class_weights_for",
    "classification_metrics",
    "fit_classifier",
    "fit_temperature",
    "read_labels",
    "stratified_split",
    "train_gate_from_labels",
    "train_head",
]

ClassWeights = Literal["balanced"] | Sequence[float] | None


@dataclass
class TrainResult:
    """A trained, calibrated classifier and how it got there.

    ``model`` is the trained module in eval mode (a ``GateHead`` for :func:`train_head`);
    ``temperature`` divides its logits before the softmax; ``history`` has one dict per epoch
    (``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``); ``val_metrics`` are computed on
    the validation split with the calibrated probabilities (``accuracy``, ``macro_f1``, ``nll``,
    ``ece``, ``nll_uncalibrated``, ``ece_uncalibrated``, ``n``, ``confusion``).
    """

    model: Any
    temperature: float
    history: list[dict[str, float]]
    val_metrics: dict[str, Any]
    train_index: np.ndarray
    val_index: np.ndarray
    best_epoch: int
    n_classes: int
    layer: int | None = None

    @property
    def head(self) -> Any:
        """The trained head (alias of ``model``)."""
        return self.model

    def predict_proba(self, *inputs: Any) -> np.ndarray:
        """Calibrated class probabilities for new inputs (numpy arrays or tensors)."""
        import torch

        tensors = [_as_tensor(x) for x in inputs]
        with torch.inference_mode():
            logits = self.model(*tensors)
        return torch.softmax(logits / self.temperature, dim=-1).numpy()


def _as_tensor(x: Any):
    import torch

    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))


def stratified_split(labels: Sequence[int], val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: each class contributes ``val_fraction`` of its samples to the
    validation indices (rounded, at least one when the class has two or more). Returns sorted
    (train, val) index arrays."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        k = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        val.extend(idx[:k].tolist())
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    if len(val_idx) == 0:
        raise ValueError(f"too few samples ({len(y)}) for a validation split")
    return train_idx, val_idx


def class_weights_for(labels: Sequence[int], n_classes: int, weights: ClassWeights) -> np.ndarray | None:
    """Per-class loss weights: None, ``"balanced"`` (n / (k * count), absent classes get 0), or
    an explicit sequence of ``n_classes`` positive numbers."""
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights != "balanced":
            raise ValueError(f"class_weights must be 'balanced', a sequence of numbers, or None; got {weights!r}")
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
        out = np.zeros(n_classes)
        present = counts > 0
        out[present] = counts.sum() / (present.sum() * counts[present])
        return out.astype(np.float32)
    arr = np.asarray(list(weights), dtype=np.float32)
    if arr.shape != (n_classes,) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"class_weights needs {n_classes} non-negative numbers, got {list(weights)}")
    return arr


def fit_temperature(logits: Any, labels: Sequence[int], *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)`` on (logits, labels).

    A 1-D search on log T (a coarse grid, then golden-section refinement): deterministic and
    robust where LBFGS can stall on flat or separable data. Returns T within ``bounds``.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, k) logits and n labels, got {z.shape} and {len(y)}")

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=1))
        return float(np.mean(lse - s[np.arange(len(y)), y]))

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    grid = np.linspace(lo, hi, 61)
    values = [nll(g) for g in grid]
    best = int(np.argmin(values))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    log_t = (a + b) / 2
    if nll(log_t) > values[best]:
        log_t = grid[best]
    return float(math.exp(log_t))


def classification_metrics(probabilities: Any, labels: Sequence[int], *, n_bins: int = 10) -> dict[str, Any]:
    """Accuracy, macro-F1, NLL, expected calibration error (equal-width confidence bins) and the
    confusion matrix (rows = true class) for class probabilities: ``evaluate.classifier_metrics``
    plus the negative log-likelihood that temperature scaling minimises."""
    from .evaluate import classifier_metrics

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    m = classifier_metrics(p, y, n_bins=n_bins)
    nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))
    return {"n": m.n, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "nll": nll, "ece": m.ece,
            "confusion": m.confusion}


def fit_classifier(
    model: Any,
    inputs: Sequence[Any],
    labels: Sequence[int],
    *,
    n_classes: int,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.01,
    label_smoothing: float = 0.05,
    class_weights: ClassWeights = None,
    val_fraction: float = 0.2,
    patience: int = 5,
    seed: int = 0,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Train any ``model(*inputs) -> logits`` module, early-stop, and calibrate.

    ``inputs`` are aligned arrays/tensors (first axis = sample). ``split`` overrides the
    stratified ``(train_index, val_index)`` split. Early stopping keeps the weights of the epoch
    with the lowest validation NLL and stops after ``patience`` epochs without improvement.
    """
    import torch
    from torch import nn

    y_all = np.asarray(labels, dtype=np.int64)
    tensors = [_as_tensor(x) for x in inputs]
    n = len(y_all)
    for i, t in enumerate(tensors):
        if len(t) != n:
            raise ValueError(f"input {i} has {len(t)} rows but there are {n} labels")
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    if n == 0 or y_all.min() < 0 or y_all.max() >= n_classes:
        raise ValueError(f"labels must be class indices in [0, {n_classes}), got {sorted(set(y_all.tolist()))}")
    train_idx, val_idx = split if split is not None else stratified_split(y_all, val_fraction, seed)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx, dtype=np.int64)

    torch.manual_seed(seed)
    weights = class_weights_for(y_all[train_idx], n_classes, class_weights)
    loss_fn = nn.CrossEntropyLoss(
        weight=torch.from_numpy(weights) if weights is not None else None, label_smoothing=label_smoothing
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(y_all)
    tr = torch.from_numpy(train_idx)
    va = torch.from_numpy(val_idx)

    def val_logits() -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            out = torch.cat([model(*[t[va[s : s + 256]] for t in tensors]) for s in range(0, len(va), 256)])
        return out.clone()

    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    best_loss, best_epoch, stale = math.inf, 0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = tr[torch.randperm(len(tr), generator=generator)]
        total, count = 0.0, 0
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            logits = model(*[t[idx] for t in tensors])
            loss = loss_fn(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        logits = val_logits()
        val_loss = float(nn.functional.cross_entropy(logits, y[va]))
        val_acc = float((logits.argmax(-1) == y[va]).float().mean())
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                        "val_accuracy": val_acc})
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    logits = val_logits().numpy()
    temperature = fit_temperature(logits, y_all[val_idx])
    raw = classification_metrics(_softmax(logits), y_all[val_idx])
    metrics = classification_metrics(_softmax(logits / temperature), y_all[val_idx])
    metrics["nll_uncalibrated"] = raw["nll"]
    metrics["ece_uncalibrated"] = raw["ece"]
    return TrainResult(model=model, temperature=temperature, history=history, val_metrics=metrics,
                       train_index=train_idx, val_index=val_idx, best_epoch=best_epoch, n_classes=n_classes)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train_head(
    features: Any,
    labels: Sequence[int],
    *,
    n_classes: int | None = None,
    hidden: int = 256,
    seed: int = 0,
    **options: Any,
) -> TrainResult:
    """Train and calibrate a :class:`cares_integrations.gate.GateHead` on an (n, d) feature
    matrix. ``options`` go to :func:`fit_classifier` (``epochs``, ``lr``, ``batch_size``,
    ``label_smoothing``, ``class_weights``, ``val_fraction``, ``patience``, ``split`` ...)."""
    import torch

    from ..routers.gate.head import GateHead

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be an (n, d) matrix, got shape {x.shape}")
    k = int(n_classes if n_classes is not None else int(np.max(labels)) + 1)
    torch.manual_seed(seed)
    head = GateHead(x.shape[1], hidden, k)
    return fit_classifier(head, [x], labels, n_classes=k, seed=seed, **options)


def read_labels(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a labels JSONL (skipping a torn last line from an interrupted run); every record
    must have ``id``, ``image``, ``question``, ``label`` and ``resolutions``."""
    records = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise ValueError(f"{path}:{n}: not valid JSON") from None
        for key in ("id", "image", "question", "label", "resolutions"):
            if key not in rec:
                raise ValueError(f"{path}:{n}: label record has no {key!r}")
        records.append(rec)
    if not records:
        raise ValueError(f"{path}: no label records")
    return records


@dataclass
class GateTrainingReport:
    """What :func:`train_gate_from_labels` did: the folder written, the layer chosen, and the
    validation metrics of every layer tried (``per_layer[layer] = val_metrics``)."""

    out_dir: Path
    feature_layer: int
    temperature: float
    val_metrics: dict[str, Any]
    per_layer: dict[int, dict[str, Any]] = field(default_factory=dict)
    n_samples: int = 0
    bins: tuple[int, ...] = ()
    result: TrainResult | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (also written to ``out_dir/training_report.json``)."""
        return {
            "out_dir": str(self.out_dir),
            "feature_layer": self.feature_layer,
            "temperature": self.temperature,
            "val_metrics": self.val_metrics,
            "per_layer": {str(k): v for k, v in self.per_layer.items()},
            "n_samples": self.n_samples,
            "bins": list(self.bins),
            "history": self.result.history if self.result else [],
        }


def train_gate_from_labels(
    labels_path: str | os.PathLike,
    dataset_dir: str | os.PathLike | None,
    *,
    base_model: str,
    out_dir: str | os.PathLike,
    feature_layer: int | None = None,
    pooling: str = "mean",
    preprocessing: str = "tile",
    layers_sweep: Sequence[int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    hidden: int = 256,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    label_smoothing: float = 0.05,
    class_weights: ClassWeights = None,
    val_fraction: float = 0.2,
    patience: int = 5,
    seed: int = 0,
    revision: str | None = None,
    device: str | None = None,
    dtype: Any = None,
    feature_batch_size: int = 8,
    progress: bool = True,
    backbone: Any = None,
) -> GateTrainingReport:
    """Labels -> cached features -> head(s) -> calibrated gate saved in ``out_dir``.

    - ``labels_path``: labels JSONL (see the module docstring); ``dataset_dir``: the folder its
      ``image`` paths are relative to (None: the labels file's folder).
    - ``base_model``: the proxy VLM (hub id or local folder) for
      ``ProxyBackbone.from_pretrained``; ``revision``, ``device``, ``dtype`` go there too.
    - ``feature_layer``: the text layer to pool (None: the backbone's default, the middle one);
      ``layers_sweep``: several layers to try from ONE backbone pass; the one with the best
      validation accuracy is saved. ``pooling`` ("mean" or "last"), ``preprocessing``
      ("tile" or "upstream") as in the gate.
    - ``cache_dir``: feature cache (default ``out_dir/feature_cache``).
    - training options as in :func:`fit_classifier`; ``seed`` fixes split, init and order.
    - ``backbone``: an already-built ``ProxyBackbone`` (skips loading ``base_model``).

    Writes the gate (``save_gate``: ``cares_gate.json`` + ``head.safetensors``) and
    ``training_report.json``; ``cares_integrations.load_router(out_dir)`` then loads it.
    """
    from ..routers.gate import GateConfig, GateHead, ProxyBackbone, save_gate
    from .features import extract_features

    labels_path = Path(labels_path)
    records = read_labels(labels_path)
    base = Path(dataset_dir) if dataset_dir is not None else labels_path.parent
    resolutions = tuple(int(r) for r in records[0]["resolutions"])
    for rec in records:
        if tuple(int(r) for r in rec["resolutions"]) != resolutions:
            raise ValueError(f"label record {rec['id']!r} has resolutions {rec['resolutions']}, "
                             f"others {list(resolutions)}: label with one resolution set")
    y = np.array([int(r["label"]) for r in records], dtype=np.int64)
    n_classes = len(resolutions)

    if layers_sweep:
        layers = sorted({int(layer) for layer in layers_sweep})
    elif feature_layer is not None:
        layers = [int(feature_layer)]
    else:
        layers = None
    if backbone is None:
        backbone = ProxyBackbone.from_pretrained(base_model, feature_layers=layers, pooling=pooling,
                                                 preprocessing=preprocessing, device=device, dtype=dtype,
                                                 revision=revision)
    if layers is None:
        layers = list(backbone.feature_layers)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feats = extract_features(records, backbone, layers=layers, base_dir=base,
                             cache_dir=cache_dir or out / "feature_cache", batch_size=feature_batch_size,
                             progress=progress)
    split = stratified_split(y, val_fraction, seed)
    per_layer: dict[int, dict[str, Any]] = {}
    best: TrainResult | None = None
    for layer in layers:
        result = train_head(feats.features[layer], y, n_classes=n_classes, hidden=hidden, seed=seed, epochs=epochs,
                            lr=lr, batch_size=batch_size, label_smoothing=label_smoothing,
                            class_weights=class_weights, patience=patience, split=split)
        result.layer = layer
        per_layer[layer] = result.val_metrics
        if best is None or result.val_metrics["accuracy"] > best.val_metrics["accuracy"]:
            best = result
    assert best is not None

    head: GateHead = best.model
    config = _gate_config(GateConfig, backbone, base_model=base_model, revision=revision, layer=best.layer,
                          pooling=pooling, preprocessing=preprocessing, bins=resolutions,
                          temperature=best.temperature, in_dim=int(feats.features[best.layer].shape[1]),
                          hidden=hidden, n_classes=n_classes,
                          labels=f"target {records[0].get('target', '?')}, {len(records)} samples from {labels_path.name}")
    save_gate(out, config, head)
    report = GateTrainingReport(out_dir=out, feature_layer=int(best.layer), temperature=best.temperature,
                                val_metrics=best.val_metrics, per_layer=per_layer, n_samples=len(records),
                                bins=resolutions, result=best)
    (out / "training_report.json").write_text(json.dumps(report.as_dict(), indent=2))
    return report


def _gate_config(GateConfig: Callable[..., Any], backbone: Any, **values: Any) -> Any:
    """Build the gate's :class:`~cares_integrations.gate.GateConfig` from what training knows."""
    fields: dict[str, Any] = {
        "base_model": values["base_model"],
        "base_model_revision": values["revision"],
        "feature_layers": (int(values["layer"]),),
        "pooling": values["pooling"],
        "preprocessing": values["preprocessing"],
        "bins": tuple(values["bins"]),
        "temperature": float(values["temperature"]),
        "in_dim": int(values["in_dim"]),
        "hidden_dim": int(values["hidden"]),
        "n_classes": int(values["n_classes"]),
    }
    if values.get("labels"):
        fields["labels"] = values["labels"]
    if hasattr(backbone, "gate_config"):
        return backbone.gate_config(**fields)
    return GateConfig(**fields)
