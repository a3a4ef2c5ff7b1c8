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
    """``fn(path, blank)`` -> (units, durations), two long tensors: a greedy CTC path read as the speech normaliser does."""
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
        for what, x in zip(("units", "durations"), got):
            if not isinstance(x, torch.Tensor):
                _fail(f"for {name} {path} your {what} came back as a {type(x).__name__}; return two torch tensors "
                      "(e.g. torch.tensor(values, dtype=torch.long)): the next cell compares them with the "
                      "tokenizer's tensors")
            if x.dtype != torch.long:
                empty = " (torch.tensor([]) is float: use torch.zeros(0, dtype=torch.long))" if x.numel() == 0 else ""
                _fail(f"for {name} {path} your {what} came back as {x.dtype}; return long tensors (torch.long): unit "
                      f"ids and frame counts are whole numbers, e.g. .long(){empty}")
        units, durations = (x.tolist() for x in got)
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


_RAGGED = ("same shape", "equal size", "inhomogeneous", "expected sequence of length")


def _as_array(fn: Callable[[], Any], call: str, ragged_hint: str) -> np.ndarray:
    """What ``fn()`` returns as a float array; rows of different lengths (stacked or not) fail with ``ragged_hint``."""
    try:
        value = fn()
        if isinstance(value, list | tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            value = torch.stack(list(value))
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=float)
    except (ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        if any(k in first for k in _RAGGED):
            _fail(f"{call} raised '{first}': {ragged_hint}")
        raise


def check_bag_of_units(fn: Callable[[list[torch.Tensor], int], Any]) -> None:
    """``fn(seqs, n_units)`` -> ``(N, n_units)``: the share of each unit in each sequence."""
    seqs = [torch.tensor([0, 1, 1, 3]), torch.tensor([2]), torch.tensor([3, 3, 0, 0, 0, 1])]
    want = np.stack([np.bincount(s.numpy(), minlength=5) / len(s) for s in seqs])
    call = "bag_of_units([[0, 1, 1, 3], [2], [3, 3, 0, 0, 0, 1]], n_units=5)"
    returned = []

    def run():  # inside _as_array, which explains a learner's own failed stack; the raw value kept to check its type
        returned.append(fn([s.clone() for s in seqs], 5))
        return returned[0]

    got = _as_array(run, call,
                    "the rows came out of different lengths. np.bincount(s) stops at the largest unit in s (here 3, "
                    "then 2), so pass minlength=n_units: np.bincount(s, minlength=n_units) has a column for every "
                    "unit 0..n_units-1, also those that never occur")
    if not hasattr(returned[0], "shape"):  # the probe indexes it by rows: X[train_idx]
        _fail(f"{call} returned a {type(returned[0]).__name__}; return one (N, n_units) array, the rows stacked "
              "(np.stack(rows)), which the probe can index by rows")
    if got.shape != want.shape:
        hint = ""
        if got.ndim == 2 and got.shape[0] == 3 and got.shape[1] < 5:
            hint = (": a column for every unit 0..n_units-1, also those that never occur "
                    "(np.bincount(s, minlength=n_units))")
        elif got.shape == want.shape[::-1]:
            hint = " - it looks transposed (use .T)"
        _fail(f"{call} returned shape {got.shape}; expected (3, 5): one row per sequence, one column per unit{hint}")
    if np.allclose(got, want, atol=1e-6):
        _ok("bag_of_units is correct: each row holds the share of each unit in one sequence")
        return
    said = f"for [0, 1, 1, 3] with 5 units row 0 came back {got[0].round(3).tolist()}, expected {want[0].tolist()}"
    counts = np.stack([np.bincount(s.numpy(), minlength=5) for s in seqs])
    if np.allclose(got, counts):
        _fail(f"{said}: divide the counts by the sequence's length, so that long and short utterances compare")
    _fail(f"{said}: count how often each unit 0..n_units-1 occurs in the sequence (order ignored), divided by its length")


# Three speakers; bob has an outlier among his three rows, so his mean (10, 4) is not his median (6, 4).
# The rows are not sorted by label (cy comes first, ann last): means built in one order and named in another show.
_TRAIN_X = np.array([[0.0, 20.0], [6.0, 3.0], [0.0, 0.0], [6.0, 5.0], [2.0, 20.0], [0.0, 8.0], [18.0, 4.0]])
_TRAIN_Y = ["cy", "bob", "ann", "bob", "cy", "ann", "bob"]
# Every mistake in _CENTROID_MISTAKES gives its own list of labels for these rows, with no ties in any of them:
# (8, 13) tells the right probe from the L-infinity distance, the cosine, class sums and the mean distance to the
# rows; (4, 0) from a median, the nearest row and the cosine; (17, 18) from the L1 distance, a median and the mean
# distance to the rows; (-1, 0) keeps the nearest row's labels from being all one speaker; (7, 13) and (11, 15)
# make a chance match of some other mistake with one of these less likely.
_TEST_X = np.array([[8.0, 13.0], [4.0, 0.0], [17.0, 18.0], [-1.0, 0.0], [7.0, 13.0], [11.0, 15.0]])


def _centroid_labels(train_X: np.ndarray, train_y: list, test_X: np.ndarray, average=np.mean,
                     distance: str = "squared", pick=np.argmin) -> list:
    labels = sorted(set(train_y))
    y = np.array(train_y)
    centres = np.stack([average(train_X[y == label], 0) for label in labels])  # (L, D)
    diff = test_X[:, None, :] - centres[None]  # (N, L, D)
    if distance == "squared":
        d = (diff ** 2).sum(-1)
    elif distance == "L1":
        d = np.abs(diff).sum(-1)
    elif distance == "Linf":
        d = np.abs(diff).max(-1)
    else:  # cosine: the smaller, the more similar
        d = -(test_X @ centres.T) / (np.linalg.norm(test_X, axis=1)[:, None] * np.linalg.norm(centres, axis=1)[None])
    return [labels[i] for i in pick(d, 1)]


def _misnamed_labels(train_X: np.ndarray, train_y: list, test_X: np.ndarray) -> list:
    """The nearest mean, the means built in the order the labels first appear and named in sorted order."""
    first = list(dict.fromkeys(train_y))
    y = np.array(train_y)
    centres = np.stack([train_X[y == label].mean(0) for label in first])
    return [sorted(first)[i] for i in ((test_X[:, None] - centres[None]) ** 2).sum(-1).argmin(1)]


def _mean_distance_labels(train_X: np.ndarray, train_y: list, test_X: np.ndarray, squared: bool) -> list:
    labels = sorted(set(train_y))
    y = np.array(train_y)
    d = [((train_X[y == label][None] - test_X[:, None]) ** 2).sum(-1) for label in labels]  # (N, rows of label)
    d = np.stack([(x if squared else np.sqrt(x)).mean(1) for x in d], 1)  # (N, L)
    return [labels[i] for i in d.argmin(1)]


_CENTROID_MISTAKES = (  # (what went wrong, ways of writing it)
    ("that is the label of the nearest training *row*: average each label's rows into a mean first, then compare "
     "the test row with the means",
     (lambda X, y, T: [y[int(((X - x) ** 2).sum(1).argmin())] for x in T],)),
    ("that is the nearest *median*: bob's three rows include an outlier (18, 4), so his median (6, 4) is not his "
     "mean (10, 4); average the rows (.mean(0))",
     (lambda X, y, T: _centroid_labels(X, y, T, average=np.median),)),
    ("you summed each label's rows: divide by how many rows it has (bob has 3, the others 2), i.e. take the mean",
     (lambda X, y, T: _centroid_labels(X, y, T, average=np.sum),)),
    ("you averaged the distances from the test row to each of a label's rows: average the rows into one mean "
     "first, then take the distance to that mean",
     (lambda X, y, T: _mean_distance_labels(X, y, T, squared=True),
      lambda X, y, T: _mean_distance_labels(X, y, T, squared=False))),
    ("that is the nearest mean by the sum of absolute differences (L1, city block); use the squared Euclidean "
     "distance, the sum of *squared* differences",
     (lambda X, y, T: _centroid_labels(X, y, T, distance="L1"),)),
    ("that is the nearest mean by the largest difference in one coordinate (L-infinity); use the squared Euclidean "
     "distance, summed over every coordinate",
     (lambda X, y, T: _centroid_labels(X, y, T, distance="Linf"),)),
    ("that is the most similar mean by cosine, which sees only the direction of a row; use the squared Euclidean "
     "distance, which sees its length too",
     (lambda X, y, T: _centroid_labels(X, y, T, distance="cosine"),)),
    ("your means and your labels are in two different orders (e.g. the means in the order the labels first "
     "appear, the names from np.unique, which sorts): build each mean and its label together, "
     "for label in labels: mean of train_X[train_y == label]",
     (_misnamed_labels,)),
    ("that is the *farthest* mean: take the smallest distance (argmin)",
     (lambda X, y, T: _centroid_labels(X, y, T, pick=np.argmax),)),
)


def check_centroid_probe(fn: Callable[[np.ndarray, list, np.ndarray], list]) -> None:
    """``fn(train_X, train_y, test_X)`` -> the label of the nearest class mean (squared Euclidean) for each test row."""
    want = _centroid_labels(_TRAIN_X, _TRAIN_Y, _TEST_X)
    got = fn(_TRAIN_X.copy(), list(_TRAIN_Y), _TEST_X.copy())
    got = [g.item() if hasattr(g, "item") else g for g in list(got)]
    if len(got) != len(want):
        _fail(f"return one label per test row ({len(want)}), got {len(got)}")
    if got == want:
        _ok("centroid_probe is correct: each test row gets the label of the nearest class mean")
        return
    said = ("training rows ann (0, 0), (0, 8); bob (6, 3), (6, 5), (18, 4); cy (0, 20), (2, 20), so the means are "
            f"ann (0, 4), bob (10, 4), cy (1, 20): the test rows {_TEST_X.astype(int).tolist()} got {got}, "
            f"expected {want}")
    if all(isinstance(g, int | np.integer) for g in got):
        _fail(f"{said}: return the labels themselves (e.g. 'ann'), not their indices")
    fits = [hint for hint, ways in _CENTROID_MISTAKES
            if any(way(_TRAIN_X, list(_TRAIN_Y), _TEST_X) == got for way in ways)]
    if len(fits) == 1:  # one known mistake, and only one, gives exactly these labels
        _fail(f"{said}: {fits[0]}")
    _fail(f"{said}: average the rows of each label into a mean, then give each test row the label of the closest "
          "mean (smallest squared Euclidean distance, summed over the coordinates)")


def _pair_shares(seq: list[int], n: int, distinct: bool = False, per: str = "pairs") -> np.ndarray:
    """Reference pair bag (and the usual mistakes: each distinct pair once; divided by len(seq))."""
    pairs = list(zip(seq, seq[1:]))
    out = np.zeros(n * n)
    for a, b in sorted(set(pairs)) if distinct else pairs:
        out[a * n + b] += 1
    total = {"pairs": len(pairs), "distinct": len(set(pairs)), "length": len(seq)}[per]
    return out / total if total else out


def check_bigram_bag(fn: Callable[[torch.Tensor, int], Any]) -> None:
    """``fn(seq, n_units)`` -> ``(n_units * n_units,)``: the share of each pair of neighbouring units (a, b) at a * n + b."""
    cases = [([0, 1, 1, 2], 3), ([2, 2, 2], 3), ([1], 3), ([0, 1, 0, 1], 3), ([3, 0, 1, 3, 0], 4), ([4, 2, 4, 2, 0], 5)]
    for seq, n in cases:
        want = _pair_shares(seq, n)
        call = f"bigram_bag({seq}, n_units={n})"
        try:
            got = _as_array(lambda seq=seq, n=n: fn(torch.tensor(seq), n), call,
                            "return one flat vector of n_units * n_units pair shares")
        except IndexError as err:
            _fail(f"{call} raised '{str(err).splitlines()[0]}': an index went past the end; the vector has "
                  f"n_units * n_units = {n * n} entries (use the n_units passed in, not a fixed number), and the "
                  "last pair is (seq[-2], seq[-1])")
        if got.shape == (n, n):
            _fail(f"{call} returned a ({n}, {n}) matrix; return a flat vector of n_units * n_units = {n * n} "
                  "shares, the pair (a, b) at index a * n_units + b (e.g. matrix.reshape(-1))")
        if got.shape != (n * n,):
            _fail(f"{call} returned shape {got.shape}; return a flat vector of n_units * n_units = {n * n} shares, "
                  "the pair (a, b) at index a * n_units + b")
        if np.allclose(got, want, atol=1e-6):
            continue
        said = f"{call} returned {got.round(3).tolist()}, expected {want.round(3).tolist()}"
        if np.isnan(got).any():
            _fail(f"{said}: a sequence of one unit has no pairs: return zeros, do not divide by 0")
        if np.allclose(got, want.reshape(n, n).T.reshape(-1), atol=1e-6):
            _fail(f"{said}: the pair (a, b), a then b, goes to index a * n_units + b (you have b * n_units + a)")
        if any(np.allclose(got, _pair_shares(seq, n, distinct=True, per=per), atol=1e-6)
               for per in ("pairs", "distinct")):
            a, b = max(set(zip(seq, seq[1:])), key=list(zip(seq, seq[1:])).count)
            _fail(f"{said}: count a pair every time it occurs, not once: here ({a}, {b}) occurs "
                  f"{list(zip(seq, seq[1:])).count((a, b))} times in {len(seq) - 1} pairs")
        if np.allclose(got, _pair_shares(seq, n, per="length"), atol=1e-6):
            _fail(f"{said}: divide by the number of pairs, len(seq) - 1 = {len(seq) - 1}, not by the length")
        merged = [x for i, x in enumerate(seq) if i == 0 or x != seq[i - 1]]
        if np.allclose(got, _pair_shares(merged, n), atol=1e-6):
            a = next(x for x, y in zip(seq, seq[1:]) if x == y)
            _fail(f"{said}: keep repeated units: a unit followed by itself, here ({a}, {a}), is a pair too")
        _fail(f"{said}: count each pair of neighbours (seq[i], seq[i + 1]) at index a * n_units + b, divided by the "
              "number of pairs, len(seq) - 1")
    _ok("bigram_bag is correct: the share of each ordered pair of neighbouring units, repeats counted")


QUIZ = (
    Question(
        "A linear probe on bags of SSL units names which of 4 held-out speakers said an utterance most of the "
        "time. Why does that hurt a unit LM's zero-shot scores?",
        choices=(
            "a) with 100 units for both the sounds and the voices, too few units are left over for the words, so "
            "different words share units",
            "b) k-means cut the sounds too finely, so most units are rare and the LM sees too few examples of "
            "each one to learn what follows it",
            "c) one word comes out as another unit string in each kind of voice, so the LM learns it several "
            "times, and a new voice's strings look unfamiliar",
            "d) a voice adds units that carry no sound of their own, so every utterance gets longer and the LM's "
            "window of 128 units holds fewer of its own words",
        ),
        answer="c",
        hint="notebook 05, section 2: the unit error rate between two voices saying the same word",
    ),
    Question(
        "The speech normaliser is trained with CTC. Why CTC rather than a per-frame cross-entropy against the "
        "reference voice's units?",
        choices=(
            "a) the input and the reference recording of the same words are timed differently, so their frames "
            "do not pair up; CTC needs only the order of the targets",
            "b) CTC sums over every alignment, so the model cannot learn how long each sound lasts in a voice, "
            "and dropping the durations is what removes the speaker",
            "c) only CTC has a blank, and without a blank the normaliser could not skip the frames of the input "
            "that carry the voice rather than the sounds",
            "d) a per-frame loss sees each frame on its own, while the normaliser needs the context of the "
            "whole utterance, which only a sequence loss gives",
        ),
        answer="a",
        hint="notebook 05, section 2: the list of pairs, targets, model and units",
    ),
    Question(
        "TWIST copies a character LM's body into a unit LM. Which parts of the unit LM stay newly initialised?",
        choices=(
            "a) the blocks and the final norm: attention over units must be learnt from speech, while both "
            "kinds of embeddings carry over",
            "b) the position embeddings: a unit lasts about 20 ms and a character is one letter, so a position "
            "means something else",
            "c) nothing: both vocabularies hold about a hundred ids, so every weight is copied, the token "
            "embeddings included",
            "d) the token embeddings and the output head: a unit id and a character id name different things, "
            "so no row carries over",
        ),
        answer="d",
        hint="notebook 05, section 3: the warm start written out",
    ),
    Question(
        "Shrink-and-perturb helped here. Which control tells whether the gain comes from what the text LM learned, "
        "rather than from starting at a smaller weight scale?",
        choices=(
            "a) a plain copy of the text LM's body, without the shrink, trained for the same number of steps on "
            "the same seeds",
            "b) a body with random weights, shrunk and perturbed exactly like the copied one, then trained in "
            "the same way",
            "c) the warm start trained for twice as many steps, to see whether its lead over the cold start "
            "keeps growing or fades",
            "d) more seeds of the cold start, so that the warm start's gain can be told apart from the spread "
            "between runs",
        ),
        answer="b",
        hint="notebook 05, section 3 ('Is it the text, or only the scale?')",
    ),
    Question(
        "The warm start's gain over a cold start is larger on one voice's units than on SSL units of many "
        "voices. Why?",
        choices=(
            "a) the SSL units of many voices use all 100 ids, while the copied body was tuned to a "
            "vocabulary of a few dozen characters",
            "b) the text LM was trained on the reference voice's transcripts, so it reads that voice's units "
            "more easily than the others",
            "c) with many voices much of what the LM must predict is who speaks and how fast, which a "
            "character LM knows nothing about",
            "d) the units of many voices come from another k-means than the reference voice's, one that the "
            "copied body never saw",
        ),
        answer="c",
        hint="notebook 05, section 3: the paragraph after the warm-vs-cold comparison",
    ),
)
