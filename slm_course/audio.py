"""Audio as numbers: loading, checking, resampling, and the classic features (notebook 00).

A waveform here is always a 1-D float32 tensor ``wav`` of shape ``(T,)`` in [-1, 1] together with its
sampling rate ``sr`` in Hz (16 kHz by default, :data:`SR`). Every public function first runs
:func:`check_wav`, which turns the usual mistakes (int16 samples, stereo, NaNs, an empty signal, the
wrong rate) into an error that says what was wrong and what to do. Silence is a signal like any
other (a pause, eSpeak's digital zeros): features, tokens and transcripts are defined on it; only a
measure that divides by the signal's energy (SI-SNR's reference) refuses it.

Features are frame-based with a 25 ms Hann window every 10 ms (100 frames per second):

- :func:`stft` / :func:`spectrogram` - complex and power short-time Fourier transform ``(F, frames)``
- :func:`log_mel` - log mel filterbank energies ``(n_mels, frames)``
- :func:`mfcc` - cepstral coefficients ``(n_mfcc, frames)``
- :func:`pitch` - fundamental frequency F0 per frame, NaN where unvoiced or silent

>>> wav = torch.sin(2 * math.pi * 440 * torch.arange(SR) / SR)  # 1 s of A4
>>> log_mel(wav).shape
torch.Size([80, 101])
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

SR = 16000  # default sampling rate of the course (Hz)

__all__ = [
    "SR",
    "add_noise_floor",
    "check_wav",
    "frame_times",
    "load",
    "log_mel",
    "mfcc",
    "pitch",
    "resample",
    "save",
    "spectrogram",
    "stft",
    "to_mono",
]

_MAX_CHANNELS = 8  # a 2-D array with a side this small is read as (channels, T) or (T, channels)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _check_sr(sr: object, name: str = "sr") -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"{name} must be a positive integer number of samples per second (e.g. 16000), got {sr!r}")
    return int(sr)


def _as_tensor(wav: object, name: str) -> torch.Tensor:
    if isinstance(wav, np.ndarray):
        if wav.dtype == object:
            raise TypeError(f"{name} is a numpy array of Python objects; it must hold numbers (float32 samples)")
        return torch.from_numpy(np.ascontiguousarray(wav))
    if isinstance(wav, torch.Tensor):
        return wav
    raise TypeError(
        f"{name} must be a torch.Tensor or numpy array of samples, got {type(wav).__name__}; "
        f"convert it with torch.as_tensor({name}, dtype=torch.float32) or read a file with audio.load(path)"
    )


def check_wav(
    wav: torch.Tensor | np.ndarray,
    sr: int | None = None,
    expected_sr: int | None = None,
    name: str = "wav",
    allow_silence: bool = True,
) -> torch.Tensor:
    """Check that ``wav`` is a usable mono waveform and return it as a float32 tensor of shape ``(T,)``.

    A ``(1, T)`` or ``(T, 1)`` array is squeezed. ``sr`` (if given) must be a positive int, and must
    equal ``expected_sr`` (if given). A silent signal (every sample below 1e-7) is valid unless
    ``allow_silence=False``, for a computation that is undefined on silence. Raises
    ``TypeError``/``ValueError`` with a message saying what to do otherwise.

    >>> check_wav(np.array([0.1, -0.2], dtype=np.float64)).dtype
    torch.float32
    """
    x = _as_tensor(wav, name)
    if x.dtype == torch.bool or not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{name} has integer dtype {x.dtype}, but samples must be floats in [-1, 1]; "
            f"for int16 PCM divide by 32768 ({name}.float() / 32768), or read files with audio.load(path)"
        )
    if x.is_complex():
        raise TypeError(f"{name} is complex ({x.dtype}); a waveform is real - did you pass an STFT? Use the signal")
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)  # (1, T) or (T, 1): one channel
    if x.ndim == 2:
        rows, cols = x.shape
        if min(rows, cols) <= _MAX_CHANNELS:
            channels = min(rows, cols)
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: it looks like {'stereo' if channels == 2 else 'multichannel'} "
                f"audio with {channels} channels; mix it down with audio.to_mono({name}) (or pick one channel)"
            )
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: it looks like a batch of signals, but this function takes "
            f"one signal of shape (T,); loop over the batch, e.g. [f(w) for w in {name}]"
        )
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (T,), got shape {tuple(x.shape)}; pass one mono signal")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (0 samples); check the file or the slice that produced it")
    x = x.to(torch.float32)
    lo, hi = torch.aminmax(x)  # NaN if any sample is NaN: one pass, several times faster than isfinite().all()
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        bad = ~torch.isfinite(x)
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} inf samples out of {x.numel()}; "
            "find the step that produced them (e.g. log(0) or a division by zero) and fix it there"
        )
    if not allow_silence and max(-float(lo), float(hi)) < 1e-7:
        raise ValueError(
            f"{name} is silent (all {x.numel()} samples are zero or below 1e-7), and this measure is undefined "
            "on silence; check the source: the file, the synthesiser call, or the slice that produced it"
        )
    if sr is not None:
        sr = _check_sr(sr)
    if expected_sr is not None:
        expected_sr = _check_sr(expected_sr, "expected_sr")
        if sr is not None and sr != expected_sr:
            raise ValueError(
                f"{name} is sampled at {sr} Hz but {expected_sr} Hz is expected; "
                f"resample it first: audio.resample({name}, {sr}, {expected_sr})"
            )
    return x


def to_mono(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Average the channels of a ``(C, T)`` or ``(T, C)`` array (C <= 8) into a float32 ``(T,)`` tensor."""
    x = _as_tensor(wav, "wav")
    if not x.is_floating_point():
        raise TypeError(f"wav has dtype {x.dtype}; convert to float in [-1, 1] first (int16: divide by 32768)")
    if x.ndim == 1:
        return x.to(torch.float32)
    if x.ndim != 2:
        raise ValueError(f"to_mono expects (channels, T) or (T, channels), got shape {tuple(x.shape)}")
    if x.shape[0] <= _MAX_CHANNELS and x.shape[0] <= x.shape[1]:
        return x.to(torch.float32).mean(dim=0)
    if x.shape[1] <= _MAX_CHANNELS:
        return x.to(torch.float32).mean(dim=1)
    raise ValueError(
        f"to_mono cannot tell the channel axis of shape {tuple(x.shape)} (neither side is <= {_MAX_CHANNELS}); "
        "it looks like a batch of signals, not one multichannel signal"
    )


