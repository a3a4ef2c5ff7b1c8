"""Checks for notebook 05's exercises (solutions/06_audiolm_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _fail, _ok

__all__ = ["check_align_frames", "check_duration_counts", "check_flatten_levels"]


def _tensor(value, call: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        _fail(f"{call} returned {type(value).__name__}; return a torch.Tensor")
    return value


def check_flatten_levels(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(codes, codebook_size)``: ``(Q, T)`` codes -> ``(Q * T,)`` ids, frame-major, level q offset by q * N."""
    from slm_course.audiolm import flatten_levels

    g = torch.Generator().manual_seed(5)
    for Q, T, N in ((2, 3, 10), (1, 4, 8), (3, 7, 256)):
        codes = torch.randint(0, N, (Q, T), generator=g)
        want = flatten_levels(codes, N)
        got = _tensor(fn(codes.clone(), N), f"flatten_levels(codes {tuple(codes.shape)}, {N})")
        said = f"for codes {codes.tolist() if T < 5 else tuple(codes.shape)} with N={N} you returned " \
               f"{got.tolist() if got.numel() < 12 else tuple(got.shape)}"
        if got.shape == want.shape and torch.equal(got.long(), want):
            continue
        if got.numel() != Q * T:
            _fail(f"{said}: return one id per code, {Q * T} in all, as a 1-D tensor (reshape(-1))")
        if got.ndim != 1 and torch.equal(got.reshape(-1).long(), want):
            _fail(f"{said}: the ids and their order are right; return them as a 1-D tensor of shape ({Q * T},) "
                  "(reshape(-1))")
        offsets = torch.arange(Q)[:, None] * N
        if torch.equal(got.reshape(-1).long(), (codes + offsets).reshape(-1)):
            _fail(f"{said}: that is level by level; AudioLM reads frame by frame (all levels of frame 0, then "
                  "frame 1...): transpose to (T, Q) before flattening")
        if torch.equal(got.reshape(-1).long(), codes.T.reshape(-1)):
            _fail(f"{said}: the order is right but every level shares ids 0..N-1; add the offset q * N to level q")
        _fail(f"{said}, expected {want.tolist() if want.numel() < 12 else 'another order'}: "
              "add q * N to level q, then read the (T, Q) grid row by row")
    _ok("flatten_levels is correct: frame by frame, level q offset by q * N (AudioLM's o_q)")


def check_align_frames(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(semantic, n_frames)``: the 50 Hz unit at the start time of each 62.5 Hz acoustic frame."""
    from slm_course.audiolm import align_frames

    g = torch.Generator().manual_seed(6)
    for T_sem, n in ((4, 5), (8, 10), (13, 16), (6, 9), (40, 50)):
        sem = torch.randint(0, 100, (T_sem,), generator=g)
        want = align_frames(sem, n)
        got = _tensor(fn(sem.clone(), n), f"align_frames(semantic ({T_sem},), {n})")
        shown = got.tolist() if got.numel() <= 16 else f"shape {tuple(got.shape)}"
        said = f"for semantic {sem.tolist() if T_sem <= 16 else f'({T_sem},)'} and {n} acoustic frames you returned {shown}"
        if got.shape == want.shape and torch.equal(got.long(), want):
            continue
        if got.shape != want.shape:
            _fail(f"{said}: return one semantic unit per acoustic frame, shape ({n},)")
        idx = torch.arange(n)
        rounded = sem[(idx * 0.8).round().long().clamp(max=T_sem - 1)]
        if torch.equal(got.long(), rounded):
            _fail(f"{said}, off by one frame in places: acoustic frame t starts at t / 62.5 s, which lies inside "
                  "semantic frame floor(t * 50 / 62.5); round() picks the next one half the time")
        _fail(f"{said}, expected {want.tolist() if n <= 16 else 'other units'}: take semantic[floor(t * 50 / 62.5)], "
              "clamped to the last semantic frame")
    _ok("align_frames is correct: acoustic frame t reads semantic frame floor(t * 0.8), clamped at the end")


def check_duration_counts(fn: Callable[[list, int], torch.Tensor]) -> None:
    """``fn(semantic, vocab_size)``: ``(vocab_size, MAX_DURATION)`` counts of each unit's run lengths."""
    from slm_course.audiolm import MAX_DURATION, duration_counts

    g = torch.Generator().manual_seed(7)
    seqs = [torch.tensor([3, 3, 3, 1, 1, 4])]
    seqs += [torch.randint(0, 5, (int(torch.randint(1, 30, ())),), generator=g).repeat_interleave(
        torch.randint(1, 4, (1,), generator=g)) for _ in range(10)]
    seqs += [torch.full((MAX_DURATION + 7,), 2)]  # one run longer than MAX_DURATION
    for name, case in (("[3, 3, 3, 1, 1, 4]", seqs[:1]), ("random sequences", seqs[1:-1]),
                       (f"a run of {MAX_DURATION + 7} frames", seqs[-1:])):
        want = duration_counts(case, 5)
        try:
            got = fn([s.clone() for s in case], 5)
        except IndexError as e:
            _fail(f"for {name}, your function raised IndexError ({e}): a run longer than MAX_DURATION = "
                  f"{MAX_DURATION} frames must go in the last column: clamp the duration")
        got = _tensor(got, f"duration_counts({name}, 5)")
        said = f"for {name} you returned a tensor of shape {tuple(got.shape)}"
        if got.shape != want.shape:
            _fail(f"{said}: return (vocab_size, MAX_DURATION) = (5, {MAX_DURATION}) counts")
        if torch.allclose(got.float(), want):
            continue
        if got.sum() == sum(len(s) for s in case):
            _fail(f"{said}: it counts frames; count runs (one per de-duplicated unit), at column duration - 1")
        if name.startswith("a run"):
            _fail(f"{said}: a run longer than MAX_DURATION = {MAX_DURATION} frames counts in the last column "
                  "(clamp the duration)")
        if not name.startswith("a run") and torch.allclose(got.float()[:, 1:], want[:, :-1]):
            _fail(f"{said}: a run of d frames goes in column d - 1 (a 1-frame run in column 0)")
        _fail(f"{said}, wrong counts: for each sequence, deduplicate it into units and durations, then add 1 at "
              "[unit, min(duration, MAX_DURATION) - 1]")
    _ok(f"duration_counts is correct: one count per run, at [unit, duration - 1], capped at {MAX_DURATION} frames")
