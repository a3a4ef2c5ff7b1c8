"""Checks for notebook 01's exercises (solutions/01_cascade_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._common import _as_float, _fail, _ok

__all__ = ["check_ctc_greedy_decode", "check_question_classifier", "check_sample_with_temperature", "check_wer", "question_cases"]

# ---------------------------------------------------------------------------------------------
# Notebook 01 (solutions/01_cascade_exercises.ipynb): CTC decoding, WER, question intonation, sampling
# ---------------------------------------------------------------------------------------------


def _ctc_cases() -> list[tuple[str, torch.Tensor]]:
    """(description, (T, V) log-probs) cases for greedy CTC decoding, 6 symbols with blank = 0."""

    def path(ids: list[int], V: int = 6) -> torch.Tensor:
        lp = torch.full((len(ids), V), -4.0)
        lp[torch.arange(len(ids)), torch.tensor(ids)] = 0.0
        return lp.log_softmax(dim=-1)

    g = torch.Generator().manual_seed(1)
    return [
        ("frames 'a a _ a b b'", path([1, 1, 0, 1, 2, 2])),
        ("frames '_ c c _ _ d'", path([0, 3, 3, 0, 0, 4])),
        ("frames 'b _ b _ b'", path([2, 0, 2, 0, 2])),
        ("frames 'e e e e'", path([5, 5, 5, 5])),
        ("all-blank frames", path([0, 0, 0])),
        ("random log-probs (40 frames)", torch.randn(40, 6, generator=g).log_softmax(dim=-1)),
    ]


def check_ctc_greedy_decode(fn: Callable[[torch.Tensor], list[int]]) -> None:
    """``fn(log_probs)``: greedy CTC decoding of one ``(T, V)`` log-prob matrix (blank = 0) -> list of ids."""
    from slm_course.asr import greedy_decode

    for name, lp in _ctc_cases():
        got = fn(lp.clone())
        if isinstance(got, torch.Tensor):
            got = got.tolist()
        if not isinstance(got, (list, tuple)) or not all(isinstance(i, int) for i in got):
            _fail(f"for {name} you returned {got!r}; return a list of ints (symbol ids), e.g. [1, 1, 2]")
        got = list(got)
        expected = greedy_decode(lp)[0]
        if got == expected:
            continue
        best = lp.argmax(dim=-1).tolist()
        said = f"for {name} (argmax per frame {best}) you returned {got}, expected {expected}"
        merged = [s for t, s in enumerate(best) if t == 0 or s != best[t - 1]]
        no_blank_first = [s for s in best if s != 0]
        no_blank_first = [s for t, s in enumerate(no_blank_first) if t == 0 or s != no_blank_first[t - 1]]
        if 0 in got:
            _fail(f"{said}: the blank (id 0) means 'no character here'; drop blanks from the output")
        if got == [s for s in best if s != 0]:
            _fail(f"{said}: merge repeated symbols first (a a -> a), then drop the blanks")
        if got == no_blank_first:
            _fail(
                f"{said}: merge repeats *before* dropping blanks, so that 'a _ a' stays 'a a' (a blank separates them)"
            )
        if got == merged:
            _fail(f"{said}: after merging repeats, drop the blanks (id 0)")
        _fail(f"{said}: take the argmax symbol per frame (dim=-1), merge repeats, then drop blanks")
    _ok("greedy CTC decoding is correct: e.g. frames 'a a _ a b b' -> 'a a b', and 'b _ b _ b' -> 'b b b'")


def check_wer(fn: Callable[[str, str], float]) -> None:
    """``fn(ref, hyp)``: word error rate of one hypothesis, word edit distance / reference words."""
    from slm_course.metrics import edit_distance

    cases = [
        ("the cook cuts the cake", "the cook cuts the cake"),
        ("the cook cuts the cake", "the cook cut the cake"),
        ("the cook cuts the cake", "the cook cuts cake"),
        ("the cook cuts the cake", "the big cook cuts the cake"),
        ("the cook cuts the cake", ""),
        ("a b", "c d e f"),
        ("where is the plate", "is the plate where"),
        ("the dog", "dog the"),
    ]
    for ref, hyp in cases:
        r, h = ref.split(), hyp.split()
        expected = edit_distance(r, h) / len(r)
        got = _as_float(fn(ref, hyp), f"wer({ref!r}, {hyp!r})")
        if abs(got - expected) <= 1e-9:
            continue
        said = f"wer({ref!r}, {hyp!r}) returned {got:g}, expected {expected:g}"
        edits = edit_distance(r, h)
        if abs(got - edits) <= 1e-9 and edits:
            _fail(f"{said}: divide the number of edits ({edits}) by the number of reference words ({len(r)})")
        if h and abs(got - edits / len(h)) <= 1e-9:
            _fail(f"{said}: divide by the number of *reference* words ({len(r)}), not hypothesis words ({len(h)})")
        if abs(got - edit_distance(list(ref), list(hyp)) / max(len(ref), 1)) <= 1e-9:
            _fail(f"{said}: that is the character error rate; split both texts into words first (str.split)")
        if not hyp:
            _fail(
                f"{said}: an empty hypothesis deletes every reference word, so the WER is 1 (first row/column of "
                "the table: d[i][0] = i)"
            )
        if got > expected:
            _fail(
                f"{said}: too many edits; take the cheapest of deletion, insertion and substitution in each "
                "cell, and a matching word costs nothing (d[i-1][j-1] + 0)"
            )
        _fail(
            f"{said}: fill the table d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + (r[i-1] != h[j-1])) "
            "with d[i][0] = i and d[0][j] = j; the answer is d[len(r)][len(h)] / len(r)"
        )
    _ok(
        "wer is correct, e.g. one substitution in five words gives 0.2, an empty hypothesis 1.0, 'a b' -> 'c d e f' 2.0"
    )


def question_cases(corpus: Any) -> list[Any]:
    """Held-out speakers' statements and the same kind of statements said as questions (test split)."""
    return [u for u in corpus.split("test") if u.kind in ("statement", "declarative_question")]


