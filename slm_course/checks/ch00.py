"""Checks for notebook 00's exercises (solutions/00_audio_exercises.ipynb)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._common import _as_float, _as_tensor, _fail, _ok

__all__ = ["check_aliased_frequency", "check_autocorrelation_f0", "check_frames", "check_hz_to_mel", "check_mel_filterbank", "check_power_spectrum"]

# ---------------------------------------------------------------------------------------------
# Exercise 1: aliasing
# ---------------------------------------------------------------------------------------------


def check_aliased_frequency(fn: Callable[[float, int], float]) -> None:
    """``fn(f, sr)``: the frequency (0..sr/2 Hz) at which a pure tone of ``f`` Hz is heard after sampling at ``sr``."""
    cases = [
        (440, 16000),
        (7000, 16000),
        (9000, 16000),
        (15000, 16000),
        (17000, 16000),
        (25000, 16000),
        (16000, 16000),
        (1000, 8000),
        (5000, 8000),
        (12000, 8000),
        (8000, 16000),
    ]
    for f, sr in cases:
        nyquist = sr / 2
        expected = abs(f - sr * round(f / sr))  # fold into 0..sr/2
        got = _as_float(fn(f, sr), f"aliased_frequency({f}, {sr})")
        if abs(got - expected) <= 1e-3:
            continue
        said = f"for f={f} Hz at sr={sr} you returned {got:g}"
        if f <= nyquist:
            _fail(
                f"{said}; a tone below the Nyquist frequency ({nyquist:g} Hz) is kept as it is: expected {expected:g}"
            )
        if abs(got - f) <= 1e-3:
            _fail(f"{said}; a tone above the Nyquist frequency ({nyquist:g} Hz) folds back: expected {expected:g}")
        if got < 0:
            _fail(
                f"{said}; a frequency here is never negative: a tone at {got:g} Hz sounds the same as one at "
                f"{-got:g} Hz, but the answer is {expected:g} (fold f into 0..sr/2: subtract the nearest multiple "
                f"of sr, then take the absolute value)"
            )
        if got > nyquist:
            _fail(
                f"{said}, above the Nyquist frequency sr/2 = {nyquist:g} Hz, which a signal sampled at {sr} Hz "
                f"cannot hold; it folds further: expected {expected:g} (subtract the nearest multiple of sr, "
                "then take the absolute value)"
            )
        _fail(f"{said}; expected {expected:g} (subtract the nearest multiple of sr, then take the absolute value)")
    _ok("aliased_frequency is correct: e.g. 9000 Hz sampled at 16 kHz is heard at 7000 Hz, 17000 Hz at 1000 Hz")


# ---------------------------------------------------------------------------------------------
# Exercise 2: the mel scale
# ---------------------------------------------------------------------------------------------


def _htk_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def check_hz_to_mel(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(f)``: HTK mels of a tensor of frequencies in Hz, same shape: ``2595 * log10(1 + f / 700)``."""
    freqs = torch.tensor([0.0, 100.0, 700.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    got = _as_tensor(fn(freqs.clone()), "hz_to_mel(tensor of 6 frequencies)", (6,))
    expected = _htk_mel(freqs)
    if not bool(torch.isfinite(got).all()):
        _fail(
            f"hz_to_mel returned {got.tolist()} for {freqs.tolist()} Hz, with inf or NaN: 0 Hz must give 0 mel "
            "(did you forget the '1 +' inside the log? log10(0) is -inf)"
        )
    if torch.allclose(got, expected, rtol=1e-4, atol=1e-3):
        _ok(
            "hz_to_mel is correct: 0, 700, 1000 and 8000 Hz give "
            + ", ".join(f"{float(expected[i]):.1f}" for i in (0, 2, 3))
            + f" and {float(expected[5]):.1f} mel"
        )
        return
    ratio = got[1:] / expected[1:]
    if torch.allclose(ratio, torch.full_like(ratio, math.log(10)), rtol=1e-3):
        _fail(
            f"hz_to_mel(1000 Hz) returned {float(got[3]):.1f} mel, {math.log(10):.3f} times too large: the HTK "
            "formula 2595 * log10(1 + f / 700) uses log base 10 (with the natural log the factor is 1127)"
        )
    if torch.allclose(ratio, torch.full_like(ratio, 1 / math.log(10)), rtol=1e-3):
        _fail(
            f"hz_to_mel(1000 Hz) returned {float(got[3]):.1f} mel, {math.log(10):.3f} times too small: with the "
            "natural log the factor is 1127, with log10 it is 2595"
        )
    if abs(float(got[0])) > 1e-3:
        _fail(
            f"hz_to_mel(0 Hz) returned {float(got[0]):.1f}; the mel scale starts at 0 mel for 0 Hz: "
            "m = 2595 * log10(1 + f / 700)"
        )
    _fail(
        f"hz_to_mel(1000 Hz) returned {float(got[3]):.1f} mel; the HTK mel scale puts 1000 Hz at about 1000 mel "
        f"(and 700 Hz at {float(expected[2]):.1f}): m = 2595 * log10(1 + f / 700)"
    )


def check_mel_filterbank(fn: Callable[[int, int, int], torch.Tensor]) -> None:
    """``fn(n_freqs, n_mels, sr)``: triangular HTK mel filters ``(n_freqs, n_mels)``, as in torchaudio.

    Compared with ``torchaudio.functional.melscale_fbanks(n_freqs, 0, sr / 2, n_mels, sr, norm=None, mel_scale="htk")``.
    """
    import torchaudio

    for n_freqs, n_mels, sr in [(257, 40, 16000), (201, 23, 8000), (513, 80, 16000)]:
        call = f"mel_filterbank(n_freqs={n_freqs}, n_mels={n_mels}, sr={sr})"
        got = _as_tensor(fn(n_freqs, n_mels, sr), call, (n_freqs, n_mels))
        expected = torchaudio.functional.melscale_fbanks(
            n_freqs, 0.0, sr / 2, n_mels, sr, norm=None, mel_scale="htk"
        ).to(torch.float64)  # (n_freqs, n_mels)
        if torch.allclose(got, expected, atol=1e-4):
            continue
        bin_hz = (sr / 2) / (n_freqs - 1)
        peaks, want = got.argmax(dim=0), expected.argmax(dim=0)  # (n_mels,) frequency bin of each filter's top
        spacing = torch.diff(peaks.double())
        if (
            (peaks != want).any()
            and float(spacing[1:].std()) < 1.5
            and float(spacing[-5:].mean()) < 0.8 * float(torch.diff(want.double())[-5:].mean())
        ):
            _fail(
                f"{call}: your filter centres are equally spaced in Hz "
                f"(every {float(spacing.mean()) * bin_hz:.0f} Hz); "
                "on the mel scale they must be equally spaced in mel, so dense at low and sparse at high "
                "frequencies: take n_mels + 2 points equally spaced from hz_to_mel(0) to hz_to_mel(sr / 2), "
                "convert them back to Hz, and use points k, k+1, k+2 as the feet and top of filter k"
            )
        if (peaks != want).any():
            k = int((peaks != want).nonzero()[0])
            _fail(
                f"{call}: filter {k} peaks at {float(peaks[k]) * bin_hz:.0f} Hz (bin {int(peaks[k])}) but should peak "
                f"at {float(want[k]) * bin_hz:.0f} Hz (bin {int(want[k])}); the centres are points 1..n_mels of "
                "n_mels + 2 points equally spaced in mel from 0 to hz_to_mel(sr / 2)"
            )
        scale = got.max(dim=0).values / expected.max(dim=0).values  # (n_mels,) each filter's height vs torchaudio's
        if not torch.allclose(scale, torch.ones_like(scale), atol=0.02) and torch.allclose(
            got, expected * scale, atol=1e-4 * float(got.abs().max())
        ):
            _fail(
                f"{call}: your filters have the right shape but are scaled by {float(scale.min()):.3g} to "
                f"{float(scale.max()):.3g}; each triangle should rise to 1 at its centre, with no normalisation "
                "by its area or width (torchaudio's norm=None)"
            )
        err = (got - expected).abs()
        j, k = divmod(int(err.argmax()), n_mels)
        _fail(
            f"{call}: filter {k} at {j * bin_hz:.0f} Hz (bin {j}) is {float(got[j, k]):.4f}, expected "
            f"{float(expected[j, k]):.4f}; each filter rises linearly from 0 at the centre below to 1 at its own "
            "centre and falls to 0 at the centre above, measured at the bin frequencies "
            "torch.linspace(0, sr / 2, n_freqs), and is 0 elsewhere (never negative)"
        )
    _ok("mel_filterbank matches torchaudio.functional.melscale_fbanks (HTK scale, unnormalised triangles)")


# ---------------------------------------------------------------------------------------------
# Exercise 3: frames and the power spectrum
# ---------------------------------------------------------------------------------------------


def check_frames(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> None:
    """``fn(wav, win, hop)``: the frames ``wav[i * hop : i * hop + win]`` as rows, ``(1 + (T - win) // hop, win)``."""
    for n_samples, win, hop in [(1000, 400, 160), (100, 25, 10), (400, 400, 160), (1600, 400, 400)]:
        wav = torch.arange(
            n_samples, dtype=torch.float32
        )  # sample i holds the value i: easy to see where a frame starts
        n_frames = 1 + (n_samples - win) // hop
        call = f"frames(wav of {n_samples} samples, win={win}, hop={hop})"
        got = fn(wav.clone(), win, hop)
        if isinstance(got, torch.Tensor) and got.ndim == 2 and got.shape[1] == win and got.shape[0] != n_frames:
            more = got.shape[0] - n_frames
            why = (
                "a frame that would run past the end of the signal is dropped (no padding)"
                if more > 0
                else "frames start at samples 0, hop, 2 * hop, ... for as long as start + win <= T "
                "(the last one may end exactly at T)"
            )
            _fail(f"{call} gave {got.shape[0]} frames; expected 1 + (T - win) // hop = {n_frames}: {why}")
        got = _as_tensor(got, call, (n_frames, win))
        for i in range(n_frames):
            row = got[i]
            if not torch.equal(row, wav[i * hop : i * hop + win].double()):
                start = int(row[0])
                _fail(
                    f"{call}: frame {i} starts at sample {start} and ends at {int(row[-1])}; it should be "
                    f"wav[{i * hop}:{i * hop + win}], from sample i * hop = {i * hop} to {i * hop + win - 1}"
                )
    _ok("frames is correct: frame i is wav[i * hop : i * hop + win], 1 + (T - win) // hop frames")


def check_power_spectrum(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(frames, n_fft)``: power spectra ``|rfft(frame * hann, n_fft)|**2``, ``(n_frames, n_fft // 2 + 1)``.

    Compared with ``torch.stft(..., center=False)`` on the same samples.
    """
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(4000, generator=gen)
    for win, hop, n_fft in [(400, 160, 512), (256, 128, 256)]:
        frames = wav.unfold(0, win, hop).clone()  # (n_frames, win)
        n_frames, n_bins = frames.shape[0], n_fft // 2 + 1
        call = f"power_spectrum(frames of shape {tuple(frames.shape)}, n_fft={n_fft})"
        got = fn(frames.clone(), n_fft)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (n_frames, n_fft):
            _fail(
                f"{call} returned all {n_fft} FFT bins; the spectrum of a real signal is symmetric, so keep the "
                f"{n_bins} bins from 0 Hz to sr/2 (torch.fft.rfft does this)"
            )
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (n_frames, win // 2 + 1) and win != n_fft:
            _fail(
                f"{call} returned {win // 2 + 1} bins per frame, the FFT of the {win}-sample frame; zero-pad each "
                f"frame to n_fft={n_fft} samples first (torch.fft.rfft(x, n=n_fft)), giving {n_bins} bins"
            )
        got = _as_tensor(got, call, (n_frames, n_bins))
        # torch.stft centres a window shorter than n_fft in the n_fft-sample frame: pad so its frames are ours.
        pad = (n_fft - win) // 2
        ref = torch.stft(
            torch.nn.functional.pad(wav, (pad, n_fft - win - pad)),
            n_fft,
            hop_length=hop,
            win_length=win,
            window=torch.hann_window(win),
            center=False,
            return_complex=True,
        )  # (n_bins, n_frames)
        expected = ref.abs().pow(2).T.double()  # (n_frames, n_bins)
        scale = float(expected.max())

        def close(a: torch.Tensor, b: torch.Tensor = expected, tol: float = 1e-4 * scale) -> bool:
            return bool(((a - b).abs() <= tol).all())

        if close(got):
            continue
        plain = torch.fft.rfft(frames, n=n_fft).abs().pow(2).double()
        symmetric = torch.fft.rfft(frames * torch.hann_window(win, periodic=False), n=n_fft).abs().pow(2).double()
        if close(got, expected.sqrt()):
            _fail(f"{call} returned the magnitude |X|; the power spectrum is its square, |X| ** 2")
        if close(got, plain):
            _fail(
                f"{call} matches the spectrum of the frames without a window; multiply each frame by "
                "torch.hann_window(win) before the FFT (the window tapers the frame's edges to 0)"
            )
        if close(got, symmetric):
            _fail(
                f"{call} used a symmetric Hann window; torch.stft uses the periodic one, torch.hann_window(win) "
                "(periodic=True, the default)"
            )
        if close(got * n_fft, expected) or close(got * n_fft**2, expected):
            _fail(f"{call} is scaled down by n_fft; leave the FFT unnormalised (torch.fft.rfft's default norm)")
        err = (got - expected).abs()
        i, k = divmod(int(err.argmax()), n_bins)
        _fail(
            f"{call}: frame {i}, bin {k} is {float(got[i, k]):.4g}, expected {float(expected[i, k]):.4g} "
            "(torch.stft's power); compute torch.fft.rfft(frames * torch.hann_window(win), n=n_fft).abs() ** 2"
        )
    _ok("power_spectrum matches torch.stft's power (periodic Hann window, zero-padded to n_fft, |X|**2)")


# ---------------------------------------------------------------------------------------------
# Exercise 4: pitch by autocorrelation
# ---------------------------------------------------------------------------------------------


def _harmonic_frame(f0: float, sr: int, n: int, n_harmonics: int, seed: int) -> torch.Tensor:
    """A voiced-like frame: ``n_harmonics`` harmonics of ``f0`` with 1/k amplitudes and random phases, faint noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sr
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)[:, None]
    phases = 2 * math.pi * torch.rand(n_harmonics, 1, generator=gen, dtype=torch.float64)
    x = (torch.sin(2 * math.pi * f0 * k * t + phases) / k).sum(dim=0)
    x = x + 0.01 * torch.randn(n, generator=gen, dtype=torch.float64)
    return (0.5 * x / x.abs().max()).float()


def _f0_hint(got: float, expected: float, sr: int) -> str:
    lag = sr / expected
    if abs(got - lag) <= 0.03 * lag or abs(got - round(lag)) <= 1:
        return f" - that is the period in samples (sr / F0 = {lag:.1f}); convert the lag to Hz with sr / lag"
    if got >= sr / 3:
        return (
            " - that is the peak at a lag of (almost) 0, where every signal matches itself; search only lags "
            "between sr / fmax and sr / fmin"
        )
    if abs(got - expected / 2) <= 0.04 * expected or abs(got - expected / 3) <= 0.04 * expected:
        return (
            f" - about 1/{round(expected / got)} of the true F0: you picked the peak at a multiple of the period; "
            "take the highest peak within the lag range (the first period scores highest)"
        )
    if abs(got - 2 * expected) <= 0.06 * expected:
        return " - twice the true F0: the lag you picked is half the period; check the lag range and the peak search"
    return ""


def check_autocorrelation_f0(fn: Callable[..., float], corpus: Any = None) -> None:
    """``fn(frame, sr, fmin=60.0, fmax=400.0)``: F0 in Hz of a voiced frame, from its autocorrelation.

    Synthetic harmonic frames (at 16 and 8 kHz) must come out within 3% of their F0. With a course
    ``corpus``, also one voiced frame of a male and of a female test speaker, within 5% of ``audio.pitch``.
    """
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
        call = f"estimate_f0({kind} at {f0:g} Hz, sr={sr})"
        got = _as_float(fn(frame.clone(), sr), call)
        if abs(got - f0) > 0.03 * f0:
            if sr != 16000 and abs(got - f0 * 16000 / sr) <= 0.05 * f0 * 16000 / sr:
                hint = f" - did you use 16000 instead of the sr argument ({sr})?"
            else:
                hint = _f0_hint(got, f0, sr)
            _fail(f"{call} returned {got:.1f} Hz; expected {f0:g} Hz within 3%{hint}")
    said = ["synthetic voiced frames from 75 to 310 Hz at 8 and 16 kHz"]
    if corpus is not None:
        for gender, f0, got in _corpus_f0_cases(fn, corpus):
            said.append(f"a {gender} test speaker: {got:.0f} Hz (audio.pitch: {f0:.0f} Hz)")
    _ok("estimate_f0 is correct on " + "; ".join(said))


def _corpus_f0_cases(fn: Callable[..., float], corpus: Any) -> list[tuple[str, float, float]]:
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
        call = f"estimate_f0 on a 40 ms voiced frame of {utt.id} ({gender} speaker {utt.speaker}, '{utt.text}')"
        got = _as_float(fn(frame.clone(), sr), call)
        if abs(got - f0) > 0.05 * f0:
            _fail(f"{call} returned {got:.1f} Hz; audio.pitch finds {f0:.1f} Hz there{_f0_hint(got, f0, sr)}")
        out.append((gender, f0, got))
    return out
