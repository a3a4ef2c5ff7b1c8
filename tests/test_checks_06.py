"""Notebook 06's exercise checks accept the solutions and name the usual mistakes."""

import numpy as np
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
    with pytest.raises(AssertionError, match="kept 8 codes .* expected 5"):  # top-k ignored between 4 and the level's size
        checks.check_level_probs(lambda lg, pos, q, n, t, k: level_probs(lg, pos, q, n, t, k if k is None or k < 4 else None))


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
    with pytest.raises(AssertionError, match="seeded alike .* gave different frames: draw with the generator"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, None))  # torch's global random state
    with pytest.raises(AssertionError, match="seeded 3 gave the same .* not from a seed of your own"):
        checks.check_frames_from_units(lambda u, c, g: frames_from_units(u, c, torch.Generator().manual_seed(0)))


def _counts(seqs, vocab_size, column):
    """Run-length counts with a (wrong) rule ``column(d)`` for the column of a run of d frames (None: dropped)."""
    c = torch.zeros(vocab_size, MAX_DURATION)
    for s in seqs:
        for u, d in zip(*deduplicate(s)):
            if column(int(d)) is not None:
                c[u, column(int(d))] += 1
    return c


class _FakeAudioLM:
    """Stands in for notebook 06's model: "generates" the prompts it is given, deterministically."""

    n_levels = 2

    def generate_acoustic(self, semantic, prompts=None, temperature=1.0, top_k=None, seed=0):
        prompts = [None] * len(semantic) if prompts is None else list(prompts)
        return [(p, temperature, seed) for p in prompts]


def _fake_score(out) -> float:
    """A speaker accuracy that depends on the prompts' length and start, the temperature and the seed."""
    shares = []
    for prompt, temperature, seed in out:
        if prompt is None:
            share = 0.15
        else:
            n, start = prompt.shape[1], int(prompt[0, 0])
            share = 0.15 + 0.65 * min(n, 62) / 62 * (1.0 if start == 0 else 0.5) - 0.01 * (start % 7)
        shares.append(share * (1.0 if temperature == 0.8 else 0.9) - 0.05 * (seed != 0))
    return float(np.mean(shares))


def _codes(n_utts=20):
    """Each utterance's (3, T) codes hold the frame's index (its own offset on utterance i): a slice shows where it starts."""
    return [torch.arange(130 + i).repeat(3, 1) + 1000 * i * (torch.arange(130 + i) > 0) for i in range(n_utts)]


def _loop(frames, prompt_of, temperature=0.8, seed=0):
    """The learner's loop, with ``prompt_of(codes, n)`` the prompt it builds for length n (None: no prompt)."""
    alm, codes, sems = _FakeAudioLM(), _codes(), [torch.zeros(100, dtype=torch.long)] * 20
    acc = {}
    for n in frames:
        prompts = None if prompt_of(codes[0], n) is None else [prompt_of(c, n) for c in codes]
        acc[n] = _fake_score(alm.generate_acoustic(sems, prompts, temperature=temperature, seed=seed))
    return acc


def _check(acc, frames=(0, 4, 16, 62), **setup):
    setup = {"alm": _FakeAudioLM(), "sems": [torch.zeros(100, dtype=torch.long)] * 20, "codes": _codes(),
             "score": _fake_score, "temperature": 0.8} | setup
    checks.check_prompt_length(acc, frames, **setup)


def test_prompt_length_experiment_is_checked(capsys):
    frames = (0, 4, 16, 62)
    right = _loop(frames, lambda c, n: None if n == 0 else c[:2, :n])
    _check(right)
    out = capsys.readouterr().out
    assert "✓ the experiment ran" in out and "with 4 and 62 frames of prompt gives the same numbers" in out
    _check(_loop((0, 8, 31), lambda c, n: None if n == 0 else c[:, :n]), frames=(0, 8, 31))  # all levels: the same
    _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, :n], temperature=1.1), temperature=1.1)
    with pytest.raises(AssertionError, match="make it a dict"):
        _check(list(right.values()))
    with pytest.raises(AssertionError, match=r"has no 0: the no-prompt baseline"):
        _check({8: 0.1, 31: 0.1}, frames=(8, 31))
    with pytest.raises(AssertionError, match="has no prompt at all"):
        _check({0: 0.15}, frames=(0,))
    with pytest.raises(AssertionError, match="whole numbers of acoustic frames"):
        _check({0.0: 0.15, 0.064: 0.6}, frames=(0.0, 0.064))  # seconds, not frames
    with pytest.raises(AssertionError, match=r"no entry for prompt lengths \[16, 62\]"):
        _check({0: 0.15, 4: 0.6})
    with pytest.raises(AssertionError, match="a number in 0..1"):
        _check({n: 20 * v for n, v in right.items()})  # counts, not shares
    with pytest.raises(AssertionError, match="one per prompt"):
        _check(right, codes=_codes(19))


def test_prompt_length_wrong_loops_are_named():
    frames = (0, 4, 16, 62)
    with pytest.raises(AssertionError, match=r"accuracy\[0\] = .*1-frame prompt; for n = 0 pass prompts=None"):
        _check(_loop(frames, lambda c, n: c[:2, : max(n, 1)]))
    with pytest.raises(AssertionError, match=r"accuracy\[4\] = .*first 4 frames \(codes\[:k, :4\]\).*match "
                                             r"62-frame prompts"):
        _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, :62]))  # one fixed prompt for every n
    with pytest.raises(AssertionError, match=r"Yours are the last 4 frames \(codes\[:k, -4:\]\).*codes\[:k, :4\]"):
        _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, -n:]))
    with pytest.raises(AssertionError, match=r"accuracy\[4\] = .*each utterance's own first n frames"):
        _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, 3 : 3 + n]))  # prompts cut from the wrong place
    with pytest.raises(AssertionError, match=r"accuracy\[0\] = .*temperature=0.8 and seed=0"):
        _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, :n], temperature=1.1))  # not TEMPERATURE
    with pytest.raises(AssertionError, match=r"accuracy\[0\] = .*seed=0"):
        _check(_loop(frames, lambda c, n: None if n == 0 else c[:2, :n], seed=1))
