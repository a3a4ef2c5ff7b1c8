"""Notebook 00's exercise checks: a right solution passes, typical wrong ones fail with the right message."""

from __future__ import annotations

import math

import pytest
import torch

from slm_course import checks
from slm_course.checks import ch00


def _passes(check, fn, capsys) -> None:
    check(fn)
    assert capsys.readouterr().out.startswith("✓")


# ---------------------------------------------------------------------------------------------
# Exercise 1: mu-law
# ---------------------------------------------------------------------------------------------


def _compand(x: torch.Tensor, mu: int) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def _encode(x: torch.Tensor, n_levels: int) -> torch.Tensor:
    mu = n_levels - 1
    return torch.round((_compand(x, mu) + 1) / 2 * mu).long()


def _decode(ids: torch.Tensor, n_levels: int) -> torch.Tensor:
    mu = n_levels - 1
    y = 2 * ids.double() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def test_check_mu_law_encode(capsys):
    _passes(checks.check_mu_law_encode, _encode, capsys)
    _passes(checks.check_mu_law_encode, lambda x, n: _encode(x.float(), n), capsys)  # float32 rounding is fine
    with pytest.raises(AssertionError, match="quantised the samples linearly"):
        checks.check_mu_law_encode(lambda x, n: torch.round((x + 1) / 2 * (n - 1)).long())
    with pytest.raises(AssertionError, match="truncated"):
        checks.check_mu_law_encode(lambda x, n: ((_compand(x, n - 1) + 1) / 2 * (n - 1)).long())
    with pytest.raises(AssertionError, match="ids are integers"):
        checks.check_mu_law_encode(lambda x, n: _encode(x, n).double())
    with pytest.raises(AssertionError, match=r"must lie in 0\.\.255"):
        checks.check_mu_law_encode(lambda x, n: torch.round(_compand(x, n - 1) * (n - 1)).long())
    with pytest.raises(AssertionError, match="torch.Tensor"):
        checks.check_mu_law_encode(lambda x, n: _encode(x, n).tolist())


def test_check_mu_law_decode(capsys):
    _passes(checks.check_mu_law_decode, _decode, capsys)
    with pytest.raises(AssertionError, match="without expanding"):
        checks.check_mu_law_decode(lambda ids, n: 2 * ids.double() / (n - 1) - 1)
    with pytest.raises(AssertionError, match="samples lie in"):
        checks.check_mu_law_decode(lambda ids, n: ((1 + (n - 1)) ** (ids.double() / (n - 1)) - 1) / (n - 1) * 3)
    with pytest.raises(AssertionError, match="expected"):
        checks.check_mu_law_decode(lambda ids, n: _decode(ids, n) * 0.9)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the anti-aliasing filter and downsampling
# ---------------------------------------------------------------------------------------------


def _lowpass(cutoff, sr, n_taps, window=True, periodic=False, normalise=True, scale=2.0):
    n = torch.arange(n_taps, dtype=torch.float64) - (n_taps - 1) / 2
    h = torch.sinc(scale * cutoff / sr * n)
    if window:
        h = h * torch.hann_window(n_taps, periodic=periodic, dtype=torch.float64)
    return h / h.sum() if normalise else 2 * cutoff / sr * h


def test_check_lowpass_fir(capsys):
    _passes(checks.check_lowpass_fir, _lowpass, capsys)
    with pytest.raises(AssertionError, match="sum to"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, normalise=False))  # 2 fc / sr: nearly 1
    with pytest.raises(AssertionError, match="sum to"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, normalise=False) * sr / (2 * c))  # forgot it
    with pytest.raises(AssertionError, match="unwindowed"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, window=False))
    with pytest.raises(AssertionError, match="periodic Hann"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, periodic=True))
    with pytest.raises(AssertionError, match="the cutoff is too high"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, scale=4.0))
    with pytest.raises(AssertionError, match="the cutoff is too low"):
        checks.check_lowpass_fir(lambda c, sr, n: _lowpass(c, sr, n, scale=1.0))
    with pytest.raises(AssertionError, match="not symmetric"):
        checks.check_lowpass_fir(lambda c, sr, n: torch.roll(_lowpass(c, sr, n), 1))


