"""Checks for notebook 05's exercises (solutions/05_normaliser_twist_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_bag_of_units", "check_bigram_bag", "check_centroid_probe", "check_ctc_units"]


def _ctc_ref(path: list[int], blank: int) -> tuple[list[int], list[int]]:
    starts = [t for t in range(len(path)) if path[t] != blank and (t == 0 or path[t] != path[t - 1])]
    if not starts:
        return [], []
    bounds = [0, *starts[1:], len(path)]
    return [path[t] for t in starts], [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def check_ctc_units(fn: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``fn(path, blank)`` -> (units, durations) of a greedy CTC path, as the speech normaliser reads it."""
    B = 9
    cases = [
        ("blanks dropped", [B, 3, 3, B, B, 5, B]),
        ("repeats merged", [3, 3, 3, 5, 5]),
        ("a unit said twice, with a blank between", [4, 4, B, 4, 7]),
        ("a unit repeated without a blank", [4, 4, 4, 7, 7, 4]),
        ("only blanks", [B, B, B]),
    ]
    g = torch.Generator().manual_seed(0)
    cases.append(("a random path", torch.randint(0, 10, (40,), generator=g).tolist()))
    for name, path in cases:
        want_u, want_d = _ctc_ref(path, B)
        got = fn(torch.tensor(path), B)
        if not isinstance(got, tuple) or len(got) != 2:
            _fail(f"return a pair (units, durations), got {type(got).__name__}")
        units, durations = (torch.as_tensor(x).long().tolist() for x in got)
        if units == want_u and durations == want_d:
            continue
        said = f"for {name} {path} (blank = {B}) you returned units {units}, durations {durations}; expected " \
               f"{want_u}, {want_d}"
        if B in units:
            _fail(f"{said}: the blank is not a unit; drop it")
        if units != want_u:
            if len(units) < len(want_u):
                _fail(f"{said}: merge only *neighbouring* repeats; a unit after a blank is a new unit (CTC writes a "
                      "doubled symbol as a, blank, a)")
            _fail(f"{said}: a unit starts where the path changes to a non-blank symbol; consecutive copies are one unit")
        if sum(durations) != len(path) and want_u:
            _fail(f"{said}: the durations must add up to the {len(path)} frames: blanks count to the unit before "
                  "them, and any blanks before the first unit to the first unit")
        _fail(f"{said}: a unit lasts from its first frame to the next unit's first frame (the first from frame 0)")
    _ok("ctc_units is correct: repeats merged, blanks dropped, every frame counted to a unit")


def check_bag_of_units(fn: Callable[[list[torch.Tensor], int], Any]) -> None:
    """``fn(seqs, n_units)`` -> ``(N, n_units)``: the share of each unit in each sequence."""
    seqs = [torch.tensor([0, 1, 1, 3]), torch.tensor([2]), torch.tensor([3, 3, 0, 0, 0, 1])]
    want = np.stack([np.bincount(s.numpy(), minlength=5) / len(s) for s in seqs])
    got = np.asarray(torch.as_tensor(fn([s.clone() for s in seqs], 5)), dtype=float)
    if got.shape != want.shape:
        _fail(f"for 3 sequences and 5 units you returned shape {got.shape}; expected (3, 5): one row per sequence")
    if np.allclose(got, want, atol=1e-6):
        _ok("bag_of_units is correct: each row holds the share of each unit in one sequence")
        return
    said = f"for [0, 1, 1, 3] with 5 units row 0 came back {got[0].round(3).tolist()}, expected {want[0].tolist()}"
    counts = np.stack([np.bincount(s.numpy(), minlength=5) for s in seqs])
    if np.allclose(got, counts):
        _fail(f"{said}: divide the counts by the sequence's length, so that long and short utterances compare")
    _fail(f"{said}: count how often each unit 0..n_units-1 occurs in the sequence (order ignored), divided by its length")


def check_centroid_probe(fn: Callable[[np.ndarray, list, np.ndarray], list]) -> None:
    """``fn(train_X, train_y, test_X)`` -> the label of the nearest class mean (Euclidean) for each test row."""
    train_X = np.array([[0.0, 0.0], [0.0, 8.0], [5.0, 4.0], [7.0, 4.0], [0.0, 20.0], [2.0, 20.0]])
    train_y = ["ann", "ann", "bob", "bob", "cy", "cy"]
    test_X = np.array([[1.0, 3.0], [6.0, 5.0], [1.0, 19.0], [3.5, 0.5]])  # the last is nearest an ann row, bob's mean
    means = {y: train_X[[i for i, t in enumerate(train_y) if t == y]].mean(0) for y in ("ann", "bob", "cy")}
    want = [min(means, key=lambda y: float(((x - means[y]) ** 2).sum())) for x in test_X]
    got = fn(train_X.copy(), list(train_y), test_X.copy())
    got = [g.item() if hasattr(g, "item") else g for g in list(got)]
    if len(got) != len(want):
        _fail(f"return one label per test row ({len(want)}), got {len(got)}")
    if got == want:
        _ok("centroid_probe is correct: each test row gets the label of the nearest class mean")
        return
    said = f"for three speakers with means ann (0, 4), bob (6, 4), cy (1, 20) the test rows {test_X.tolist()} got " \
           f"{got}, expected {want}"
    if all(isinstance(g, int | np.integer) for g in got):
        _fail(f"{said}: return the labels themselves (e.g. 'ann'), not their indices")
    nearest_row = [train_y[int(((train_X - x) ** 2).sum(1).argmin())] for x in test_X]
    if got == nearest_row:
        _fail(f"{said}: that is the nearest training *row*; average each class's rows first and compare with the means")
    _fail(f"{said}: average the rows of each label into a mean, then give each test row the label of the closest "
          "mean (smallest squared Euclidean distance)")


