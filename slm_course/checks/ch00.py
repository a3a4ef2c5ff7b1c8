"""Checks for notebook 00's exercises (solutions/00_audio_exercises.ipynb), and the chapter's quiz.

The exercises in the notebook: mu-law ids (exercise 1), an anti-aliasing filter and downsampling
(exercise 2), sub-sample pitch (exercise 3, with the integer-lag pitch it refines), the frame length
that resolves harmonics (exercise 4).
``QUIZ`` holds the chapter's quiz (:func:`slm_course.checks.show_quiz`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._common import _as_float, _as_tensor, _fail, _ok
from .quiz import Question

__all__ = [
    "check_autocorrelation_f0",
    "check_downsample",
    "check_fine_f0",
    "check_frame_length",
    "check_lowpass_fir",
    "check_mu_law_decode",
    "check_mu_law_encode",
    "check_parabolic_peak",
]

# ---------------------------------------------------------------------------------------------
# Exercise 3: the autocorrelation pitch, on synthetic frames and on the corpus
# ---------------------------------------------------------------------------------------------


def _harmonic_frame(
    f0: float, sr: int, n: int, n_harmonics: int, seed: int, amplitudes: tuple[float, ...] | None = None
) -> torch.Tensor:
    """A voiced-like frame: ``n_harmonics`` harmonics of ``f0`` with random phases, faint noise.

    Harmonic k has amplitude 1/k, or ``amplitudes[k - 1]`` if given (one per harmonic).
    """
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sr
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)[:, None]
    phases = 2 * math.pi * torch.rand(n_harmonics, 1, generator=gen, dtype=torch.float64)
    waves = torch.sin(2 * math.pi * f0 * k * t + phases)  # (n_harmonics, n)
    if amplitudes is None:
        x = (waves / k).sum(dim=0)
    else:
        if len(amplitudes) != n_harmonics:
            raise ValueError(f"{len(amplitudes)} amplitudes for {n_harmonics} harmonics")
        x = (waves * torch.tensor(amplitudes, dtype=torch.float64)[:, None]).sum(dim=0)
    x = x + 0.01 * torch.randn(n, generator=gen, dtype=torch.float64)
    return (0.5 * x / x.abs().max()).float()


def _f0_hint(got: float, expected: float, sr: int) -> str:
    lag = sr / expected
    if got >= sr / 3:
        return (
            " - that is the peak at a lag of (almost) 0, where every signal matches itself; search only lags "
            "between sr / fmax and sr / fmin"
        )
    # each explanation with how far off it is (relative); the nearest within its tolerance wins: at 16 kHz a
    # 220 Hz voice's period (72.7 samples) is close to a third of its F0 (73.3 Hz)
    period = min(abs(got - lag) / lag, abs(got - round(lag)) / lag if abs(got - round(lag)) <= 1 else 1.0)
    fits = {
        f" - that is the period in samples (sr / F0 = {lag:.1f}); convert the lag to Hz with sr / lag":
            (period, 0.03),
        **{f" - about 1/{k} of the true F0: you picked the peak at a multiple of the period; take the highest "
           "peak within the lag range (the first period scores highest)": (abs(got - expected / k) / (expected / k),
                                                                           0.04 * k) for k in (2, 3)},
        " - twice the true F0: the lag you picked is half the period; check the lag range and the peak search":
            (abs(got - 2 * expected) / (2 * expected), 0.03),
    }
    within = [(off, hint) for hint, (off, tolerance) in fits.items() if off <= tolerance]
    return min(within)[1] if within else ""


def check_autocorrelation_f0(fn: Callable[..., float], corpus: Any = None) -> None:
    """``fn(frame, sr, fmin=60.0, fmax=400.0)``: F0 in Hz of a voiced frame, from its autocorrelation.

    Synthetic harmonic frames (at 16 and 8 kHz) must come out within 3% of their F0. With a course
    ``corpus``, also one voiced frame of a male and of a female test speaker, within 5% of ``audio.pitch``.
    Messages name the learner's function (``estimate_f0_fine`` in exercise 3).
    """
    name = _name_of(fn)
    cases = [
        (220.0, 16000, 1),
        (100.0, 16000, 12),
        (150.0, 16000, 20),
        (310.0, 16000, 8),
        (120.0, 8000, 10),
        (75.0, 16000, 15),
    ]
    for f0, sr, n_harmonics in cases:
        frame = _harmonic_frame(f0, sr, int(0.04 * sr), n_harmonics, seed=int(f0))  # a 40 ms frame
        kind = "pure tone" if n_harmonics == 1 else f"voiced frame with {n_harmonics} harmonics"
        call = f"{name}({kind} at {f0:g} Hz, sr={sr})"
        got = _as_float(fn(frame.clone(), sr), call, "Hz", " (did you divide by a lag of 0?)")
        if abs(got - f0) > 0.03 * f0:
            if sr != 16000 and abs(got - f0 * 16000 / sr) <= 0.05 * f0 * 16000 / sr:
                hint = f" - did you use 16000 instead of the sr argument ({sr})?"
            else:
                hint = _f0_hint(got, f0, sr)
            _fail(f"{call} returned {got:.1f} Hz; expected {f0:g} Hz within 3%{hint}")
    said = ["synthetic voiced frames from 75 to 310 Hz at 8 and 16 kHz"]
    if corpus is not None:
        for gender, f0, got in _corpus_f0_cases(fn, corpus, name):
            said.append(f"a {gender} test speaker: {got:.0f} Hz (audio.pitch: {f0:.0f} Hz)")
    _ok(f"{name} is correct on " + "; ".join(said))


def _name_of(fn: Callable[..., Any], default: str = "estimate_f0_fine") -> str:
    """The name the learner gave ``fn`` (``default`` for a lambda or a callable object)."""
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else default


def _corpus_f0_cases(fn: Callable[..., float], corpus: Any, name: str) -> list[tuple[str, float, float]]:
    from slm_course import audio

    out = []
    for gender in ("male", "female"):
        utt = next(u for u in corpus.split("test") if u.gender == gender and u.duration > 1.5)
        wav, sr = corpus.wav(utt), corpus.sr
        _, f0s = audio.pitch(wav, sr)  # (frames,), NaN where unvoiced
        voiced = (~torch.isnan(f0s)).tolist()
        best, start = (0, 0), None  # the longest voiced run: its middle frame is clearly voiced
        for i, v in enumerate([*voiced, False]):
            if v and start is None:
                start = i
            elif not v and start is not None:
                best, start = max(best, (i - start, start)), None
        centre = best[1] + best[0] // 2
        hop, half = sr // 100, int(0.02 * sr)
        frame = wav[centre * hop - half : centre * hop + half]  # 40 ms around the frame's centre
        f0 = float(f0s[centre])
        call = f"{name} on a 40 ms voiced frame of {utt.id} ({gender} speaker {utt.speaker}, '{utt.text}')"
        got = _as_float(fn(frame.clone(), sr), call, "Hz", " (did you divide by a lag of 0?)")
        if abs(got - f0) > 0.05 * f0:
            _fail(f"{call} returned {got:.1f} Hz; audio.pitch finds {f0:.1f} Hz there{_f0_hint(got, f0, sr)}")
        out.append((gender, f0, got))
    return out


# ---------------------------------------------------------------------------------------------
# Exercise 1: mu-law, the first audio tokenizer
# ---------------------------------------------------------------------------------------------


def _mu_law_reference(x: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Mu-law ids as ``torchaudio.functional.mu_law_encoding`` computes them (round to the nearest level)."""
    import torchaudio

    return torchaudio.functional.mu_law_encoding(x.to(torch.float64), n_levels)


