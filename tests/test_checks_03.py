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


def _restart(embed, size, sums, samples, threshold, gen, reset=True, strict=True, one_sample=False, copy=True):
    dead = size < threshold if strict else size <= threshold
    n = int(dead.sum())
    picks = samples[torch.randint(len(samples), (1 if one_sample else n,), generator=gen)].expand(n, -1)
    if copy:
        embed, size, sums = embed.clone(), size.clone(), sums.clone()
    embed[dead] = picks
    if reset:
        size[dead] = threshold
        sums[dead] = threshold * picks
    return embed, size, sums


def test_restart_check_accepts_a_right_restart(capsys):
    checks.check_restart_dead_codes(_restart)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda *a: _restart(*a, reset=False), "will not stick"),
        (lambda *a: _restart(*a, strict=False), "strictly"),
        (lambda *a: _restart(*a, one_sample=True), "same sample"),
        (lambda *a: _restart(*a, copy=False), "changed the embed, cluster_size, embed_sum passed in"),
        (lambda e, s, m, x, t, g: (e, s, m), "kept their codewords"),
        (lambda e, s, m, x, t, g: (e + 0 * s[:, None] + (s < t)[:, None] * 1.0, s, m), "rows of samples"),
    ],
)
def test_restart_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_restart_dead_codes(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the multi-resolution mel loss
# ---------------------------------------------------------------------------------------------


def _mel(wav_hat, wav, power=1.0, log=torch.log10, floor=1e-5, resolutions=((512, 40), (1024, 80), (2048, 128)),
         total=False, squared=False):
    losses = []
    for n, m in resolutions:
        mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=n, hop_length=n // 4, n_mels=m, power=power)
        diff = log(mel(wav_hat) + floor) - log(mel(wav) + floor)
        losses.append((diff**2 if squared else diff.abs()).mean())
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
    ],
)
def test_mel_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_multires_mel_loss(wrong)


# ---------------------------------------------------------------------------------------------
# Exercise 3: entropy-coded bitrate
# ---------------------------------------------------------------------------------------------


def _entropy_bitrate(ids, vocab, rate, log=torch.log2, per_frame=False, pooled=False, skip_zeros=True):
    rows = [ids.flatten()] * len(ids) if pooled else list(ids)
    bits = 0.0
    for row in rows:
        p = torch.bincount(row, minlength=vocab).double() / len(row)
        p = p[p > 0] if skip_zeros else p
        bits += float(-(p * log(p)).sum())
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
    ],
)
def test_entropy_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_entropy_bitrate(wrong)


# ---------------------------------------------------------------------------------------------
# The quiz and the exports
# ---------------------------------------------------------------------------------------------


def test_quiz_answers(capsys):
    checks.check_quiz("03", {1: 80, 2: "d", 3: "a", 4: 312.5, 5: "b"})
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(AssertionError, match="4: not 500"):
        checks.check_quiz("03", {1: 80, 2: "d", 3: "a", 4: 500, 5: "b"})


def test_checks_are_exported():
    names = {"check_ema_update", "check_restart_dead_codes", "check_multires_mel_loss", "check_entropy_bitrate"}
    assert names <= set(checks.__all__)
