"""ANLS on hand-checked cases, with and without the DocVQA 0.5 cut-off."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cares_integrations.training.anls import anls, levenshtein, mean_anls, nls, normalize_answer


def test_levenshtein_known_distances():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("same", "same") == 0


def test_exact_match_scores_one():
    assert anls("1,234 EUR", ["1,234 EUR"]) == 1.0


def test_case_and_whitespace_are_ignored():
    assert normalize_answer("  Hello \t  World\n") == "hello world"
    assert anls("  HELLO   world ", "hello world") == 1.0


def test_one_typo_in_ten_characters():
    # "revenue 42" vs "revenue 43": 1 edit over 10 characters.
    assert anls("revenue 42", "revenue 43") == pytest.approx(0.9)
    assert anls("revenue 42", "revenue 43", threshold=0.5) == pytest.approx(0.9)


def test_threshold_zeroes_distant_answers_only_when_asked():
    # "abcd" vs "abxy": 2 edits / 4 = NLD 0.5 -> similarity 0.5 without cut-off, 0 with it.
    assert anls("abcd", "abxy") == pytest.approx(0.5)
    assert anls("abcd", "abxy", threshold=0.5) == 0.0
    # "abcd" vs "abcx": NLD 0.25 < 0.5 survives the cut-off.
    assert anls("abcd", "abcx", threshold=0.5) == pytest.approx(0.75)


def test_empty_strings():
    assert anls("", "") == 1.0
    assert anls("", "abc") == 0.0
    assert anls("abc", "") == 0.0
    assert anls("   ", "") == 1.0  # whitespace-only normalises to empty


def test_max_over_multiple_references():
    assert anls("paris", ["London", "Paris", "Rome"]) == 1.0
    # best of "pari" (1 edit / 5 -> 0.8) and "lyon" (0.0...)
    assert anls("pari", ["paris", "lyon"]) == pytest.approx(0.8)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least one reference"):
        anls("x", [])
    with pytest.raises(TypeError, match="strings"):
        anls("x", [None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="threshold"):
        anls("x", "x", threshold=1.5)


def test_mean_anls():
    assert mean_anls(["a", "b"], [["a"], ["c"]]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_anls(["a"], [])


@given(st.text(max_size=20), st.text(max_size=20))
def test_similarity_is_symmetric_and_bounded(a, b):
    s = nls(a, b)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(nls(b, a))
    assert (s == 1.0) == (normalize_answer(a) == normalize_answer(b))