def _test_signal(n: int = 2000) -> torch.Tensor:
    """Samples spread over [-1, 1], most of them small, as in speech; -1, 0 and 1 included."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen, dtype=torch.float64) * 0.1
    x = x.clamp(-1, 1)
    x[:3] = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    return x


def check_mu_law_encode(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(wav, n_levels)``: integer ids 0..n_levels-1 of mu-law companded samples (as torchaudio's)."""
    x = _test_signal()
    for n_levels in (256, 16):
        mu = n_levels - 1
        call = f"mu_law_encode(wav, n_levels={n_levels})"
        got = fn(x.clone(), n_levels)
        if not isinstance(got, torch.Tensor):
            _fail(f"{call} returned {type(got).__name__}; return a torch.Tensor of integer ids")
        if tuple(got.shape) != tuple(x.shape):
            _fail(f"{call} returned shape {tuple(got.shape)}; expected one id per sample, {tuple(x.shape)}")
        if got.is_floating_point() or got.is_complex():
            _fail(
                f"{call} returned a {got.dtype} tensor; ids are integers: round, then .long() "
                "(a language model looks ids up in an embedding table)"
            )
        expected = _mu_law_reference(x, n_levels)
        got = got.long()
        if int(got.min()) < 0 or int(got.max()) > mu:
            _fail(
                f"{call} returned ids from {int(got.min())} to {int(got.max())}; they must lie in 0..{mu}: map the "
                f"companded value y in [-1, 1] to (y + 1) / 2 * {mu}, then round"
            )
        wrong = (got - expected).abs()
        if int(wrong.max()) <= 1 and float((wrong > 0).double().mean()) <= 0.01:
            continue
        linear = ((x + 1) / 2 * mu + 0.5).long()
        if float((got - linear).abs().double().mean()) < 0.02:
            _fail(
                f"{call} quantised the samples linearly (equal steps in amplitude); mu-law first compands them: "
                f"y = sign(x) * log(1 + mu |x|) / log(1 + mu) with mu = {mu}, so that small samples, the "
                "commonest in speech, get finer steps"
            )
        if float((got == expected - 1).double().mean()) > 0.2 and int((got - expected).max()) <= 0:
            _fail(
                f"{call} is often 1 below the expected id: you truncated (floor) instead of rounding to the "
                "nearest level; add 0.5 before taking the integer part, or use torch.round"
            )
        i = int(wrong.argmax())
        _fail(
            f"{call}: sample {float(x[i]):+.4f} got id {int(got[i])}, expected {int(expected[i])} "
            f"(= round((y + 1) / 2 * {mu}) with y = sign(x) * log(1 + {mu} |x|) / log(1 + {mu}))"
        )
    _ok(
        "mu_law_encode matches torchaudio's mu_law_encoding: 0.0 -> id "
        f"{int(_mu_law_reference(torch.zeros(1), 256))}, 0.01 -> {int(_mu_law_reference(torch.tensor([0.01]), 256))}, "
        f"0.5 -> {int(_mu_law_reference(torch.tensor([0.5]), 256))} of 0..255"
    )


