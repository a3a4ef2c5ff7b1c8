"""The checks of notebook 03's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

import math

import pytest
import torch

from slm_course import checks
from slm_course.codec import rvq_encode, si_snr


def test_rvq_check_accepts_the_package_loop(capsys):
    checks.check_rvq_encode(rvq_encode)
    assert capsys.readouterr().out.startswith("✓")


def _no_residual(x, books):
    codes = torch.stack([torch.cdist(x, b).argmin(dim=1) for b in books])
    return codes, sum(b[c] for b, c in zip(books, codes))


def _farthest(x, books):
    residual, quantized, codes = x, torch.zeros_like(x), []
    for b in books:
        idx = torch.cdist(residual, b).argmax(dim=1)
        quantized, residual = quantized + b[idx], residual - b[idx]
        codes.append(idx)
    return torch.stack(codes), quantized


@pytest.mark.parametrize(
    "wrong, words",
    [
        (_no_residual, "residual"),
        (_farthest, "farthest"),
        (lambda x, b: (rvq_encode(x, b)[0].T, rvq_encode(x, b)[1]), r"\(L, T\)"),
        (lambda x, b: (rvq_encode(x, b)[0], x - rvq_encode(x, b)[1]), "of the chosen codewords"),
        (lambda x, b: rvq_encode(x, b)[0], "pair"),
    ],
)
def test_rvq_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_rvq_encode(wrong)


def test_bitrate_check(capsys):
    checks.check_bitrate(lambda r, n, k: r * n * math.log2(k))
    assert capsys.readouterr().out.startswith("✓")
    for wrong, words in [
        (lambda r, n, k: r * n * k, "log2"),
        (lambda r, n, k: r * math.log2(k), "number of levels"),
        (lambda r, n, k: r * n * math.log2(k) / 1000, "kbit/s"),
        (lambda r, n, k: r * n * math.ceil(math.log2(k)), "exact log2"),
    ]:
        with pytest.raises(AssertionError, match=words):
            checks.check_bitrate(wrong)


def _plain_snr(est, ref):
    est, ref = est - est.mean(), ref - ref.mean()
    return float(10 * torch.log10((ref @ ref) / ((est - ref) @ (est - ref))))


def _no_mean(est, ref):
    est, ref = est.double(), ref.double()
    proj = (est @ ref) / (ref @ ref) * ref
    return float(10 * torch.log10((proj @ proj) / ((est - proj) @ (est - proj))))


def test_si_snr_check(capsys):
    checks.check_si_snr(si_snr)
    assert capsys.readouterr().out.startswith("✓")
    for wrong, words in [(_plain_snr, "plain SNR"), (_no_mean, "mean"), (lambda e, r: 10 ** (si_snr(e, r) / 10), "decibels")]:
        with pytest.raises(AssertionError, match=words):
            checks.check_si_snr(wrong)


def test_checks_are_exported():
    assert {"check_rvq_encode", "check_bitrate", "check_si_snr"} <= set(checks.__all__)