def _downsample(wav, sr, factor, n_taps=101, filtered=True, pad=True, cutoff=None, cast=True):
    if not filtered:
        return wav[::factor]
    h = _lowpass(cutoff or sr / (2 * factor), sr, n_taps)
    h = h.to(wav.dtype) if cast else h
    y = torch.nn.functional.conv1d(wav[None, None], h[None, None], padding=n_taps // 2 if pad else 0)[0, 0]
    return y[::factor]


def test_check_downsample(capsys):
    _passes(checks.check_downsample, _downsample, capsys)
    with pytest.raises(AssertionError, match="without filtering"):
        checks.check_downsample(lambda w, sr, f, n=101: _downsample(w, sr, f, n, filtered=False))
    with pytest.raises(AssertionError, match="samples; expected"):
        checks.check_downsample(lambda w, sr, f, n=101: _downsample(w, sr, f, n, pad=False))
    with pytest.raises(AssertionError, match="half the new Nyquist"):
        checks.check_downsample(lambda w, sr, f, n=101: _downsample(w, sr, f, n, cutoff=sr / (4 * f)))
    with pytest.raises(AssertionError, match="expected"):
        checks.check_downsample(lambda w, sr, f, n=101: 0.5 * _downsample(w, sr, f, n))
    with pytest.raises(AssertionError, match="cast the taps to wav.dtype"):  # float64 taps on float32 audio
        checks.check_downsample(lambda w, sr, f, n=101: _downsample(w, sr, f, n, cast=False))
    with pytest.raises(AssertionError, match="returned torch.float64"):  # the audio cast up to the taps instead
        checks.check_downsample(lambda w, sr, f, n=101: _downsample(w.double(), sr, f, n))


# ---------------------------------------------------------------------------------------------
# Exercise 3: sub-sample pitch
# ---------------------------------------------------------------------------------------------


def _parabolic(y, k, sign=1.0, offset_only=False):
    delta = 0.5 * float(y[k - 1] - y[k + 1]) / float(y[k - 1] - 2 * y[k] + y[k + 1])
    return sign * delta if offset_only else k + sign * delta


def _f0_fine(frame, sr, fmin=60.0, fmax=400.0, refine=True, centre=True):
    x = frame.double() - frame.double().mean() if centre else frame.double()
    n = len(x)
    lo, hi = int(sr / fmax), min(int(sr / fmin), n - 2)
    r = torch.stack([(x[: n - k] * x[k:]).sum() for k in range(n)])
    k = lo + int(r[lo : hi + 1].argmax())
    return sr / (_parabolic(r, k) if refine else k)


def test_check_parabolic_peak(capsys):
    _passes(checks.check_parabolic_peak, _parabolic, capsys)
    with pytest.raises(AssertionError, match="returned k = 10 itself"):
        checks.check_parabolic_peak(lambda y, k: k)
    with pytest.raises(AssertionError, match="wrong sign"):
        checks.check_parabolic_peak(lambda y, k: _parabolic(y, k, sign=-1.0))
    with pytest.raises(AssertionError, match="only the offset"):
        checks.check_parabolic_peak(lambda y, k: _parabolic(y, k, offset_only=True))
    # a parabola through other samples: exact on a parabola's samples, wrong on any other peak
    with pytest.raises(AssertionError, match="three samples k - 1, k and k \\+ 1 only"):
        checks.check_parabolic_peak(lambda y, k: _parabolic(y, k + 1))  # through k, k + 1, k + 2


def test_f0_hint_names_the_nearest_explanation():
    from slm_course.checks.ch00 import _f0_hint

    # at 16 kHz a 220 Hz voice's period, 72.7 samples, is near a third of its F0, 73.3 Hz: the nearer one is named
    assert "1/3 of the true F0" in _f0_hint(220 / 3, 220, 16000)
    assert "period in samples" in _f0_hint(16000 / 220, 220, 16000)
    assert "twice the true F0" in _f0_hint(440.0, 220, 16000)
    assert _f0_hint(300.0, 220, 16000) == ""


def test_check_fine_f0(capsys):
    _passes(checks.check_fine_f0, _f0_fine, capsys)
    with pytest.raises(AssertionError, match="whole-sample lag"):
        checks.check_fine_f0(lambda frame, sr: _f0_fine(frame, sr, refine=False))
    with pytest.raises(AssertionError, match="within 0.4%"):
        checks.check_fine_f0(lambda frame, sr: _f0_fine(frame, sr) / 2)
    with pytest.raises(AssertionError, match=r"DC offset.*subtract frame\.mean\(\)"):
        checks.check_fine_f0(lambda frame, sr: _f0_fine(frame, sr, centre=False))


def _f0_spectral(frame, sr, fmin=60.0, fmax=400.0, pad=4):
    # Not the asked method: the highest peak of the Hann-windowed, zero-padded spectrum, refined with a parabola.
    x = (frame.double() - frame.double().mean()) * torch.hann_window(len(frame), dtype=torch.float64)
    n_fft = pad * len(x)
    spectrum = torch.fft.rfft(x, n=n_fft).abs()
    lo, hi = math.ceil(fmin * n_fft / sr), int(fmax * n_fft / sr)
    k = lo + int(spectrum[lo : hi + 1].argmax())
    return _parabolic(spectrum, k) * sr / n_fft


def test_check_fine_f0_asks_for_the_autocorrelation():
    # The spectral peak is right on every frame whose fundamental is its loudest harmonic ...
    for f0, sr, n_harmonics in ch00._FINE_F0_CASES:
        frame = ch00._harmonic_frame(f0, sr, int(0.04 * sr), n_harmonics, seed=int(f0))
        assert abs(_f0_spectral(frame, sr) - f0) <= 0.004 * f0
    # ... and lands on a harmonic where the fundamental is nearly missing; the message says so and what to do.
    with pytest.raises(AssertionError, match=r"returned 34\d\.\d Hz, 3 x the true F0: harmonic 3.*use the autocorrel"):
        checks.check_fine_f0(_f0_spectral)
    with pytest.raises(AssertionError, match="harmonic 3, not the fundamental"):
        checks.check_fine_f0(lambda frame, sr: _f0_spectral(frame, sr, pad=16))


def estimate_f0_fine(frame, sr):
    return _f0_fine(frame, sr)


def test_f0_checks_name_the_learners_function(capsys):
    checks.check_fine_f0(estimate_f0_fine)
    checks.check_autocorrelation_f0(estimate_f0_fine)
    out = capsys.readouterr().out
    assert out.count("✓ estimate_f0_fine is") == 2 and "estimate_f0 " not in out
    with pytest.raises(AssertionError, match=r"^estimate_f0_fine\("):
        checks.check_autocorrelation_f0(lambda frame, sr: _f0_fine(frame, sr) / 2)


# ---------------------------------------------------------------------------------------------
# Exercise 4: the frame length that resolves the harmonics
# ---------------------------------------------------------------------------------------------


def test_check_frame_length(capsys):
    f0 = {"male": 87.0, "female": 233.0}
    checks.check_frame_length({"male": 25, "female": 10}, f0)  # about 2 periods each
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(AssertionError, match="looks like seconds"):
        checks.check_frame_length({"male": 0.025, "female": 0.010}, f0)
    with pytest.raises(AssertionError, match="too short"):
        checks.check_frame_length({"male": 10, "female": 10}, f0)
    with pytest.raises(AssertionError, match="well before that"):
        checks.check_frame_length({"male": 64, "female": 10}, f0)
    with pytest.raises(AssertionError, match="male: 45 ms is 3.9 pitch periods; the harmonics separate well before"):
        checks.check_frame_length({"male": 45, "female": 17}, f0)  # both near 4 periods: twice the right reading
    with pytest.raises(AssertionError, match=r"1\.06 times as long; .* 2\.7 times closer together, so it needs the longer"):
        checks.check_frame_length({"male": 18, "female": 17}, f0)  # about the same frame for both voices
    checks.check_frame_length({"male": 30, "female": 12}, f0)  # 2.6 and 2.8 periods: still a fair reading
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(AssertionError, match="needs the longer frame"):
        checks.check_frame_length({"male": 15, "female": 16}, {"male": 100.0, "female": 240.0})
    with pytest.raises(AssertionError, match="one frame length"):
        checks.check_frame_length({"male": 25}, f0)
