"""Head training and calibration on synthetic features (no backbone needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cares_integrations.training.train import (
    class_weights_for,
    classification_metrics,
    fit_classifier,
    fit_temperature,
    stratified_split,
    train_head,
)


# Every test here trains or runs a tiny torch model: one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n=240, d=16, k=3, seed=0, noise=1.0):
    """Gaussian class blobs: learnable but not perfectly separable."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, size=n)
    x = centers[y] + rng.normal(size=(n, d)) * noise
    return x.astype(np.float32), y


def test_stratified_split_is_seeded_and_stratified():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = stratified_split(y, 0.2, seed=3)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    assert np.bincount(y[va]).tolist() == [10, 6, 4]
    tr2, va2 = stratified_split(y, 0.2, seed=3)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(y, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(y, 1.5)


def test_class_weights():
    y = [0, 0, 0, 1]
    w = class_weights_for(y, 3, "balanced")
    assert w[0] < w[1] and w[2] == 0
    np.testing.assert_allclose(w[:2], [4 / 6, 2.0])
    assert class_weights_for(y, 3, None) is None
    np.testing.assert_allclose(class_weights_for(y, 3, [1, 2, 3]), [1, 2, 3])
    with pytest.raises(ValueError, match="3 non-negative"):
        class_weights_for(y, 3, [1, 2])
    with pytest.raises(ValueError, match="balanced"):
        class_weights_for(y, 3, "even")


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    # logits that are 3x overconfident: the fitted T should undo it
    t = fit_temperature(true_logits * 3, y)
    assert 2.6 < t < 3.4
    assert 0.8 < fit_temperature(true_logits, y) < 1.2


def test_metrics_on_hand_checked_case():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = classification_metrics(p, [0, 1, 1, 1])
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 0], [1, 2]]
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))


def linear(d, k, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(d, k)


def test_fit_classifier_learns_calibrates_and_is_deterministic():
    x, y = blobs()
    a = fit_classifier(linear(16, 3), [x], y, n_classes=3, epochs=15, seed=0)
    b = fit_classifier(linear(16, 3), [x], y, n_classes=3, epochs=15, seed=0)
    assert a.val_metrics["accuracy"] > 0.8
    assert a.temperature == b.temperature
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert a.history == b.history
    assert 1 <= a.best_epoch <= len(a.history)
    # calibration never makes validation NLL worse (T=1 is in the search range)
    assert a.val_metrics["nll"] <= a.val_metrics["nll_uncalibrated"] + 1e-6
    probs = a.predict_proba(x[:5])
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    c = fit_classifier(linear(16, 3), [x], y, n_classes=3, epochs=15, seed=1)
    assert not np.array_equal(c.val_index, a.val_index)


def test_early_stopping_stops_and_keeps_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 32)).astype(np.float32)
    y = rng.integers(0, 3, size=120)  # pure noise: validation loss stops improving quickly
    r = fit_classifier(linear(32, 3), [x], y, n_classes=3, epochs=200, patience=3, lr=1e-2, seed=0)
    assert len(r.history) < 200
    best = min(h["val_loss"] for h in r.history)
    assert r.history[r.best_epoch - 1]["val_loss"] == best


def test_balanced_weights_lift_the_minority_class():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.12).astype(int)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 0.9).astype(np.float32)
    plain = fit_classifier(linear(4, 2), [x], y, n_classes=2, epochs=20, seed=0)
    bal = fit_classifier(linear(4, 2), [x], y, n_classes=2, epochs=20, seed=0, class_weights="balanced")
    pred_plain = plain.predict_proba(x).argmax(1)
    pred_bal = bal.predict_proba(x).argmax(1)
    assert (pred_bal == 1).sum() > (pred_plain == 1).sum()


def test_bad_inputs():
    x, y = blobs(n=30)
    with pytest.raises(ValueError, match="rows"):
        fit_classifier(linear(16, 3), [x[:10]], y, n_classes=3)
    with pytest.raises(ValueError, match="class indices"):
        fit_classifier(linear(16, 3), [x], y + 5, n_classes=3)


def test_train_head_gives_a_gate_head():
    gate = pytest.importorskip("cares_integrations.routers.gate")
    x, y = blobs(d=24)
    r = train_head(x, y, hidden=32, epochs=10, seed=0)
    assert isinstance(r.head, gate.GateHead)
    assert r.val_metrics["accuracy"] > 0.8
    r2 = train_head(x, y, hidden=32, epochs=10, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(r.head.parameters(), r2.head.parameters()))
