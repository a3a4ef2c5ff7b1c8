"""Tests for slm_course.metrics: normalisation and corpus-level WER / CER with hand-computed values."""

from __future__ import annotations

import pytest

from slm_course.metrics import cer, edit_distance, normalize_text, wer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  Don't   STOP  ", "don't stop"),
        ("'quoted' words", "quoted words"),
        ("rock\u2019n\u2019roll", "rock'n'roll"),
        ("well-known; 3.5 & 100%", "well known 3 5 100"),
        ("", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance(["a", "b"], ["b"]) == 1


def test_wer_single_pair() -> None:
    assert wer("the cat sat on the mat", "the cat sat on the mat") == 0.0
    # one substitution (cat -> hat) and one deletion (the) over 6 words
    assert wer("the cat sat on the mat", "the hat sat on mat") == pytest.approx(2 / 6)
    assert wer("a b", "a b c d") == pytest.approx(1.0)  # insertions can push WER above what you expect
    assert wer("a", "x y z") == pytest.approx(3.0)


def test_wer_normalises_unless_told_not_to() -> None:
    assert wer("Hello, world!", "hello world") == 0.0
    assert wer("Hello, world!", "hello world", normalize=False) == pytest.approx(1.0)


def test_wer_is_corpus_level() -> None:
    refs = ["a b c d e f g h", "x"]  # 8 + 1 words
    hyps = ["a b c d e f g h", "y"]  # 0 + 1 edits
    assert wer(refs, hyps) == pytest.approx(1 / 9)  # not the mean of per-utterance rates (0.5)


def test_cer() -> None:
    assert cer("abcd", "abd") == pytest.approx(0.25)
    assert cer("kitten", "sitting") == pytest.approx(3 / 6)
    assert cer(["ab", "cd ef"], ["ab", "cdef"]) == pytest.approx(1 / 7)  # the space counts as a character
    assert cer("Ab.", "ab") == 0.0


def test_error_cases() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="both be a str or both be a list"):
        wer("a", ["a"])
    with pytest.raises(ValueError, match="no words.*drop empty references"):
        wer(["", "  ,"], ["a", "b"])
    with pytest.raises(ValueError, match="no characters"):
        cer("", "abc")
    with pytest.raises(TypeError, match="must be str"):
        wer(["a", 3], ["a", "b"])  # type: ignore[list-item]