# ---------------------------------------------------------------------------------------------
# Files and sampling rate
# ---------------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], sr: int | None = None, mix_to_mono: bool = False) -> tuple[torch.Tensor, int]:
    """Read an audio file with soundfile; return a float32 ``(T,)`` tensor in [-1, 1] and its rate.

    If ``sr`` is given and differs from the file's rate, the signal is resampled to ``sr``. A file
    with several channels raises unless ``mix_to_mono=True`` (then the channels are averaged).

    >>> wav, sr = load("hello.wav", sr=16000)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist; check the path (cwd is {Path.cwd()})")
    if sr is not None:
        sr = _check_sr(sr)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"could not read {path} as audio ({err}); the course reads WAV, FLAC and OGG files (what libsndfile "
            "reads): check that the file is audio and not truncated, or convert it, e.g. with sox or ffmpeg, to WAV"
        ) from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} holds no samples; re-create or re-download it")
    if data.shape[1] > 1:
        if not mix_to_mono:
            raise ValueError(
                f"audio file {path} has {data.shape[1]} channels; the course works on mono signals: "
                "pass mix_to_mono=True to average them, or read it with soundfile.read to keep the channels"
            )
        wav = torch.from_numpy(data).mean(dim=1)
    else:
        wav = torch.from_numpy(data[:, 0].copy())
    if sr is not None and sr != file_sr:
        wav = torchaudio.functional.resample(wav, int(file_sr), sr)
        file_sr = sr
    return wav.contiguous(), int(file_sr)


def save(path: str | os.PathLike[str], wav: torch.Tensor | np.ndarray, sr: int) -> Path:
    """Write ``wav`` to ``path`` as a 16-bit PCM WAV file (parent folders are created); return the path."""
    x = check_wav(wav, sr)
    peak = float(x.abs().max())
    if peak > 1.0:
        raise ValueError(
            f"wav peaks at {peak:.3f}, above 1.0, and would clip in 16-bit PCM; "
            "scale it first, e.g. wav / wav.abs().max() * 0.95"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.detach().cpu().numpy(), int(sr), subtype="PCM_16", format="WAV")
    return path


def resample(wav: torch.Tensor | np.ndarray, sr_in: int, sr_out: int) -> torch.Tensor:
    """Resample ``wav`` from ``sr_in`` to ``sr_out`` Hz (band-limited sinc interpolation, torchaudio).

    >>> resample(torch.randn(16000), 16000, 8000).shape
    torch.Size([8000])
    """
    x = check_wav(wav, sr_in)
    sr_out = _check_sr(sr_out, "sr_out")
    if sr_out == sr_in:
        return x
    return _resampler(int(sr_in), sr_out)(x)


@functools.lru_cache(maxsize=8)
def _resampler(sr_in: int, sr_out: int) -> torchaudio.transforms.Resample:
    # The transform computes its sinc kernel once; the functional form recomputes it on every call
    # (which costs far more than the filtering of a short utterance).
    return torchaudio.transforms.Resample(sr_in, sr_out)


def add_noise_floor(wav: torch.Tensor | np.ndarray, level_db: float = -60.0, seed: int = 0) -> torch.Tensor:
    """Add faint Gaussian dither with standard deviation ``10 ** (level_db / 20)`` (reproducible by ``seed``).

    Synthesised speech (eSpeak) has long runs of exact zeros, where a log spectrum is log(0); a noise
    floor at -60 dB is inaudible but keeps log features finite and meaningful.
    """
    x = check_wav(wav)
    if not math.isfinite(level_db):
        raise ValueError(f"level_db must be a finite number of decibels (e.g. -60.0), got {level_db}")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen) * 10 ** (level_db / 20)
    return x + noise.to(x.device)


# ---------------------------------------------------------------------------------------------
# Frame-based features
# ---------------------------------------------------------------------------------------------


def _frames(sr: int, win_ms: float, hop_ms: float, n_fft: int | None) -> tuple[int, int, int]:
    """Window length, hop length (samples) and FFT size for a frame setup."""
    if not (win_ms > 0 and hop_ms > 0):
        raise ValueError(f"win_ms and hop_ms must be positive milliseconds, got win_ms={win_ms}, hop_ms={hop_ms}")
    win = round(sr * win_ms / 1000)
    hop = round(sr * hop_ms / 1000)
    if win < 2 or hop < 1:
        raise ValueError(
            f"win_ms={win_ms} / hop_ms={hop_ms} give fewer than 2 / 1 samples at {sr} Hz; use longer frames"
        )
    if n_fft is None:
        n_fft = 1 << (win - 1).bit_length()  # next power of two >= window length
    if n_fft < win:
        raise ValueError(f"n_fft={n_fft} is shorter than the window ({win} samples); use n_fft >= {win} or None")
    return win, hop, n_fft


def frame_times(n_frames: int, hop_ms: float = 10.0) -> torch.Tensor:
    """Time in seconds of each frame's centre, ``(n_frames,)``: frame ``i`` is at ``i * hop_ms / 1000``.

    >>> frame_times(3, 10.0)
    tensor([0.0000, 0.0100, 0.0200])
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return torch.arange(n_frames, dtype=torch.float32) * (hop_ms / 1000)


