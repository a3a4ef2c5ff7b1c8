"""Notebook 06's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.audiolm import MAX_DURATION
from slm_course.speech_tokens import deduplicate
from slm_course.ulm import N_SPECIAL


def level_probs(logits, pos, n_levels, codebook_size, temperature=1.0, top_k=None, *, specials=N_SPECIAL,
                level_of=lambda pos, q: (pos - 1) % q, top_k_first=False, scale=None, clamp=True):
    """The solution; the keyword arguments make the usual mistakes."""
    lo = specials + level_of(pos, n_levels) * codebook_size
    x = logits / temperature if scale is None else logits * scale(temperature)
    if top_k is not None and top_k_first:
        x = x.masked_fill(x < x.topk(min(top_k, len(x))).values[-1], float("-inf"))
    level = x[lo : lo + codebook_size]
    if top_k is not None and not top_k_first:
        level = level.masked_fill(level < level.topk(min(top_k, codebook_size) if clamp else top_k).values[-1], float("-inf"))
    p = torch.zeros_like(logits)
    p[lo : lo + codebook_size] = level.softmax(-1)
    return p


def duration_counts(semantic, vocab_size):
    counts = torch.zeros(vocab_size, MAX_DURATION)
    for s in semantic:
        for u, d in zip(*deduplicate(s)):
            counts[u, min(int(d), MAX_DURATION) - 1] += 1
    return counts


def frames_from_units(units, counts, generator, *, shift=1, pick="sample", unseen=True):
    """The solution; the keyword arguments make the usual mistakes."""
    durations = []
    for u in units.tolist():
        row = counts[u]
        if unseen and row.sum() == 0:
            durations.append(1)
        elif pick == "argmax":
            durations.append(int(row.argmax()) + shift)
        elif pick == "uniform":
            durations.append(int(torch.randint(0, MAX_DURATION, (1,), generator=generator)) + shift)
        else:
            durations.append(int(torch.multinomial(row, 1, generator=generator)) + shift)
    return units.repeat_interleave(torch.tensor(durations, dtype=torch.long))


def test_solutions_pass(capsys):
    checks.check_level_probs(level_probs)
    checks.check_duration_counts(duration_counts)
    checks.check_frames_from_units(frames_from_units)
    assert capsys.readouterr().out.count("✓") == 3


def test_level_probs_mistakes_are_named():
    with pytest.raises(AssertionError, match="add N_SPECIAL"):
        checks.check_level_probs(lambda *a: level_probs(*a, specials=0))
    with pytest.raises(AssertionError, match="position 0 is <bos>"):
        checks.check_level_probs(lambda *a: level_probs(*a, level_of=lambda pos, q: pos % q))
    with pytest.raises(AssertionError, match="best \\*of the level's codes\\*"):
        checks.check_level_probs(lambda *a: level_probs(*a, top_k_first=True))
    with pytest.raises(AssertionError, match="divide them by it"):
        checks.check_level_probs(lambda *a: level_probs(*a, scale=lambda t: t))
    with pytest.raises(AssertionError, match="sum to .*softmax over the level's ids only"):
        checks.check_level_probs(lambda lg, pos, q, n, t, k: level_probs(lg, pos, q, n, t, k) * 0.5)
    with pytest.raises(AssertionError, match="not logits"):
        checks.check_level_probs(lambda lg, pos, q, n, t, k: lg)
    with pytest.raises(AssertionError, match=r"shape \(19,\)"):
        checks.check_level_probs(lambda lg, pos, q, n, t, k: level_probs(lg, pos, q, n, t, k)[3:11])
    with pytest.raises(AssertionError, match="kept .* codes"):  # top-k ignored
        checks.check_level_probs(lambda lg, pos, q, n, t, k: level_probs(lg, pos, q, n, t, None))
    with pytest.raises(AssertionError, match="keeps all its"):  # topk(top_k) on a level smaller than top_k
        checks.check_level_probs(lambda *a: level_probs(*a, clamp=False))


def test_duration_counts_mistakes_are_named():
    def per_frame(seqs, v):
        c = torch.zeros(v, MAX_DURATION)
        for s in seqs:
            for u in s.tolist():
                c[u, 0] += 1
        return c

    with pytest.raises(AssertionError, match="count runs"):
        checks.check_duration_counts(per_frame)
    with pytest.raises(AssertionError, match="column d - 1"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: min(d, MAX_DURATION - 1)))
    with pytest.raises(AssertionError, match="clamp"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1 if d <= MAX_DURATION else None))
    with pytest.raises(AssertionError, match="IndexError.*clamp"):
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1))
    with pytest.raises(AssertionError, match="last column"):  # a long run in column 0: not an off-by-one
        checks.check_duration_counts(lambda seqs, v: _counts(seqs, v, lambda d: d - 1 if d <= MAX_DURATION else 0))


def test_frames_from_units_mistakes_are_named():
    with pytest.raises(AssertionError, match="add 1"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g, shift=0))
    with pytest.raises(AssertionError, match="not \\+ 2"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g, shift=2))
    with pytest.raises(AssertionError, match="argmax"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g, pick="argmax"))
    with pytest.raises(AssertionError, match="never seen.*1 frame"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g, unseen=False))
    with pytest.raises(AssertionError, match="1-D tensor of unit ids"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g).float())
    with pytest.raises(AssertionError, match="expected \\[0, 0, 0, 1"):  # durations drawn uniformly
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, g, pick="uniform"))


def _counts(seqs, vocab_size, column):
    """Run-length counts with a (wrong) rule ``column(d)`` for the column of a run of d frames (None: dropped)."""
    c = torch.zeros(vocab_size, MAX_DURATION)
    for s in seqs:
        for u, d in zip(*deduplicate(s)):
            if column(int(d)) is not None:
                c[u, column(int(d))] += 1
    return c


def test_prompt_length_experiment_is_checked(capsys):
    frames = (0, 4, 16, 62)
    checks.check_prompt_length({0: 0.15, 4: 0.6, 16: 0.6, 62: 0.8}, frames)
    assert "✓ the experiment ran" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="make it a dict"):
        checks.check_prompt_length([0.15, 0.6, 0.6, 0.8], frames)
    with pytest.raises(AssertionError, match=r"no entry for prompt lengths \[16, 62\]"):
        checks.check_prompt_length({0: 0.15, 4: 0.6}, frames)
    with pytest.raises(AssertionError, match="a number in 0..1"):
        checks.check_prompt_length({0: 3, 4: 12, 16: 12, 62: 16}, frames)  # counts, not shares
    with pytest.raises(AssertionError, match="pass prompts=None"):
        checks.check_prompt_length({0: 0.8, 4: 0.8, 16: 0.85, 62: 0.9}, frames)
    with pytest.raises(AssertionError, match="hardly more than no prompt"):
        checks.check_prompt_length({0: 0.25, 4: 0.3, 16: 0.25, 62: 0.3}, frames)