def check_question_classifier(fn: Callable[[torch.Tensor], bool], corpus: Any, min_accuracy: float = 0.8) -> float:
    """``fn(wav)`` -> True for a question: accuracy on held-out statements vs declarative questions (pass >= 0.8)."""
    utts = question_cases(corpus)
    if not utts:
        _fail("the corpus has no statements or declarative questions in its test split; load the course corpus")
    answers = []
    for u in utts:
        got = fn(corpus.wav(u))
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (bool, int)) or got not in (0, 1):
            _fail(f"is_question(wav) returned {got!r} ({type(got).__name__}) for {u.text!r}; return True or False")
        answers.append(bool(got))
    truth = [u.question for u in utts]
    accuracy = sum(a == t for a, t in zip(answers, truth)) / len(utts)
    said = f"accuracy {accuracy:.2f} on {len(utts)} held-out utterances (pass: {min_accuracy:.2f}, chance about 0.5)"
    if len(set(answers)) == 1:
        _fail(
            f"{said}: is_question answered {answers[0]} for every utterance; compare the final rise with a "
            "threshold that lies between the statements' and the questions' values"
        )
    if accuracy <= 1 - min_accuracy:
        _fail(f"{said}: the answers look inverted; a question *rises* at the end (the final pitch is higher)")
    if accuracy < min_accuracy:
        _fail(
            f"{said}: measure the rise in semitones (12 * log2 of F0), ignore unvoiced (NaN) frames, and "
            "compare the last fifth of the voiced frames with the rest (medians resist octave errors)"
        )
    _ok(f"is_question works: {said}")
    return accuracy


def check_sample_with_temperature(fn: Callable[..., int]) -> None:
    """``fn(logits, temperature, generator)`` -> one token id: argmax at 0, else a draw from softmax(logits / T)."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    for temperature in (0.0,):
        for _ in range(3):
            got = fn(logits.clone(), temperature, torch.Generator().manual_seed(0))
            if int(got) != int(logits.argmax()):
                _fail(
                    f"at temperature 0 you returned {int(got)}; temperature 0 is greedy: the argmax "
                    f"({int(logits.argmax())}), without sampling (dividing by 0 is not allowed)"
                )
    n = 4000
    for temperature in (1.0, 0.5, 2.0):
        g = torch.Generator().manual_seed(123)
        draws = [fn(logits.clone(), temperature, g) for _ in range(n)]
        if not all(isinstance(d, int) or (isinstance(d, torch.Tensor) and d.numel() == 1) for d in draws):
            _fail(f"return one int (a token id), got {type(draws[0]).__name__}; use int(...)")
        counts = torch.bincount(torch.tensor([int(d) for d in draws]), minlength=len(logits)).double()
        freq = counts / n
        expected = (logits / temperature).softmax(-1).double()
        if len(set(int(d) for d in draws)) == 1:
            _fail(
                f"at temperature {temperature} every draw was {int(draws[0])}; sample from the distribution "
                "(torch.multinomial) instead of taking the argmax"
            )
        err = float((freq - expected).abs().max())
        if err <= 0.035:
            continue
        said = (
            f"at temperature {temperature} your token frequencies are {[round(float(f), 2) for f in freq]}, "
            f"expected about {[round(float(p), 2) for p in expected]}"
        )
        if float(((logits * temperature).softmax(-1) - freq).abs().max()) <= 0.035:
            _fail(f"{said}: divide the logits by the temperature, do not multiply")
        if float((logits.softmax(-1) - freq).abs().max()) <= 0.035:
            _fail(f"{said}: the temperature had no effect; sample from softmax(logits / temperature)")
        _fail(
            f"{said}: sample one id from softmax(logits / temperature) with torch.multinomial(probs, 1, generator=...)"
        )
    _ok("temperature sampling is correct: greedy at 0, softmax(logits / T) otherwise (flatter above 1, sharper below)")