def stft(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int | None = None,
) -> torch.Tensor:
    """Complex short-time Fourier transform with a Hann window, ``(n_fft // 2 + 1, frames)``.

    Frames are centred (``center=True``), so frame ``i`` is centred at ``i * hop_ms`` ms and there
    are ``1 + T // hop`` frames. ``n_fft`` defaults to the next power of two above the window.
    """
    x = check_wav(wav, sr)
    win, hop, n_fft = _frames(sr, win_ms, hop_ms, n_fft)
    window = torch.hann_window(win, device=x.device)
    pad_mode = "reflect" if x.numel() > n_fft // 2 else "constant"  # reflect needs more samples than the pad
    return torch.stft(
        x, n_fft, hop_length=hop, win_length=win, window=window, center=True, pad_mode=pad_mode, return_complex=True
    )  # (F, frames)


def spectrogram(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int | None = None,
) -> torch.Tensor:
    """Power spectrogram ``|stft|^2``, ``(n_fft // 2 + 1, frames)``."""
    return stft(wav, sr, win_ms, hop_ms, n_fft).abs().pow(2)


@functools.lru_cache(maxsize=16)
def _mel_fbanks(n_freqs: int, sr: int, n_mels: int) -> torch.Tensor:
    """The HTK mel filters of :func:`log_mel`, ``(n_freqs, n_mels)``, made once per shape (read, never written)."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=n_freqs, f_min=0.0, f_max=sr / 2, n_mels=n_mels, sample_rate=sr, norm=None, mel_scale="htk")


def log_mel(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    n_mels: int = 80,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Log mel filterbank energies ``log(mel_power + floor)``, ``(n_mels, frames)``.

    The power spectrogram is pooled by ``n_mels`` triangular filters evenly spaced on the (HTK) mel
    scale from 0 Hz to ``sr / 2``; the same as ``torchaudio.transforms.MelSpectrogram`` then a log.
    """
    x = check_wav(wav, sr)
    if n_mels < 1:
        raise ValueError(f"n_mels must be a positive number of filters (e.g. 80), got {n_mels}")
    if floor <= 0:
        raise ValueError(f"floor must be > 0 to keep log() finite (e.g. 1e-5), got {floor}")
    power = spectrogram(x, sr, win_ms, hop_ms)  # (F, frames)
    fbanks = _mel_fbanks(power.shape[0], sr, n_mels).to(power.device)  # (F, n_mels)
    mel = fbanks.T @ power  # (n_mels, frames)
    return torch.log(mel + floor)


