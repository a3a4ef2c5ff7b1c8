"""The checks of notebook 03's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchaudio

from slm_course import checks
from slm_course.checks.ch03 import _ema_reference
from slm_course.codec import CodecConfig, CodecModel, codebook_usage

# ---------------------------------------------------------------------------------------------
# Exercise 1a: the EMA update
# ---------------------------------------------------------------------------------------------


def _ema(x, codes, size, sums, decay, eps=1e-5, smooth=True, swap=False, mean_not_sum=False):
    K = len(size)
    onehot = F.one_hot(codes, K).to(x.dtype)
    a, b = (1 - decay, decay) if swap else (decay, 1 - decay)
    size = a * size + b * onehot.sum(0)
    batch = onehot.T @ x
    if mean_not_sum:
        batch = batch / onehot.sum(0).clamp_min(1)[:, None]
    sums = a * sums + b * batch
    if smooth:
        total = size.sum()
        size_s = (size + eps) / (total + K * eps) * total
    else:
        size_s = size
    return size, sums, sums / size_s[:, None]


def test_ema_reference_is_the_formula():
    g = torch.Generator().manual_seed(0)
    x, embed = torch.randn(30, 3, generator=g), torch.randn(5, 3, generator=g)
    size = torch.tensor([2.0, 0.0, 1.0, 3.0, 0.5])
    codes = torch.cdist(x, embed).argmin(dim=1)
    for got, want in zip(_ema_reference(x, embed, size, embed * size[:, None], 0.9),
                         _ema(x, codes, size, embed * size[:, None], 0.9)):
        torch.testing.assert_close(got, want)


def test_ema_check_accepts_the_formula(capsys):
    checks.check_ema_update(_ema)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda *a: _ema(*a, swap=True), "swapped"),
        (lambda *a: _ema(*a, mean_not_sum=True), r"\*sum\*"),
        (lambda *a: _ema(*a, smooth=False), "divides by zero"),
        (lambda x, c, s, e, d: (*_ema(x, c, s, e, d)[:2], e / s[:, None]), "did not change"),
        (lambda x, c, s, e, d: _ema(x, c, s, e, d)[:2], "tuple of 3"),
    ],
)
def test_ema_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_ema_update(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 1b: dead-code restart
# ---------------------------------------------------------------------------------------------


def _restart(embed, size, sums, samples, threshold, gen, reset=True, strict=True, one_sample=False, copy=True,
             draw="right"):
    dead = size < threshold if strict else size <= threshold
    n = int(dead.sum())
    if draw == "right":
        rows = torch.randint(len(samples), (1 if one_sample else n,), generator=gen).expand(n)
    elif draw == "first":  # the first rows of the batch: not random
        rows = torch.arange(n)
    elif draw == "global":  # torch's global generator instead of the one given
        rows = torch.randint(len(samples), (n,))
    elif draw == "two":  # only two different rows for all the dead codes
        rows = torch.arange(n) % 2
    elif draw == "reversed":  # the right rows, given to the dead codes last to first
        rows = torch.randint(len(samples), (n,), generator=gen).flip(0)
    elif draw == "every":  # a row drawn for every code, the dead codes' kept
        rows = torch.randint(len(samples), (len(size),), generator=gen)[dead]
    else:  # "perm": distinct random rows, but not the draw asked for
        rows = torch.randperm(len(samples), generator=gen)[:n]
    picks = samples[rows]
    if copy:
        embed, size, sums = embed.clone(), size.clone(), sums.clone()
    embed[dead] = picks
    if reset:
        size[dead] = threshold
        sums[dead] = threshold * picks
    return embed, size, sums


def _restart_loop(embed, size, sums, samples, threshold, gen):
    """One dead code at a time, in code order: the same draw as one call for all of them."""
    embed, size, sums = embed.clone(), size.clone(), sums.clone()
    for k in range(len(size)):
        if size[k] < threshold:
            embed[k] = samples[torch.randint(len(samples), (), generator=gen)]
            size[k], sums[k] = threshold, threshold * embed[k]
    return embed, size, sums


def test_restart_check_accepts_a_right_restart(capsys):
    checks.check_restart_dead_codes(_restart)
    checks.check_restart_dead_codes(_restart_loop)
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda *a: _restart(*a, reset=False), "will not stick"),
        (lambda *a: _restart(*a, strict=False), "strictly"),
        (lambda *a: _restart(*a, one_sample=True), "same sample"),
        (lambda *a: _restart(*a, copy=False), "changed the embed, cluster_size, embed_sum passed in"),
        (lambda e, s, m, x, t, g: (e, s, m), "kept their codewords"),
        (lambda e, s, m, x, t, g: (e + 0 * s[:, None] + (s < t)[:, None] * 1.0, s, m), "rows of samples"),
        (lambda *a: _restart(*a, draw="first"), "first 5 rows of the batch, not random"),
        (lambda *a: _restart(*a, draw="global"), "draw with the generator you are given"),
        (lambda *a: _restart(*a, draw="two"), "only 2 different ones"),
        (lambda *a: _restart(*a, draw="reversed"), "the right rows, in another order"),
        (lambda *a: _restart(*a, draw="every"), "a row for every code"),
        (lambda *a: _restart(*a, draw="perm"), r"exactly samples\[torch.randint\(len\(samples\), \(n_dead,\)"),
    ],
)
def test_restart_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_restart_dead_codes(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the multi-resolution mel loss
# ---------------------------------------------------------------------------------------------


def _mel(wav_hat, wav, power=1.0, log=torch.log10, floor=1e-5, resolutions=((512, 40), (1024, 80), (2048, 128)),
         total=False, squared=False, clamp=False, per_example=False, half_window=False, **kwargs):
    losses = []
    for n, m in resolutions:
        options = dict(n_fft=n, hop_length=n // 4, n_mels=m, power=power) | kwargs
        if half_window:
            options["win_length"] = n // 2
        mel = torchaudio.transforms.MelSpectrogram(16000, **options)
        a, b = mel(wav_hat), mel(wav)
        diff = log(a.clamp_min(floor)) - log(b.clamp_min(floor)) if clamp else log(a + floor) - log(b + floor)
        err = diff**2 if squared else diff.abs()
        losses.append(err.mean(dim=(1, 2)).sum() if per_example else err.mean())
    return torch.stack(losses).sum() if total else torch.stack(losses).mean()


def test_mel_check_accepts_the_codec_loss(capsys):
    model = CodecModel(CodecConfig())
    checks.check_multires_mel_loss(model.mel_loss)
    checks.check_multires_mel_loss(_mel)
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda a, b: _mel(a, b, power=2.0), "power=1.0"),
        (lambda a, b: _mel(a, b, log=torch.log), "log10"),
        (lambda a, b: _mel(a, b, total=True), "average the three"),
        (lambda a, b: _mel(a, b, resolutions=((512, 40),)), "all three resolutions"),
        (lambda a, b: _mel(a, b, floor=0.0), "floor"),
        (lambda a, b: _mel(a, b, floor=0.0) * float("inf"), "floor 1e-5"),
        (lambda a, b: _mel(a, b, squared=True), "not the squared one"),
        (lambda a, b: _mel(a, b, hop_length=None), "hop of n_fft // 2"),  # torchaudio's default hop
        (lambda a, b: _mel(a, b, center=False), "center=True"),
        (lambda a, b: _mel(a, b, mel_scale="slaney"), "not Slaney's"),
        (lambda a, b: _mel(a, b, mel_scale="slaney", norm="slaney"), "not Slaney's"),
        (lambda a, b: _mel(a, b, clamp=True), r"rather than clamp_min\(1e-5\)"),
        (lambda a, b: _mel(a, b, half_window=True), "each window is n_fft samples long"),
        (lambda a, b: _mel(a, b, per_example=True), "added up the examples' means"),
        (lambda a, b: float(_mel(a, b)), "carries no gradient .a Python number"),  # right values, nothing to train
        (lambda a, b: _mel(a, b).detach(), "requires_grad is False"),
    ],
)
def test_mel_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_multires_mel_loss(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 3: entropy-coded bitrate
# ---------------------------------------------------------------------------------------------


def _entropy_bitrate(ids, vocab, rate, log=torch.log2, per_frame=False, pooled=False, skip_zeros=True,
                     average=False, ceil=False, per_vocab=False, transposed=False):
    rows = [ids.flatten()] * len(ids) if pooled else list(ids.T if transposed else ids)
    bits = 0.0
    for row in rows:
        p = torch.bincount(row, minlength=vocab).double() / (vocab if per_vocab else len(row))
        p = p[p > 0] if skip_zeros else p
        h = float(-(p * log(p)).sum())
        bits += math.ceil(h - 1e-9) if ceil else h
    bits = bits / len(rows) if average else bits
    return bits if per_frame else rate * bits


def test_entropy_check_accepts_the_formula(capsys):
    checks.check_entropy_bitrate(_entropy_bitrate)
    checks.check_entropy_bitrate(lambda ids, v, r: r * float(torch.log2(codebook_usage(ids, v)[1]).sum()))
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda i, v, r: _entropy_bitrate(i, v, r, log=torch.log), "nats"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, per_frame=True), "frame rate"),
        (lambda i, v, r: r * len(i) * math.log2(v), "fixed rate"),
        (lambda i, v, r: r * sum(math.log2(len(row.unique())) for row in i), "codes used"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, pooled=True), "one histogram per level"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, skip_zeros=False), "0 \\* log2\\(0\\) is nan"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, average=True), "add the levels' entropies up"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, ceil=True), "rounded each level's H up"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, per_vocab=True), "you divided by vocab_size"),
        (lambda i, v, r: _entropy_bitrate(i, v, r, transposed=True), "one histogram per frame"),
    ],
)
def test_entropy_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_entropy_bitrate(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 4: reading the dead-code table
# ---------------------------------------------------------------------------------------------

_TABLE = {(0.0, 0.99): (32, 1.4473), (1.0, 0.99): (60, 1.1262), (0.0, 0.9): (62, 1.0891), (1.0, 0.9): (60, 1.0733)}


def _online_vq(threshold, decay):
    return _TABLE[threshold, decay]


def _read(n_dead=32, n_dead_fast=2, error_drop=1 - 1.1262 / 1.4473):
    checks.check_dead_code_reading(n_dead, n_dead_fast, error_drop, online_vq=_online_vq, K=64)


def test_dead_code_reading_accepts_the_table(capsys):
    _read()
    _read(torch.tensor(32), 2.0, 1 - 1.126 / 1.447)  # a tensor, a float, the printed (rounded) errors
    out = capsys.readouterr().out
    assert out.count("✓") == 2 and "32 of 64 codes are dead at decay 0.99 and 2 at decay 0.9" in out


@pytest.mark.parametrize(
    "answers, words",
    [
        (dict(n_dead_fast=62), "number of codes \\*used\\*"),
        (dict(n_dead=4), "with a restart"),
        (dict(n_dead=2), "belongs to the other decay"),
        (dict(n_dead_fast=32), "belongs to the other decay"),
        (dict(n_dead=0.5), "not a share of K"),
        (dict(n_dead=10), "'codes used' column"),
        (dict(error_drop=22.18), "not a percentage"),
        (dict(error_drop=1.4473 - 1.1262), "difference of the two errors"),
        (dict(error_drop=1.1262 / 1.4473), "the share of the error that is \\*left\\*"),
        (dict(error_drop=1.4473 / 1.1262 - 1), "divided by the error with the restart"),
        (dict(error_drop=-0.2218), "sign"),
        (dict(error_drop=0.5), "error_drop = 1 - MSE"),
    ],
)
def test_dead_code_reading_explains_mistakes(answers, words):
    with pytest.raises(AssertionError, match=words):
        _read(**answers)


def test_dead_code_reading_needs_the_table_as_given():
    with pytest.raises(AssertionError, match="run the table's cell as it is given"):
        checks.check_dead_code_reading(32, 2, 0.22, online_vq=lambda t, d: 32, K=64)


# ---------------------------------------------------------------------------------------------
# The quiz and the exports
# ---------------------------------------------------------------------------------------------


def test_quiz_answers(capsys):
    checks.check_quiz("03", {1: 60, 2: "d", 3: "b", 4: 312.5, 5: "c"})
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(AssertionError, match="4: not 500"):
        checks.check_quiz("03", {1: 60, 2: "d", 3: "b", 4: 500, 5: "c"})
    with pytest.raises(AssertionError, match="(?s)1: not 80.*3: not a; look again at section 3"):
        checks.check_quiz("03", {1: 80, 2: "d", 3: "a", 4: 312.5, 5: "c"})  # the old key: 75 frames/s, 'worse'


def test_checks_are_exported():
    names = {"check_ema_update", "check_restart_dead_codes", "check_multires_mel_loss", "check_entropy_bitrate",
             "check_dead_code_reading"}
    assert names <= set(checks.__all__)
