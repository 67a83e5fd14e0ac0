"""ANLS: Average Normalized Levenshtein Similarity, the score that defines CARES labels.

For a prediction ``p`` and a reference answer ``a`` (both lowercased, surrounding whitespace
stripped and inner runs of whitespace collapsed to one space)::

    NLD(p, a)  = levenshtein(p, a) / max(len(p), len(a))      (0 when both are empty)
    sim(p, a)  = 1 - NLD(p, a)
    ANLS(p, A) = max over a in A of sim(p, a)

The standard DocVQA metric zeroes a similarity whose NLD is at or above 0.5
(``threshold=0.5``). The CARES research code applies no cut-off, which is the default here
(``threshold=None``): labels then see partial credit, e.g. a one-digit slip in a long number.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["normalize_answer", "levenshtein", "nls", "anls", "mean_anls"]


def normalize_answer(text: str) -> str:
    """Lowercase and normalise whitespace (strip the ends, collapse inner runs to one space)."""
    if not isinstance(text, str):
        raise TypeError(f"answers must be strings, got {type(text).__name__}: {text!r}")
    return " ".join(text.lower().split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two strings."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def nls(prediction: str, answer: str, *, threshold: float | None = None) -> float:
    """Normalised Levenshtein similarity of one prediction against one answer, in [0, 1].

    With ``threshold`` (DocVQA uses 0.5), a similarity whose distance NLD is >= threshold is 0.
    """
    p, a = normalize_answer(prediction), normalize_answer(answer)
    longest = max(len(p), len(a))
    if longest == 0:
        return 1.0
    distance = levenshtein(p, a) / longest
    if threshold is not None and distance >= threshold:
        return 0.0
    return 1.0 - distance


def anls(prediction: str, answers: str | Sequence[str], *, threshold: float | None = None) -> float:
    """ANLS of one prediction: the best similarity over the reference answers.

    ``answers`` is one string or a non-empty list of acceptable answers. ``threshold=None``
    (default) is the CARES research setting; ``threshold=0.5`` is the standard DocVQA metric.
    """
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1] or None, got {threshold}")
    if isinstance(answers, str):
        answers = [answers]
    answers = list(answers)
    if not answers:
        raise ValueError("anls needs at least one reference answer")
    return max(nls(prediction, a, threshold=threshold) for a in answers)


def mean_anls(
    predictions: Iterable[str], answers: Iterable[str | Sequence[str]], *, threshold: float | None = None
) -> float:
    """Mean ANLS over a dataset (the benchmark number); ``predictions`` and ``answers`` align."""
    predictions, answers = list(predictions), list(answers)
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answer lists")
    if not predictions:
        raise ValueError("mean_anls needs at least one prediction")
    return sum(anls(p, a, threshold=threshold) for p, a in zip(predictions, answers)) / len(predictions)
