"""How wrong is a transcript? Text normalisation, word and character error rates (notebook 01).

The error rate counts the fewest substitutions, deletions and insertions (the Levenshtein edit
distance) that turn the hypothesis into the reference, divided by the reference length. Over a
corpus it is *total* edits over *total* reference length (not the mean of per-utterance rates), so
long utterances weigh more. Both texts are normalised first (lowercase, no punctuation), so that
"Hello, world!" and "hello world" count as the same transcript.

>>> wer("the cat sat", "the cat sat down")  # one insertion over three words
0.3333333333333333
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from torchaudio.functional import edit_distance

__all__ = ["cer", "edit_distance", "normalize_text", "wer"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")  # an apostrophe not inside a word


def normalize_text(text: str) -> str:
    """Lowercase, replace punctuation by spaces (keeping apostrophes inside words), collapse whitespace.

    >>> normalize_text("  Don't STOP -- it's 'fine', OK?")
    "don't stop it's fine ok"
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = "".join(
        " " if unicodedata.category(ch)[0] in "PS" and ch != "'" else ch for ch in text
    )  # punctuation and symbols -> space
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def _pairs(refs: str | Sequence[str], hyps: str | Sequence[str]) -> list[tuple[str, str]]:
    """Check the arguments of :func:`wer`/:func:`cer` and pair references with hypotheses."""
    if isinstance(refs, str) != isinstance(hyps, str):
        raise TypeError(
            "refs and hyps must both be a str or both be a list of str; "
            f"got {type(refs).__name__} and {type(hyps).__name__}"
        )
    if isinstance(refs, str):
        return [(refs, hyps)]  # type: ignore[list-item]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(
            f"got {len(refs)} references but {len(hyps)} hypotheses; pass one hypothesis per reference, in order"
        )
    for i, (r, h) in enumerate(zip(refs, hyps)):
        if not isinstance(r, str) or not isinstance(h, str):
            raise TypeError(
                f"item {i}: references and hypotheses must be str, got {type(r).__name__}, {type(h).__name__}"
            )
    return list(zip(refs, hyps))


def _error_rate(pairs: list[tuple[str, str]], split, normalize: bool, unit: str) -> float:
    edits = 0
    total = 0
    for ref, hyp in pairs:
        if normalize:
            ref, hyp = normalize_text(ref), normalize_text(hyp)
        r, h = split(ref), split(hyp)
        edits += edit_distance(r, h)
        total += len(r)
    if total == 0:
        raise ValueError(
            f"the references hold no {unit}s (after normalisation), so the error rate is undefined; "
            "drop empty references before scoring"
        )
    return edits / total


def wer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normalize: bool = True) -> float:
    """Word error rate: total word edit distance / total reference words (texts normalised first).

    >>> wer(["a b c", "d"], ["a x c", "d e"])  # 1 substitution + 1 insertion over 4 words
    0.5
    """
    return _error_rate(_pairs(refs, hyps), str.split, normalize, "word")


def cer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normalize: bool = True) -> float:
    """Character error rate: total character edit distance / total reference characters (spaces count).

    >>> cer("abcd", "abd")
    0.25
    """
    return _error_rate(_pairs(refs, hyps), list, normalize, "character")