def check_bigram_bag(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """``fn(seq, n_units)`` -> ``(n_units * n_units,)``: the share of each pair of neighbouring units (a, b) at a * n + b."""
    cases = [torch.tensor([0, 1, 1, 2]), torch.tensor([2, 2, 2]), torch.tensor([1])]
    for seq in cases:
        want = np.zeros(9)
        pairs = list(zip(seq.tolist(), seq.tolist()[1:]))
        for a, b in pairs:
            want[a * 3 + b] += 1 / len(pairs)
        got = np.asarray(torch.as_tensor(fn(seq.clone(), 3)), dtype=float).reshape(-1)
        if got.shape != (9,):
            _fail(f"for 3 units return a vector of 3 * 3 = 9 pair shares, got shape {got.shape}")
        if np.allclose(got, want, atol=1e-6):
            continue
        said = f"for {seq.tolist()} you returned {got.round(3).tolist()}, expected {want.round(3).tolist()}"
        if np.isnan(got).any():
            _fail(f"{said}: a sequence of one unit has no pairs: return zeros, do not divide by 0")
        swapped = want.reshape(3, 3).T.reshape(-1)
        if np.allclose(got, swapped, atol=1e-6):
            _fail(f"{said}: the pair (a, b), a then b, goes to index a * n_units + b (you have b * n_units + a)")
        _fail(f"{said}: count each pair of neighbours (seq[i], seq[i + 1]) at index a * n_units + b, divided by the "
              "number of pairs")
    _ok("bigram_bag is correct: the share of each ordered pair of neighbouring units")


QUIZ = (
    Question(
        "A linear probe on bags of HuBERT units names which of 4 held-out speakers said an utterance most of the "
        "time. Why does that hurt a unit LM's zero-shot scores?",
        choices=(
            "a) the LM cannot read bags of units, only sequences",
            "b) the same word said by different voices becomes different unit strings, so the LM must learn each "
            "word once per kind of voice, and a new voice spells words in rarely seen ways",
            "c) the probe overfits, so the units carry noise",
            "d) speaker information makes the units longer",
        ),
        answer="b",
        hint="notebook 05, section 2: the unit error rate between two voices saying the same word",
    ),
    Question(
        "The speech normaliser is trained with CTC. Why CTC rather than a per-frame cross-entropy against the "
        "reference voice's units?",
        choices=(
            "a) CTC is faster on a CPU",
            "b) CTC removes the speaker by itself: it sums over every alignment, so it cannot keep how long each "
            "sound lasts in one voice, and the voice goes with the durations",
            "c) cross-entropy cannot predict 100 classes",
            "d) the two recordings of the same words have different timings, so their frames do not line up; CTC "
            "needs only the target sequence, not an alignment",
        ),
        answer="d",
        hint="notebook 05, section 2: the list of pairs, targets, model and units",
    ),
    Question(
        "TWIST copies a character LM's body into a unit LM. Which parts of the unit LM stay newly initialised?",
        choices=(
            "a) the blocks and the final norm",
            "b) the position embeddings",
            "c) the token embeddings and the output head",
            "d) nothing: every weight is copied, the embeddings included, since units and characters are both ids",
        ),
        answer="c",
        hint="notebook 05, section 3: the warm start written out",
    ),
    Question(
        "Shrink-and-perturb helped here. Which control tells whether the gain comes from what the text LM learned, "
        "rather than from starting at a smaller weight scale?",
        choices=(
            "a) the same shrink and noise applied to an untrained body of the same shapes",
            "b) training the warm start for more steps",
            "c) a plain copy without shrinking",
            "d) more seeds of the cold start, so that the gain can be told apart from the spread between runs of "
            "one recipe",
        ),
        answer="a",
        hint="notebook 05, section 3 ('Is it the text, or only the scale?')",
    ),
    Question(
        "The warm start's gain over a cold start is larger on one voice's units than on HuBERT units of many "
        "voices. Why?",
        choices=(
            "a) one voice's units are fewer, so training is shorter",
            "b) the text LM knows the words and their order, not who speaks or how fast; on units of many voices a "
            "large part of the loss is about the voice, which text cannot help with",
            "c) the text LM was trained on the reference voice's transcripts, whose units it then reads more "
            "easily than those of the other voices",
            "d) shrink-and-perturb only works on small vocabularies",
        ),
        answer="b",
        hint="notebook 05, section 3: the paragraph after the warm-vs-cold comparison",
    ),
)
