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

__all__ = ["normalize_answer", "levenshtein", "nls", "anls", "mean_anls", "squash", "find_answer", "reading_score"]


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


def squash(text: str) -> str:
    """Lowercase, Unicode-compatibility-normalise (ligatures, curly quotes) and drop all whitespace:
    the form in which a reader's text and an answer are compared by :func:`find_answer`."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(_QUOTES)
    return "".join(text.split())


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                         "\u2212": "-"})


def find_answer(answer: str, text: str) -> tuple[float, str]:
    """Where ``answer`` is in a reader's ``text``, matched inside tokens and across dropped spaces.

    Both are :func:`squash`-ed; the score is ``1 - d / len(answer)`` where ``d`` is the smallest
    edit distance between the answer and any substring of the text (semi-global alignment), so
    ``"tothe problem"`` holds ``"to the"`` exactly. Returns (score in [0, 1], matched substring).
    """
    a, t = squash(answer), squash(text)
    if not a:
        return (1.0, "") if not t else (0.0, "")
    pos = t.find(a)
    if pos >= 0:
        return 1.0, t[pos:pos + len(a)]
    if not t:
        return 0.0, ""
    n = len(t)
    # previous[j]: distance of a[:i] to the best substring of t ending at j; start[j]: its start
    previous, start = [0] * (n + 1), list(range(n + 1))
    for i, ca in enumerate(a, 1):
        current, cstart = [i] + [0] * n, [0] * (n + 1)
        for j in range(1, n + 1):
            sub = previous[j - 1] + (ca != t[j - 1])
            dele = previous[j] + 1
            ins = current[j - 1] + 1
            best = min(sub, dele, ins)
            current[j] = best
            cstart[j] = start[j - 1] if best == sub else (start[j] if best == dele else cstart[j - 1])
        previous, start = current, cstart
    j = min(range(n + 1), key=lambda k: (previous[k], k))
    return max(0.0, 1.0 - previous[j] / len(a)), t[start[j]:j]


def reading_score(prediction: str, answers: str | Sequence[str]) -> float:
    """The corpus labels' score: the best :func:`find_answer` score over the reference answers."""
    if isinstance(answers, str):
        answers = [answers]
    return max(find_answer(a, prediction)[0] for a in answers)
