"""Checks for notebook 02's exercises (solutions/02_units_exercises.ipynb): HuBERT's mask and augmentation, ABX.

- :func:`check_hide_spans` - HuBERT's span mask: every start frame hides itself and the next frames
- :func:`check_warp_bands` - the vocal-tract stretch: band ``i`` reads band ``i * factor``, interpolated
- :func:`check_abx_error` - the ABX error of one minimal pair, by DTW of the tokens' frames

``QUIZ`` holds the chapter's quiz (:func:`slm_course.checks.show_quiz`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._common import _as_float, _fail, _ok
from .quiz import Question

__all__ = ["check_abx_error", "check_hide_spans", "check_warp_bands"]


# ---------------------------------------------------------------------------------------------
# Exercise 1: HuBERT's span mask
# ---------------------------------------------------------------------------------------------


def _reference_hide_spans(starts: torch.Tensor, span: int, offset: int = 0) -> torch.Tensor:
    """Each start ``t`` hides frames ``t + offset .. t + offset + span - 1``, cut at both ends."""
    B, T = starts.shape
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, t in starts.nonzero().tolist():
        mask[b, max(t + offset, 0) : max(t + offset + span, 0)] = True
    return mask


def _as_mask(value: Any, shape: tuple[int, int]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        _fail(f"hide_spans returned {type(value).__name__}; return a (B, T) torch.Tensor of booleans")
    if tuple(value.shape) != shape:
        _fail(f"hide_spans returned shape {tuple(value.shape)}; expected {shape}, the shape of `starts` "
              "(spans that run past the end are cut there, not extended)")
    if value.dtype != torch.bool:
        if not ((value == 0) | (value == 1)).all():
            _fail(f"hide_spans returned values other than 0 and 1 ({value.dtype}); return a boolean mask "
                  "(did you add the shifted starts instead of or-ing them?)")
        value = value.bool()
    return value


def check_hide_spans(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(starts (B, T) bool, span) -> (B, T) bool``: each start hides frames ``t .. t + span - 1`` (cut at T)."""
    g = torch.Generator().manual_seed(0)
    hand = torch.tensor([[0, 0, 1, 0, 0, 0, 0, 1, 0]], dtype=torch.bool)
    cases = [
        ("starts at frames 2 and 7 of 9, span 3", hand, 3),
        ("the same starts, span 1", hand, 1),
        ("two overlapping starts (frames 1 and 2), span 4", torch.tensor([[0, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool), 4),
        ("4 rows of 50 random starts, span 5", torch.rand(4, 50, generator=g) < 0.08, 5),
    ]
    for name, starts, span in cases:
        want = _reference_hide_spans(starts, span)
        try:
            raw = fn(starts.clone(), span)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            _fail(f"for {name} your function raised '{first}': a slice like starts[:, :-k] is empty when k = 0 "
                  "(-0 is 0); slice with the length instead, mask[:, k:] |= starts[:, :T - k]")
        got = _as_mask(raw, tuple(starts.shape))
        if torch.equal(got, want):
            continue
        b = next(i for i in range(len(got)) if not torch.equal(got[i], want[i]))  # the first row that differs
        row = f" in row {b} of {len(got)}" if len(got) > 1 else ""
        shown = (f"{row} you hid frames {got[b].nonzero().flatten().tolist()}, "
                 f"expected {want[b].nonzero().flatten().tolist()}")
        if torch.equal(got, _reference_hide_spans(starts, span - 1)) or torch.equal(got, _reference_hide_spans(starts, span + 1)):
            _fail(f"for {name}{shown}: each span is exactly `span` frames long, from the start frame on (off by one; "
                  "or did you shift the mask you are building, h = starts without .clone(), instead of the starts?)")
        if span > 1 and torch.equal(got, _reference_hide_spans(starts, span - 1, offset=1)):
            _fail(f"for {name}{shown}: the start frame is hidden too: a start at t hides t, t + 1, .., t + span - 1 "
                  "(shift by k = 0, 1, .., span - 1, starting at 0)")
        wrapped = want.clone()
        for r, t in starts.nonzero().tolist():
            for k in range(span):
                wrapped[r, (t + k) % starts.shape[1]] = True
        if torch.equal(got, wrapped):
            _fail(f"for {name}{shown}: a span that runs past the last frame is cut there; it must not wrap around to "
                  "the first frames (torch.roll wraps: shift with slicing instead)")
        if span > 2 and torch.equal(got, _reference_hide_spans(starts, span, offset=-(span - 1))):
            _fail(f"for {name}{shown}: spans run forward from the start frame: a start at t hides t, t + 1, .., "
                  "t + span - 1, not the frames before it (shift the starts towards later frames: "
                  "mask[:, k:] |= starts[:, :T - k])")
        if span > 1 and torch.equal(got, _reference_hide_spans(starts, span, offset=-(span // 2))):
            _fail(f"for {name}{shown}: the span starts *at* the start frame and runs forward, it is not centred on it")
        if torch.equal(got, starts):
            _fail(f"for {name}{shown}: you returned the starts; every start hides `span` frames (shift along time, "
                  "dim 1, not along the rows)")
        if len(got) > 1 and all(torch.equal(g_row, want[0]) for g_row in got):
            _fail(f"for {name}{shown}: every row came back with row 0's spans; each row has its own starts "
                  "(shift all rows at once: starts[:, ...], not starts[0])")
        _fail(f"for {name}{shown}: frame t is hidden when any of frames t - span + 1 .. t is a start")
    _ok("hide_spans is correct: starts at frames 2 and 7 of 9 with span 3 hide frames 2, 3, 4, 7 and 8")


# ---------------------------------------------------------------------------------------------
# Exercise 2: the vocal-tract stretch
# ---------------------------------------------------------------------------------------------


def check_warp_bands(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(frames (B, T, M), factor (B,)) -> (B, T, M)``: band ``i`` reads band ``i * factor``, linearly interpolated."""
    from slm_course.hubert import warp_bands

    g = torch.Generator().manual_seed(0)
    ramp = torch.arange(8, dtype=torch.float32).repeat(1, 2, 1)  # (1, 2, 8): band i holds the value i
    cases = [
        ("a ramp (band i holds i), factor 1", ramp, torch.tensor([1.0])),
        ("a ramp, factor 0.5", ramp, torch.tensor([0.5])),
        ("a ramp, factor 1.25 (the top bands read past the edge)", ramp, torch.tensor([1.25])),
        ("3 random crops of 5 frames x 40 bands, factors 0.8, 1.0, 1.2", torch.randn(3, 5, 40, generator=g),
         torch.tensor([0.8, 1.0, 1.2])),
    ]
    for name, frames, factor in cases:
        want = warp_bands(frames, factor)
        try:
            out = fn(frames.clone(), factor.clone())
        except (RuntimeError, IndexError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if "out of bounds" not in first and "out of range" not in first:
                raise
            _fail(f"for {name} warp_bands raised {type(err).__name__}: '{first}': clamp p to M - 1 before reading "
                  "bands (p = min(i * factor, M - 1), and the band above lo to M - 1 too): a factor above 1 reads "
                  "past the top band, which holds the edge's value")
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(frames.shape):
            _fail(f"for {name} warp_bands returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}; "
                  f"expected a tensor of the input's shape {tuple(frames.shape)}")
        got = out.detach().float()
        if torch.isnan(got).any():
            _fail(f"for {name} you returned NaN: clamp the positions i * factor to the last band before reading")
        if torch.allclose(got, want, atol=1e-5):
            continue
        b, t, j = ((got - want).abs() > 1e-5).nonzero()[0].tolist()  # the first value that differs
        j0 = max(0, min(j, frames.shape[2] - 8))
        where = f"crop {b} (factor {factor[b].item():g}), frame {t}, bands {j0} to {j0 + 7}"
        shown = f"you returned {[round(v, 3) for v in got[b, t, j0:j0 + 8].tolist()]} for {where}, " \
                f"expected {[round(v, 3) for v in want[b, t, j0:j0 + 8].tolist()]}"
        if len(factor) > 1 and torch.allclose(got, warp_bands(frames, factor[:1].expand(len(factor))), atol=1e-5):
            _fail(f"for {name} {shown}: every crop was stretched by the first crop's factor; crop b reads with its "
                  "own factor[b] (factor[:, None] broadcasts one factor per row)")
        if torch.allclose(got, warp_bands(frames, 1 / factor), atol=1e-5):
            _fail(f"for {name} {shown}: band i reads band i * factor, not i / factor (a factor above 1 moves the "
                  "spectral peaks down, to lower bands)")
        B, T, M = frames.shape
        pos = (torch.arange(M, dtype=frames.dtype)[None, :] * factor[:, None]).clamp(0, M - 1)
        nearest = torch.gather(frames, 2, pos.round().long()[:, None, :].expand(B, T, M))
        floor = torch.gather(frames, 2, pos.floor().long()[:, None, :].expand(B, T, M))
        if torch.allclose(got, nearest, atol=1e-5) or torch.allclose(got, floor, atol=1e-5):
            _fail(f"for {name} {shown}: you read one band; interpolate linearly between the two bands around "
                  "i * factor: (1 - w) * frames[..., lo] + w * frames[..., lo + 1], with w = i * factor - lo")
        _fail(f"for {name} {shown}: position p = min(i * factor, M - 1), lo = floor(p), hi = min(lo + 1, M - 1), "
              "w = p - lo, output = (1 - w) * band lo + w * band hi")
    _ok("warp_bands is correct: a ramp stretched by 0.5 reads 0, 0.5, 1, 1.5, ... (the spectrum moves up)")


# ---------------------------------------------------------------------------------------------
# Exercise 3: the ABX error of one minimal pair
# ---------------------------------------------------------------------------------------------


def _reference_abx(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], x: Sequence[torch.Tensor],
                   skip_same: bool = True, tie: float = 0.5, skip_index: bool = False) -> float:
    """``skip_index``: the mistake of skipping the trials by position (``i == j``) instead of ``A is X``."""
    from slm_course.unit_metrics import dtw_distance

    right, n = 0.0, 0
    for i, A in enumerate(a):
        for j, X in enumerate(x):
            if (skip_same and A is X) or (skip_index and i == j):
                continue
            dax = dtw_distance(A, X)
            for B in b:
                dbx = dtw_distance(B, X)
                right += 1.0 if dax < dbx else (tie if dax == dbx else 0.0)
                n += 1
    return 1.0 - right / n


def _abx_cases() -> list[tuple[str, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]]:
    g = torch.Generator().manual_seed(0)

    def tokens(direction: list[float], n: int, length: int, noise: float) -> list[torch.Tensor]:
        d = torch.tensor(direction)
        return [d + noise * torch.randn(length + k % 2, len(direction), generator=g) for k in range(n)]

    a, b = tokens([1.0, 0.0, 0.0], 3, 4, 0.2), tokens([0.0, 1.0, 0.0], 2, 5, 0.2)
    c, d = tokens([1.0, 0.3, 0.0], 4, 3, 0.6), tokens([0.3, 1.0, 0.0], 3, 4, 0.6)
    same = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    g1 = torch.Generator().manual_seed(1)  # another speaker's X: skipping by position (i == j) drops valid trials

    def more(direction: list[float], lengths: list[int]) -> list[torch.Tensor]:
        return [torch.tensor(direction) + 0.6 * torch.randn(n, 3, generator=g1) for n in lengths]

    e, f, e_other = more([1.0, 0.3, 0.0], [3, 4]), more([0.3, 1.0, 0.0], [4, 4, 4]), more([1.0, 0.3, 0.0], [3, 3])
    return [
        ("well separated tokens, within (x_tokens = a_tokens)", a, b, None),
        ("overlapping tokens, within", c, d, None),
        ("overlapping tokens, X from other tokens of a", c[:2], d, c[2:]),
        ("across speakers: 2 A tokens, 3 B tokens, 2 X tokens from another speaker", e, f, e_other),
        ("a token of b identical to the A tokens (every trial a tie)", same + [same[0].clone()], [same[0].clone()], None),
    ]


def check_abx_error(fn: Callable[[list, list, list], float]) -> None:
    """``fn(a_tokens, b_tokens, x_tokens) -> float``: the share of (A, B, X) trials with ``d(A, X) < d(B, X)`` wrong.

    A runs over ``a_tokens``, B over ``b_tokens``, X over ``x_tokens`` (tokens of the same phone as A,
    maybe from another speaker); a trial where A is X is skipped; a tie counts half; ``d`` is
    :func:`slm_course.unit_metrics.dtw_distance`.
    """
    for name, a, b, x in _abx_cases():
        x = a if x is None else x
        want = _reference_abx(a, b, x)
        try:
            out = fn(list(a), list(b), list(x))
        except ZeroDivisionError:
            _fail(f"for {name} abx_error divided by zero: it counted no trial. Skip a trial only when A *is* X "
                  "(`A is X`, the same tensor object), not when A equals X (torch.equal): two tokens with the same "
                  "frames are still a trial, here a tie")
        got = _as_float(out, "abx_error(a_tokens, b_tokens, x_tokens)")
        # (1e-6: a share of trials computed in float32 is right; the mistakes below move it by 1 / trials or more)
        if abs(got - want) < 1e-6:
            continue
        shown = f"for {name} you returned {got:.4f}, expected {want:.4f}"
        if abs(got - (1 - want)) < 1e-6:
            _fail(f"{shown}: that is the share of trials the representation gets *right*; ABX error is 1 minus it")
        if x is a and abs(got - _reference_abx(a, b, x, skip_same=False)) < 1e-6:
            _fail(f"{shown}: skip the trials where A and X are the same token (`A is X`): a token is at distance 0 "
                  "from itself, so those trials are always right and lower the error")
        if x is not a and abs(got - _reference_abx(a, b, x, skip_same=False, skip_index=True)) < 1e-6:
            _fail(f"{shown}: skip only when A *is* X (the same tensor: `A is X`), not by position (i == j); with X "
                  "from another speaker no trial is skipped")
        for tie in (0.0, 1.0):
            if abs(got - _reference_abx(a, b, x, tie=tie)) < 1e-6:
                _fail(f"{shown}: a tie d(A, X) == d(B, X) counts as half a right answer (0.5), not {tie:g}")
        _fail(f"{shown}: for every A, X (A is not X) and B, the trial is right when dtw_distance(A, X) < "
              "dtw_distance(B, X); the error is 1 - (right trials, ties counting half) / (number of trials)")
    _ok("abx_error is correct: 0 for well separated phones, 0.5 when every trial is a tie")


# ---------------------------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------------------------

QUIZ = (
    Question(
        "wav2vec 2.0 masks with a start probability of 0.065 and spans of 10 frames (HuBERT-Base: 0.08 and 10; the "
        "tiny HuBERT: 0.08 and 5). About what share of wav2vec 2.0's frames is hidden? (a number between 0 and 1)",
        answer=0.489, tolerance=0.015,  # "about": 0.5 is a fair rounding
        hint="section 8 and exercise 1: spans overlap, so a frame is visible only when none of the `span` frames up "
             "to it starts a span",
    ),
    Question(
        "HuBERT's targets are k-means units of its input frames. The tiny HuBERT of section 8 also puts a loss on "
        "the visible frames, with the same weight, but HuBERT puts its loss on the hidden frames only. Why?",
        choices=(
            "a) the visible frames' targets move during training: k-means is run again on the model's own layer "
            "every few hundred updates, so a loss on them would keep chasing the changing units",
            "b) a visible frame's unit is the nearest centroid of that very frame, so the model can predict it from "
            "the frame alone; a hidden frame's unit must be guessed from its context",
            "c) the units are read from the hidden frames' outputs only, never from the visible ones', so training "
            "the visible frames' outputs would spend compute on something never used",
            "d) the Transformer computes outputs only at the hidden frames, so a loss on the visible frames would "
            "need a second forward pass over the same crop, without the mask",
        ),
        answer="b",
        hint="section 8, the masked-prediction loss by hand: what the model needs to predict a visible frame's unit, "
             "and what it needs for a hidden frame's",
    ),
    Question(
        "Which step of HuBERT's recipe does this notebook build, in miniature?",
        choices=(
            "a) the first iteration: targets from k-means of spectral frames (HuBERT: MFCCs), a Transformer trained "
            "to predict them at masked frames; clustering one of its layers gives the units",
            "b) the second iteration: targets from k-means of an earlier HuBERT's layer",
            "c) fine-tuning with CTC on transcripts, which gives each frame the character it spells, and "
            "clustering the fine-tuned states gives the units",
        ),
        answer="a",
        hint="section 8: where the tiny HuBERT's targets come from (units_recipe.load_mel_units(k=50))",
    ),
    Question(
        "Split one unit of a tokenizer into two (K -> K + 1), keeping every other unit as it is. What can "
        "happen to PNMI on the same frames?",
        choices=(
            "a) it stays the same or rises, never falls",
            "b) it always falls: more units, more confusion",
            "c) it can rise or fall",
        ),
        answer="a",
        hint="section 5: PNMI is I(phone; unit) / H(phone), and H(phone) does not change. The old unit can be "
             "computed from the new one: what does the data-processing inequality say about a variable computed "
             "from another?",
    ),
    Question(
        "Across speakers, why is ABX on one-hot units worse than on the units' centroids (section 6)?",
        choices=(
            "a) one-hot vectors are longer than the centroids (K = 100 numbers a frame), so DTW's frame distances "
            "are noisier and its alignment paths wander more between the two voices",
            "b) in one-hot, every two different units are equally far apart: a new voice's frame that lands on a "
            "unit next to the right one counts as far as one on an unrelated unit",
            "c) one-hot units drop the durations: a new voice's longer vowel gives more frames of one unit, and "
            "DTW charges each extra frame of the new speaker as a mismatch",
        ),
        answer="b",
        hint="section 6: the three views of the same frames (dense, units, one-hot)",
    ),
)