def mfcc(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    n_mfcc: int = 13,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
) -> torch.Tensor:
    """Mel-frequency cepstral coefficients ``(n_mfcc, frames)`` (DCT of log mel energies, torchaudio)."""
    x = check_wav(wav, sr)
    if not 1 <= n_mfcc <= n_mels:
        raise ValueError(f"need 1 <= n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}; raise n_mels")
    win, hop, n_fft = _frames(sr, win_ms, hop_ms, None)
    transform = torchaudio.transforms.MFCC(
        sample_rate=sr,
        n_mfcc=n_mfcc,
        melkwargs={"n_fft": n_fft, "win_length": win, "hop_length": hop, "n_mels": n_mels, "center": True},
    ).to(x.device)
    return transform(x)  # (n_mfcc, frames)


def pitch(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    hop_ms: float = 10.0,
    fmin: float = 60.0,
    fmax: float = 400.0,
    silence_db: float = 30.0,
    win_ms: float = 40.0,
    voicing: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fundamental frequency (F0) per frame: ``(times, f0)``, both ``(frames,)``, f0 in Hz, times in seconds.

    The autocorrelation method, vectorised over frames: each ``win_ms`` window (Hann-weighted) is
    correlated with itself through the FFT, the correlation is normalised by its value at lag 0, and
    the highest peak between lags ``sr/fmax`` and ``sr/fmin`` gives the period (refined by a
    parabola through the peak). A frame is unvoiced (NaN) when that peak is below ``voicing`` or its
    energy is more than ``silence_db`` dB below the loud frames (their 95th percentile). Notebook 00
    derives it; the tests compare it with ``torchaudio.functional.detect_pitch_frequency``, which
    does the same job more slowly. The window's own autocorrelation is divided out (Boersma 1993). Like any
    autocorrelation tracker it can make octave errors.
    """
    x = check_wav(wav, sr)
    if not 0 < fmin < fmax < sr / 2:
        raise ValueError(f"need 0 < fmin < fmax < sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    hop = round(sr * hop_ms / 1000)
    if hop < 1:
        raise ValueError(f"hop_ms={hop_ms} is shorter than one sample at {sr} Hz; use a longer hop")
    win = max(round(sr * win_ms / 1000), int(2 * sr / fmin) + 2)  # at least two periods of fmin
    n_frames = math.ceil(x.numel() / hop)
    if n_frames < 3:
        raise ValueError(f"wav has {x.numel()} samples, too short for pitch tracking; pass at least {3 * hop} samples")
    padded = torch.nn.functional.pad(x, (win // 2, n_frames * hop + win - x.numel() - win // 2))
    frames = padded.unfold(0, win, hop)[:n_frames]  # (frames, win), centred on the hop grid
    window = torch.hann_window(win, periodic=False)
    frames = (frames - frames.mean(dim=1, keepdim=True)) * window
    n_fft = 1 << (2 * win - 1).bit_length()
    ac = torch.fft.irfft(torch.fft.rfft(frames, n=n_fft).abs().pow(2), n=n_fft)[:, :win]  # (frames, lags)
    ac_window = torch.fft.irfft(torch.fft.rfft(window, n=n_fft).abs().pow(2), n=n_fft)[:win]  # (lags,)
    # Dividing by the window's own autocorrelation undoes its taper (Boersma 1993), so a perfectly
    # periodic frame scores near 1 at its period, low voices included.
    ac = ac / ac[:, :1].clamp_min(1e-12) / (ac_window / ac_window[0]).clamp_min(1e-3)
    lo, hi = int(sr / fmax), min(int(sr / fmin) + 1, win - 2)
    lags = torch.arange(lo, hi, dtype=torch.float32)
    # A periodic frame also peaks at 2, 3, ... periods: a small cost per octave of lag (Praat's
    # "octave cost") makes the shortest period win a near-tie.
    score = ac[:, lo:hi] - 0.1 * torch.log2(lags / lo)
    lag = score.argmax(dim=1) + lo
    peak = ac[torch.arange(n_frames), lag]
    rows = torch.arange(n_frames)
    a, b, c = ac[rows, lag - 1], ac[rows, lag], ac[rows, (lag + 1).clamp_max(win - 1)]
    shift = (0.5 * (a - c) / (a - 2 * b + c).clamp_max(-1e-9)).clamp(-0.5, 0.5)  # parabolic peak refinement
    f0 = sr / (lag.float() + shift)
    energy_db = 10 * torch.log10(frames.pow(2).mean(dim=1) + 1e-12)  # (frames,)
    loud = torch.quantile(energy_db, 0.95)
    unvoiced = (energy_db < loud - silence_db) | (peak < voicing) | (f0 < fmin) | (f0 > fmax)
    f0 = f0.masked_fill(unvoiced, float("nan"))
    times = torch.arange(n_frames, dtype=torch.float32) * (hop / sr)  # frame centres
    return times, f0