def check_mu_law_decode(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(ids, n_levels)``: samples in [-1, 1] from mu-law ids, the inverse of the companding (as torchaudio's)."""
    import torchaudio

    for n_levels in (256, 16):
        ids = torch.arange(n_levels)
        call = f"mu_law_decode(ids 0..{n_levels - 1}, n_levels={n_levels})"
        got = _as_tensor(fn(ids.clone(), n_levels), call, (n_levels,))
        expected = torchaudio.functional.mu_law_decoding(ids, n_levels).to(torch.float64)
        if torch.allclose(got, expected, atol=1e-4):
            continue
        mu = n_levels - 1
        y = 2 * ids.double() / mu - 1  # the companded values
        if torch.allclose(got, y, atol=1e-4):
            _fail(
                f"{call} returned the companded values y = 2 id / {mu} - 1 without expanding them; invert the "
                f"log too: x = sign(y) * ((1 + {mu}) ** |y| - 1) / {mu}"
            )
        if float(got.abs().max()) > 1.5:
            _fail(
                f"{call} returned values up to {float(got.abs().max()):.3g}; samples lie in [-1, 1]: first map "
                f"the id back to y = 2 id / {mu} - 1 in [-1, 1], then expand x = sign(y) ((1 + mu) ** |y| - 1) / mu"
            )
        k = int((got - expected).abs().argmax())
        _fail(
            f"{call}: id {k} gave {float(got[k]):+.5f}, expected {float(expected[k]):+.5f} "
            f"(y = 2 id / {mu} - 1, then x = sign(y) ((1 + {mu}) ** |y| - 1) / {mu})"
        )
    steps = torch.diff(torchaudio.functional.mu_law_decoding(torch.arange(256), 256))
    _ok(
        "mu_law_decode matches torchaudio's mu_law_decoding: the 256 levels are "
        f"{float(steps.min()):.5f} apart near 0 and {float(steps.max()):.4f} apart near +-1"
    )


# ---------------------------------------------------------------------------------------------
# Exercise 2: an anti-aliasing filter, and downsampling with it
# ---------------------------------------------------------------------------------------------


def _firwin(n_taps: int, cutoff: float, sr: float, window: str = "hann") -> torch.Tensor:
    """The windowed-sinc low-pass of ``scipy.signal.firwin`` (unit gain at 0 Hz)."""
    from scipy.signal import firwin

    return torch.from_numpy(firwin(n_taps, cutoff, window=window, fs=sr)).to(torch.float64)


def _gain_at(h: torch.Tensor, f: float, sr: float) -> float:
    """``|H(f)|`` of the FIR filter ``h``."""
    n = torch.arange(len(h), dtype=torch.float64)
    return float((h.double() * torch.exp(-2j * math.pi * f / sr * n)).sum().abs())


def check_lowpass_fir(fn: Callable[[float, int, int], torch.Tensor]) -> None:
    """``fn(cutoff, sr, n_taps)``: a Hann-windowed sinc low-pass, unit gain at 0 Hz, as ``scipy.signal.firwin``."""
    for n_taps, cutoff, sr in [(101, 4000.0, 16000), (63, 1000.0, 8000), (31, 2500.0, 16000)]:
        call = f"lowpass_fir(cutoff={cutoff:g}, sr={sr}, n_taps={n_taps})"
        got = _as_tensor(fn(cutoff, sr, n_taps), call, (n_taps,))
        expected = _firwin(n_taps, cutoff, sr)
        if torch.allclose(got, expected, atol=1e-6):
            continue
        dc = float(got.sum())
        if abs(dc - 1) > 1e-6 and torch.allclose(got / dc, expected, atol=1e-6):
            _fail(
                f"{call}: the right shape, but its taps sum to {dc:.6g}, so a constant signal comes out "
                f"{dc:.6g} times as loud; divide by h.sum() to make the gain at 0 Hz exactly 1"
            )
        if torch.allclose(got, _firwin(n_taps, cutoff, sr, window="boxcar"), atol=1e-6):
            _fail(
                f"{call} is a plain (unwindowed) sinc; multiply it by a symmetric Hann window, "
                "torch.hann_window(n_taps, periodic=False), before normalising: cutting the sinc off abruptly "
                "leaves ripples and lets about 5% of the stop band through"
            )
        n = torch.arange(n_taps, dtype=torch.float64) - (n_taps - 1) / 2
        periodic = torch.sinc(2 * cutoff / sr * n) * torch.hann_window(n_taps, periodic=True, dtype=torch.float64)
        if torch.allclose(got, periodic / periodic.sum(), atol=1e-6):
            _fail(
                f"{call} used the periodic Hann window; a filter wants the symmetric one, "
                "torch.hann_window(n_taps, periodic=False), which is 0 at both ends and keeps the filter symmetric"
            )
        if got.flip(0).sub(got).abs().max() > 1e-6:
            _fail(
                f"{call} is not symmetric about its middle tap; centre the sinc on (n_taps - 1) / 2: "
                "n = torch.arange(n_taps) - (n_taps - 1) / 2"
            )
        f_half = next((f for f in torch.linspace(0, sr / 2, 401).tolist() if _gain_at(got, f, sr) < 0.5), sr / 2)
        if f_half > 1.5 * cutoff:
            hint = (
                f"its gain falls to 0.5 only at {f_half:.0f} Hz, not at the cutoff {cutoff:g} Hz: the cutoff is too "
                "high (twice too high with sin(t) / t instead of torch.sinc). torch.sinc(t) = sin(pi t) / (pi t), "
                "so the sinc of a cutoff fc at rate sr is torch.sinc(2 * fc / sr * n)"
            )
        elif f_half < 0.7 * cutoff:
            hint = (
                f"its gain falls to 0.5 already at {f_half:.0f} Hz, not at the cutoff {cutoff:g} Hz: the cutoff is "
                "too low; torch.sinc(t) = sin(pi t) / (pi t), so use torch.sinc(2 * fc / sr * n)"
            )
        else:
            hint = "h[n] = sinc(2 fc / sr * n) * hann[n] for n centred on the middle tap, then h / h.sum()"
        k = int((got - expected).abs().argmax())
        _fail(f"{call}: tap {k} is {float(got[k]):.5f}, expected {float(expected[k]):.5f}; {hint}")
    h = _firwin(101, 4000.0, 16000)
    _ok(
        "lowpass_fir matches scipy.signal.firwin: with 101 taps at 16 kHz and a 4 kHz cutoff it passes "
        f"{_gain_at(h, 1000, 16000):.3f} of a 1 kHz tone and {_gain_at(h, 6000, 16000):.1e} of a 6 kHz one"
    )


def _downsample_reference(wav: torch.Tensor, sr: int, factor: int, n_taps: int) -> torch.Tensor:
    h = _firwin(n_taps, sr / (2 * factor), sr)
    y = torch.nn.functional.conv1d(wav.double()[None, None], h.flip(0)[None, None], padding=n_taps // 2)[0, 0]
    return y[::factor]


def check_downsample(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(wav, sr, factor, n_taps=101)``: low-pass at the new Nyquist frequency, then keep every factor-th sample."""
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(1601, generator=gen, dtype=torch.float64) * 0.1  # white noise: every frequency at once
    for sr, factor, n_taps in [(16000, 2, 101), (16000, 3, 61), (8000, 2, 31)]:
        n_out = -(-len(wav) // factor)  # ceil(T / factor): samples 0, factor, 2 factor, ...
        call = f"downsample(white noise of {len(wav)} samples, sr={sr}, factor={factor}, n_taps={n_taps})"
        got = fn(wav.clone(), sr, factor, n_taps)
        if isinstance(got, torch.Tensor) and got.ndim == 1 and len(got) != n_out:
            _fail(
                f"{call} returned {len(got)} samples; expected {n_out}, samples 0, {factor}, {2 * factor}, ... of "
                f"the filtered signal, which has as many samples as the input (convolve with padding n_taps // 2)"
            )
        got = _as_tensor(got, call, (n_out,))
        expected = _downsample_reference(wav, sr, factor, n_taps)
        if torch.allclose(got, expected, atol=1e-5):
            continue
        if torch.allclose(got, wav[::factor], atol=1e-6):
            _fail(
                f"{call} kept samples 0, {factor}, {2 * factor}, ... without filtering: everything between {sr // (2 * factor)} "
                f"and {sr // 2} Hz folds back onto the lower band (aliasing); low-pass at sr / (2 factor) first"
            )
        filtered = torch.nn.functional.conv1d(
            wav.double()[None, None], _firwin(n_taps, sr / (2 * factor), sr)[None, None]
        )[0, 0]  # no padding: delayed by (n_taps - 1) / 2 samples
        if len(filtered) >= 1 and torch.allclose(got[: len(filtered[::factor])], filtered[::factor], atol=1e-5):
            _fail(
                f"{call} is delayed by {(n_taps - 1) // 2} samples: a convolution without padding starts "
                "(n_taps - 1) / 2 samples late; pad n_taps // 2 samples on each side so output sample i lines "
                "up with input sample i"
            )
        for cutoff, why in [(sr / 2 / factor / 2, "half the new Nyquist frequency"), (sr / factor, "twice it")]:
            if torch.allclose(got, _downsample_reference_cut(wav, sr, factor, n_taps, cutoff), atol=1e-5):
                _fail(
                    f"{call} filtered at {cutoff:g} Hz, {why}; cut at the new Nyquist frequency, "
                    f"sr / (2 factor) = {sr / (2 * factor):g} Hz"
                )
        k = int((got - expected).abs().argmax())
        _fail(
            f"{call}: output sample {k} is {float(got[k]):+.5f}, expected {float(expected[k]):+.5f}; filter with "
            f"lowpass_fir(sr / (2 factor), sr, n_taps), centred (padding n_taps // 2), then keep [::factor]"
        )
    call = f"downsample(float32 white noise of {len(wav)} samples, sr=16000, factor=2)"
    try:  # audio is float32: taps built in float64 must be cast to it before the convolution
        got = fn(wav.float(), 16000, 2, 101)
    except RuntimeError as err:
        if "type" in str(err).lower():
            _fail(f"{call} raised '{str(err).splitlines()[0]}': the input is float32 and your taps are not; "
                  "cast the taps to wav.dtype (taps.to(wav.dtype)) before the convolution")
        raise
    if isinstance(got, torch.Tensor) and got.dtype != torch.float32:
        _fail(f"{call} returned {got.dtype}: audio in, audio of the same dtype out; cast the taps to wav.dtype "
              "(taps.to(wav.dtype)) rather than the audio to float64")
    got, expected = _as_tensor(got, call, (-(-len(wav) // 2),)), _downsample_reference(wav, 16000, 2, 101)
    if not torch.allclose(got, expected, atol=1e-4):
        _fail(f"{call} differs from the float64 result by up to {float((got - expected).abs().max()):.3g}: the "
              "same filter must work for float32 audio (cast the taps to wav.dtype)")
    t = torch.arange(16000, dtype=torch.float64) / 16000
    quiet = float(_downsample_reference(torch.sin(2 * math.pi * 7000 * t), 16000, 2, 101)[200:-200].abs().max())
    _ok(
        "downsample matches a centred windowed-sinc filter then [::factor]: a 7 kHz tone taken from 16 to 8 kHz "
        f"comes out at {20 * math.log10(quiet):.0f} dB instead of folding to 1 kHz at full loudness"
    )


def _downsample_reference_cut(wav: torch.Tensor, sr: int, factor: int, n_taps: int, cutoff: float) -> torch.Tensor:
    if cutoff >= sr / 2:
        return torch.full((-(-len(wav) // factor),), float("nan"), dtype=torch.float64)
    h = _firwin(n_taps, cutoff, sr)
    return torch.nn.functional.conv1d(wav.double()[None, None], h[None, None], padding=n_taps // 2)[0, 0][::factor]


# ---------------------------------------------------------------------------------------------
# Exercise 3: pitch to a fraction of a sample
# ---------------------------------------------------------------------------------------------


def check_parabolic_peak(fn: Callable[[torch.Tensor, int], float]) -> None:
    """``fn(y, k)``: the position of the vertex of the parabola through ``(k - 1, y[k - 1]), (k, y[k]), (k + 1, y[k + 1])``."""
    cases = [(10.3, 2.0, 10), (10.0, 1.0, 10), (5.45, 0.5, 5), (20.8, 3.0, 21), (7.0 - 0.3, 1.0, 7)]
    for vertex, curvature, k in cases:
        i = torch.arange(30, dtype=torch.float64)
        y = 5.0 - curvature * (i - vertex) ** 2  # a downward parabola with its top at `vertex`
        call = f"parabolic_peak(y, k={k}) for samples of a parabola whose top is at {vertex:g}"
        got = _as_float(fn(y.clone(), k), call)
        if abs(got - vertex) <= 1e-6:
            continue
        if abs(got - k) <= 1e-9:
            _fail(f"{call} returned k = {k} itself; return k plus the fractional offset of the parabola's top")
        if abs(got - (2 * k - vertex)) <= 1e-6:
            _fail(
                f"{call} returned {got:g}, the mirror image of {vertex:g} about k: the offset has the wrong sign; "
                "delta = 0.5 (y[k-1] - y[k+1]) / (y[k-1] - 2 y[k] + y[k+1])"
            )
        if abs(got - (vertex - k)) <= 1e-6:
            _fail(f"{call} returned {got:g}, only the offset from k; return k + offset = {vertex:g}")
        _fail(
            f"{call} returned {got:g}, expected {vertex:g}; fit a + b d + c d^2 through d = -1, 0, 1: "
            "the top is at d = 0.5 (y[k-1] - y[k+1]) / (y[k-1] - 2 y[k] + y[k+1])"
        )
    # a peak that is not a parabola: only the three samples k - 1, k, k + 1 may decide the answer
    i = torch.arange(30, dtype=torch.float64)
    y = torch.exp(-0.5 * ((i - 12.3) / 2) ** 2) + 0.3 * torch.exp(-0.5 * ((i - 15.0) / 3) ** 2)  # a lopsided bump
    k = int(y.argmax())
    a_, b_, c_ = float(y[k - 1]), float(y[k]), float(y[k + 1])
    want = k + 0.5 * (a_ - c_) / (a_ - 2 * b_ + c_)
    got = _as_float(fn(y.clone(), k), f"parabolic_peak(y, k={k}) for samples of a lopsided bump")
    if abs(got - want) > 1e-6:
        _fail(f"parabolic_peak(y, k={k}) for samples of a lopsided bump (not a parabola) returned {got:.4f}, expected "
              f"{want:.4f}: fit the parabola through the three samples k - 1, k and k + 1 only (not k, k + 1, k + 2, "
              "nor a fit over all of y): delta = 0.5 (y[k-1] - y[k+1]) / (y[k-1] - 2 y[k] + y[k+1])")
    _ok("parabolic_peak finds the top of a parabola from three samples around it, to a fraction of a sample")


_FINE_F0_CASES = (
    (390.0, 8000, 4),
    (345.0, 8000, 6),
    (265.0, 8000, 8),
    (310.0, 16000, 8),
    (370.0, 16000, 3),
    (142.0, 8000, 12),
    (100.0, 16000, 12),
)
_FINE_F0_DC = (265.0, 8000, 8, 1.0)  # a frame riding on a constant offset of 1.0 (twice its peak)
# A frame whose fundamental is nearly missing (26 dB below harmonic 3, the loudest), as a telephone line, which cuts
# below 300 Hz, leaves a low voice: the highest peak of the spectrum is a harmonic, but the waveform still repeats
# every 1 / F0 seconds, so the autocorrelation still peaks at the period.
_FINE_F0_WEAK_FUNDAMENTAL = (115.0, 8000, (0.05, 0.6, 1.0, 0.6, 0.3, 0.25, 0.2, 0.15, 0.1, 0.1))


def check_fine_f0(fn: Callable[..., float]) -> None:
    """``fn(frame, sr)``: F0 of a voiced frame from its autocorrelation peak, refined with a parabola; within 0.4%.

    One frame has a nearly missing fundamental and harmonic 3 as its loudest: a peak picked in the
    spectrum (the FFT, even refined with a parabola) lands on that harmonic, while the autocorrelation
    peaks at the period. The last frame carries a DC offset: without the mean removed, the
    autocorrelation gains a ramp ``offset**2 * (n - k)`` that tilts the parabola (and, if larger, moves
    the peak to the shortest lag).
    """
    name = _name_of(fn)
    worst_integer = 0.0
    for f0, sr, n_harmonics in _FINE_F0_CASES:
        frame = _harmonic_frame(f0, sr, int(0.04 * sr), n_harmonics, seed=int(f0))  # 40 ms
        call = f"{name}(voiced frame at {f0:g} Hz with {n_harmonics} harmonics, sr={sr})"
        got = _as_float(fn(frame.clone(), sr), call, "Hz", " (did you divide by a lag of 0?)")
        lag = sr / f0
        integer = [sr / math.floor(lag), sr / math.ceil(lag)]
        worst_integer = max(worst_integer, max(abs(g - f0) / f0 for g in integer))  # either whole lag next to it
        if abs(got - f0) <= 0.004 * f0:
            continue
        if any(abs(got - g) <= 1e-6 * g for g in integer):
            _fail(
                f"{call} returned {got:.2f} Hz = sr / {round(sr / got)}, a whole-sample lag; the true period "
                f"is {lag:.2f} samples: refine the peak's lag with parabolic_peak(r, lag) before sr / lag"
            )
        _fail(
            f"{call} returned {got:.2f} Hz; expected {f0:g} Hz within 0.4%{_f0_hint(got, f0, sr)} "
            "(refine the autocorrelation peak with parabolic_peak, then F0 = sr / refined lag)"
        )
    f0, sr, amplitudes = _FINE_F0_WEAK_FUNDAMENTAL
    frame = _harmonic_frame(f0, sr, int(0.04 * sr), len(amplitudes), seed=int(f0), amplitudes=amplitudes)
    loudest = 1 + max(range(len(amplitudes)), key=amplitudes.__getitem__)
    call = (
        f"{name}(voiced frame at {f0:g} Hz with a nearly missing fundamental, harmonic {loudest} the loudest, sr={sr})"
    )
    got = _as_float(fn(frame.clone(), sr), call, "Hz", " (did you divide by a lag of 0?)")
    if abs(got - f0) > 0.004 * f0:
        harmonic = round(got / f0)
        if 2 <= harmonic <= len(amplitudes) and abs(got - harmonic * f0) <= 0.03 * harmonic * f0:
            _fail(
                f"{call} returned {got:.1f} Hz, {harmonic} x the true F0: harmonic {harmonic}, not the fundamental. "
                "In this frame the fundamental is nearly missing (a telephone line cuts below 300 Hz; a formant "
                "can lift a higher harmonic above it), so the highest peak of the spectrum is a harmonic; the "
                "waveform still repeats every 1 / F0 seconds, so the autocorrelation peaks at the period. If you "
                "picked a peak of the FFT, use the autocorrelation as the exercise asks: r[k] = sum_n x[n] x[n + k], "
                "its highest peak between the lags sr / fmax and sr / fmin, refined with parabolic_peak, then "
                "F0 = sr / lag"
            )
        _fail(
            f"{call} returned {got:.2f} Hz; expected {f0:g} Hz within 0.4%{_f0_hint(got, f0, sr)} "
            "(the autocorrelation peaks at the period even when the fundamental is weak)"
        )
    f0, sr, n_harmonics, offset = _FINE_F0_DC
    frame = _harmonic_frame(f0, sr, int(0.04 * sr), n_harmonics, seed=int(f0)) + offset
    call = f"{name}(voiced frame at {f0:g} Hz with {n_harmonics} harmonics plus a DC offset of {offset:g}, sr={sr})"
    got = _as_float(fn(frame.clone(), sr), call, "Hz", " (did you divide by a lag of 0?)")
    if abs(got - f0) > 0.004 * f0:
        centred = _as_float(fn(frame - frame.mean(), sr), f"{name} on the same frame with its mean removed", "Hz")
        if abs(centred - f0) <= 0.004 * f0:
            _fail(
                f"{call} returned {got:.2f} Hz ({100 * (got - f0) / f0:+.1f}%), but {centred:.2f} Hz once the "
                "frame's mean is removed: subtract frame.mean() before the autocorrelation. A constant offset "
                "(a microphone's or an ADC's) adds offset**2 * (n - k) to r[k], a ramp that tilts the peak"
            )
        _fail(f"{call} returned {got:.2f} Hz; expected {f0:g} Hz within 0.4%{_f0_hint(got, f0, sr)}")
    _ok(
        f"{name} is within 0.4% on voiced frames from 100 to 390 Hz at 8 and 16 kHz, where the whole-sample "
        f"lags next to the period are up to {100 * worst_integer:.1f}% off, on a frame whose fundamental is nearly missing, and on a "
        "frame with a DC offset"
    )


# ---------------------------------------------------------------------------------------------
# The quiz
# ---------------------------------------------------------------------------------------------

QUIZ = (
    Question(
        "A phone assistant transcribes your spoken question with a speech recogniser, has a text LLM write the "
        "reply, and reads the reply aloud with a speech synthesiser. Where does it sit on the map?",
        choices=(
            "a) a pure speech LM, p(speech): speech goes in and speech comes out",
            "b) a speech+text LM, p(text, speech): it handles both modalities",
            "c) a speech-aware text LM, p(text | speech, text): its LLM answers speech",
            "d) beside the families: a cascade, whose LLM sees only the transcript",
        ),
        answer="d",
        hint="the map at the top of notebook 00: what each family's model generates, what it is given, and what "
        "stands beside the families",
    ),
    Question(
        "AudioLM continues a spoken prompt with more speech. Which criterion of a universal SLM does it meet?",
        choices=(
            "a) speech in and speech out",
            "b) any spoken-language task",
            "c) it follows instructions in natural language",
            "d) none of them",
        ),
        answer="a",
        hint="the three criteria under the map in notebook 00",
    ),
    Question(
        "A 6000 Hz tone is sampled at 8000 Hz with no anti-aliasing filter. At what frequency (Hz) is it heard?",
        answer=2000,
        tolerance=1,
        hint="notebook 00, section 1: a tone folds back to |f - k sr| for the nearest integer k",
    ),
    Question(
        "The MFCC cell keeps 13 of the 40 DCT coefficients of a log-mel frame. If it kept all 40, what would the "
        "inverse DCT of them give back?",
        choices=(
            "a) the same smoothed envelope, without the fine detail of each band",
            "b) exactly the 40-band log-mel frame",
            "c) the waveform of the frame",
            "d) the pitch contour",
        ),
        answer="b",
        hint="notebook 00, section 3: the DCT basis is orthonormal (40 x 40 it is a rotation)",
    ),
    Question(
        "Subtracting each speaker's mean feature vector made the gender probe worse and the style probe better. Why?",
        choices=(
            "a) centring divides every feature by the speaker's spread, which rescales the pitch features that "
            "the gender probe relies on",
            "b) the held-out speakers were centred with their own mean, which leaks their style labels into the "
            "test features",
            "c) gender is constant across a speaker's utterances, so the speaker's mean holds all of it; style "
            "varies around that mean",
            "d) gender is carried by the log-mel means, which centring removes, while style is carried by the "
            "pitch-range features, which it keeps",
        ),
        answer="c",
        hint="notebook 00, section 6: the probe with and without centring per speaker",
    ),
)


# ---------------------------------------------------------------------------------------------
# Exercise 4: how long a frame must be to resolve the harmonics
# ---------------------------------------------------------------------------------------------


def check_frame_length(shortest_ms: dict[str, float], f0: dict[str, float]) -> None:
    """``shortest_ms[voice]``: the shortest STFT frame (ms) that still separates that voice's harmonics.

    A Hann window of ``L`` seconds smears each harmonic over about ``+-2 / L`` Hz (its main lobe), and
    the harmonics are ``F0`` apart, so they separate once ``L >= 2 / F0``: about two pitch periods.
    Answers between 1.5 and 3 periods pass: they are read off a plot. When one voice is more than twice
    as high as the other, the low voice's frame must be at least 1.5 times the high voice's: the frame
    scales with the period.
    """
    if not isinstance(shortest_ms, dict) or set(shortest_ms) != set(f0):
        _fail(f"give one frame length (ms) per voice as a dict with the keys {sorted(f0)}; got {shortest_ms!r}")
    got_ms = {voice: _as_float(shortest_ms[voice], f"shortest_frame_ms[{voice!r}]") for voice in f0}
    for voice, got in got_ms.items():
        if got < 1:
            _fail(
                f"shortest_frame_ms[{voice!r}] = {got:g}: that looks like seconds; answer in milliseconds "
                f"(the frames in the plots are 4, 25 and 64 ms)"
            )
    for voice, pitch_hz in f0.items():
        got, period_ms = got_ms[voice], 1000 / pitch_hz
        periods = got / period_ms
        if periods < 1.5:
            _fail(
                f"{voice}: {got:g} ms is {periods:.1f} pitch periods ({period_ms:.1f} ms each at {pitch_hz:.0f} Hz); "
                "that is too short to separate harmonics that lie F0 apart: a Hann window of L seconds smears "
                "each one over about +-2 / L Hz, so the frame needs about two periods. Look again at the plots "
                "with a few lengths between 5 and 40 ms"
            )
    low, high = min(f0, key=f0.get), max(f0, key=f0.get)
    pitch_ratio, frame_ratio = f0[high] / f0[low], got_ms[low] / got_ms[high]
    if frame_ratio < 1 or (pitch_ratio > 2 and frame_ratio < 1.5):
        _fail(
            f"the {low} voice ({f0[low]:.0f} Hz) got {got_ms[low]:g} ms and the {high} one ({f0[high]:.0f} Hz) "
            f"{got_ms[high]:g} ms, {frame_ratio:.2f} times as long; but the {low} voice's harmonics are "
            f"{pitch_ratio:.1f} times closer together, so it needs the longer frame, about {pitch_ratio:.1f} times "
            f"as long (the frame scales with the pitch period: {1000 / f0[low]:.1f} ms against "
            f"{1000 / f0[high]:.1f} ms). Read each voice's plots again"
        )
    said = []
    for voice, pitch_hz in f0.items():
        got, period_ms = got_ms[voice], 1000 / pitch_hz
        periods = got / period_ms
        if periods > 3:
            _fail(
                f"{voice}: {got:g} ms is {periods:.1f} pitch periods; the harmonics separate well before that "
                f"(about 2 periods, {2 * period_ms:.0f} ms). Try shorter frames: the shortest that still shows "
                "the stripes is the answer"
            )
        said.append(f"{voice} {pitch_hz:.0f} Hz: {got:g} ms = {periods:.1f} periods")
    _ok(
        "; ".join(said) + ". Harmonics F0 apart separate once the window's main lobe (+-2 / L Hz) is narrower: "
        "L >= 2 / F0, two pitch periods; 25 ms serves most voices and stays shorter than a phone"
    )
