"""Notebook 05's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.audiolm import MAX_DURATION
from slm_course.speech_tokens import deduplicate


def flatten_levels(codes, n):
    return (codes + torch.arange(codes.shape[0])[:, None] * n).T.reshape(-1)


def align_frames(semantic, n_frames):
    idx = [min(t * 4 // 5, len(semantic) - 1) for t in range(n_frames)]
    return semantic[torch.tensor(idx)]


def duration_counts(semantic, vocab_size):
    counts = torch.zeros(vocab_size, MAX_DURATION)
    for s in semantic:
        for u, d in zip(*deduplicate(s)):
            counts[u, min(int(d), MAX_DURATION) - 1] += 1
    return counts


def test_solutions_pass(capsys):
    checks.check_flatten_levels(flatten_levels)
    checks.check_align_frames(align_frames)
    checks.check_duration_counts(duration_counts)
    assert capsys.readouterr().out.count("✓") == 3


def test_mistakes_are_named():
    with pytest.raises(AssertionError, match="frame by frame"):
        checks.check_flatten_levels(lambda c, n: (c + torch.arange(c.shape[0])[:, None] * n).reshape(-1))
    with pytest.raises(AssertionError, match="add the offset"):
        checks.check_flatten_levels(lambda c, n: c.T.reshape(-1))
    with pytest.raises(AssertionError, match="round"):
        checks.check_align_frames(
            lambda s, n: s[(torch.arange(n) * 0.8).round().long().clamp(max=len(s) - 1)])
    with pytest.raises(AssertionError, match=r"shape \(5,\)"):
        checks.check_align_frames(lambda s, n: s)
    with pytest.raises(AssertionError, match="1-D tensor of shape"):
        checks.check_flatten_levels(lambda c, n: flatten_levels(c, n).view(-1, c.shape[0]))
    with pytest.raises(AssertionError, match="count runs"):
        def per_frame(seqs, v):
            c = torch.zeros(v, MAX_DURATION)
            for s in seqs:
                for u in s.tolist():
                    c[u, 0] += 1
            return c
        checks.check_duration_counts(per_frame)
    with pytest.raises(AssertionError, match="column d - 1"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: min(d, MAX_DURATION - 1)))
    with pytest.raises(AssertionError, match="clamp"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1 if d <= MAX_DURATION else None))
    with pytest.raises(AssertionError, match="IndexError.*clamp"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1))
    with pytest.raises(AssertionError, match="last column"):  # a long run in column 0: not an off-by-one
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1 if d <= MAX_DURATION else 0))


def _counts(seqs, vocab_size, column):
    """Run-length counts with a (wrong) rule ``column(d)`` for the column of a run of d frames (None: dropped)."""
    c = torch.zeros(vocab_size, MAX_DURATION)
    for s in seqs:
        for u, d in zip(*deduplicate(s)):
            if column(int(d)) is not None:
                c[u, column(int(d))] += 1
    return c
