"""Tests for slm_course.audio: input checks, file I/O, resampling and features, against torchaudio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from slm_course import audio
from slm_course.audio import SR


def sine(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return amp * torch.sin(2 * math.pi * freq * t)


def peak_freq(wav: torch.Tensor, sr: int) -> float:
    spectrum = torch.fft.rfft(wav * torch.hann_window(len(wav))).abs()
    return float(torch.argmax(spectrum)) * sr / len(wav)


# --- check_wav --------------------------------------------------------------------------------


def test_check_wav_converts_numpy_float64() -> None:
    x = audio.check_wav(np.array([0.1, -0.2, 0.3]))
    assert x.dtype == torch.float32 and x.shape == (3,)
    assert torch.allclose(x, torch.tensor([0.1, -0.2, 0.3]))


def test_check_wav_squeezes_one_channel() -> None:
    assert audio.check_wav(torch.rand(1, 100)).shape == (100,)
    assert audio.check_wav(torch.rand(100, 1)).shape == (100,)


@pytest.mark.parametrize(
    ("wav", "error", "match"),
    [
        ([0.1, 0.2], TypeError, "must be a torch.Tensor or numpy array.*torch.as_tensor"),
        (np.array([1000, -2000], dtype=np.int16), TypeError, "integer dtype.*32768.*audio.load"),
        (torch.tensor([1, 2, 3]), TypeError, "integer dtype"),
        (torch.rand(2, 1000), ValueError, "looks like stereo.*to_mono"),
        (torch.rand(1000, 2), ValueError, "looks like stereo.*to_mono"),
        (torch.rand(16, 1000), ValueError, "batch of signals"),
        (torch.rand(2, 3, 100), ValueError, "must be 1-D"),
        (torch.zeros(0), ValueError, "empty"),
        (torch.tensor([0.1, float("nan"), float("nan"), float("inf")]), ValueError, "2 NaN and 1 inf"),
        (torch.randn(100, dtype=torch.complex64), TypeError, "complex"),
    ],
)
def test_check_wav_errors(wav: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        audio.check_wav(wav)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"this is not audio\n", b"RIFF\x24\x00\x00\x00WAVEfmt "])
def test_load_says_what_to_do_with_a_file_that_is_not_audio(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(content)  # a text file, then a WAV header cut short
    with pytest.raises(ValueError, match="could not read .*notes.wav as audio.*convert it"):
        audio.load(path)


def test_silence_is_a_signal_unless_a_measure_is_undefined_on_it() -> None:
    silence = torch.zeros(SR // 2)
    assert torch.equal(audio.check_wav(silence), silence)
    with pytest.raises(ValueError, match="silent.*undefined on silence"):
        audio.check_wav(silence, allow_silence=False)
    assert torch.isfinite(audio.log_mel(silence)).all() and torch.isfinite(audio.mfcc(silence)).all()
    assert torch.isnan(audio.pitch(silence)[1]).all()  # no voiced frame: F0 is undefined, frame by frame


@pytest.mark.parametrize("sr", [0, -16000, 16000.0, "16000", True])
def test_check_wav_bad_sr(sr: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        audio.check_wav(torch.rand(10), sr=sr)  # type: ignore[arg-type]


def test_check_wav_wrong_rate_says_how_to_resample() -> None:
    with pytest.raises(ValueError, match=r"8000 Hz but 16000 Hz is expected.*audio\.resample\(wav, 8000, 16000\)"):
        audio.check_wav(torch.rand(10), sr=8000, expected_sr=16000)
    assert audio.check_wav(torch.rand(10), sr=16000, expected_sr=16000).shape == (10,)


def test_to_mono_averages_either_layout() -> None:
    left, right = torch.rand(500), torch.rand(500)
    expected = (left + right) / 2
    assert torch.allclose(audio.to_mono(torch.stack([left, right])), expected)
    assert torch.allclose(audio.to_mono(torch.stack([left, right], dim=1).numpy()), expected)
    with pytest.raises(ValueError, match="batch"):
        audio.to_mono(torch.rand(20, 30))


# --- files and rates -------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path: Path) -> None:
    wav = sine(440, 0.5)
    path = audio.save(tmp_path / "a" / "b.wav", wav, SR)
    info = sf.info(str(path))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == "PCM_16"
    loaded, sr = audio.load(path)
    assert sr == SR and loaded.dtype == torch.float32 and loaded.shape == wav.shape
    assert (loaded - wav).abs().max() <= 1 / 32768 + 1e-6  # 16-bit quantisation


def test_save_refuses_clipping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="would clip.*scale it"):
        audio.save(tmp_path / "x.wav", sine(440) * 3, SR)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        audio.load(tmp_path / "nope.wav")


def test_load_stereo_raises_unless_mixed(tmp_path: Path) -> None:
    left, right = sine(300, 0.2), sine(500, 0.2, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), torch.stack([left, right], dim=1).numpy(), SR, subtype="FLOAT")
    with pytest.raises(ValueError, match="2 channels.*mix_to_mono=True"):
        audio.load(path)
    mono, sr = audio.load(path, mix_to_mono=True)
    assert sr == SR and torch.allclose(mono, (left + right) / 2, atol=1e-6)


def test_load_resamples(tmp_path: Path) -> None:
    path = audio.save(tmp_path / "a.wav", sine(440, 1.0, sr=22050), 22050)
    wav, sr = audio.load(path, sr=SR)
    assert sr == SR and wav.shape == (SR,)
    assert abs(peak_freq(wav, SR) - 440) <= 1.0


@pytest.mark.parametrize(("sr_in", "sr_out"), [(16000, 8000), (16000, 22050), (44100, 16000)])
def test_resample_length_and_frequency(sr_in: int, sr_out: int) -> None:
    wav = sine(440, 1.0, sr=sr_in)
    out = audio.resample(wav, sr_in, sr_out)
    assert out.shape == (sr_out,)
    assert abs(peak_freq(out, sr_out) - 440) <= 1.0
    assert torch.equal(audio.resample(wav, sr_in, sr_in), wav)


def test_noise_floor_removes_zeros_and_is_reproducible() -> None:
    wav = torch.cat([torch.zeros(8000), sine(200, 0.5)])
    a = audio.add_noise_floor(wav, -60.0, seed=1)
    assert int((a == 0).sum()) == 0
    assert torch.equal(a, audio.add_noise_floor(wav, -60.0, seed=1))
    assert not torch.equal(a, audio.add_noise_floor(wav, -60.0, seed=2))
    assert abs(float(a[:8000].std()) - 1e-3) < 1e-4  # -60 dB = 1e-3 amplitude
    assert torch.isfinite(audio.log_mel(a, floor=1e-12)).all()


# --- features --------------------------------------------------------------------------------


def test_stft_shape_and_window() -> None:
    wav = torch.randn(SR)
    spec = audio.stft(wav)
    assert spec.is_complex() and spec.shape == (257, 1 + SR // 160)  # n_fft 512 for a 400-sample window
    expected = torch.stft(
        wav, 512, hop_length=160, win_length=400, window=torch.hann_window(400), center=True, return_complex=True
    )
    assert torch.allclose(spec, expected)
    assert torch.allclose(audio.spectrogram(wav), expected.abs() ** 2)


def test_log_mel_matches_torchaudio() -> None:
    wav = audio.add_noise_floor(sine(440) + sine(1500, amp=0.2))
    ours = audio.log_mel(wav, n_mels=80)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=512, win_length=400, hop_length=160, n_mels=80, power=2.0, center=True
    )(wav)
    assert ours.shape == (80, 101)
    assert torch.allclose(ours, torch.log(mel + 1e-5), atol=1e-3)
    # the 440 Hz tone lands in the mel channel whose centre is nearest 440 Hz
    centres = torchaudio.functional.melscale_fbanks(257, 0.0, SR / 2, 80, SR).argmax(dim=0) * SR / 512
    assert abs(float(centres[ours[:, 50].argmax()]) - 440) < 60


def test_mfcc_shape_and_checks() -> None:
    feats = audio.mfcc(sine(300), n_mfcc=13)
    assert feats.shape == (13, 101) and torch.isfinite(feats).all()
    with pytest.raises(ValueError, match="n_mfcc <= n_mels"):
        audio.mfcc(sine(300), n_mfcc=50, n_mels=40)


def test_features_validate_input() -> None:
    for fn in (audio.stft, audio.log_mel, audio.mfcc, audio.pitch):
        with pytest.raises(TypeError, match="integer dtype"):
            fn(torch.ones(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="looks like stereo"):
        audio.log_mel(torch.rand(2, 16000))


def test_pitch_of_harmonic_tone_and_silence() -> None:
    t = torch.arange(SR) / SR
    tone = 0.3 * sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6))
    wav = audio.add_noise_floor(torch.cat([torch.zeros(4000), tone, torch.zeros(4000)]))  # 0.25 s silence each side
    times, f0 = audio.pitch(wav)
    assert times.shape == f0.shape == (150,)
    assert torch.allclose(times[:3], audio.frame_times(3))  # the same frame grid as log_mel
    inside = (times > 0.3) & (times < 1.2)
    assert (f0[inside] - 150).abs().max() < 3.0
    silent = (times < 0.23) | (times > 1.27)
    assert torch.isnan(f0[silent]).all()


def test_pitch_agrees_with_torchaudio() -> None:
    """The hand-written autocorrelation tracker matches torchaudio's detect_pitch_frequency."""
    t = torch.arange(SR) / SR
    for f in (90.0, 130.0, 210.0):
        tone = 0.3 * sum(torch.sin(2 * math.pi * f * k * t) / k for k in range(1, 6))
        ours = audio.pitch(tone)[1].nanmedian()
        ref = torchaudio.functional.detect_pitch_frequency(tone, SR).median()
        assert abs(ours - ref) < 0.02 * f, (f, ours, ref)
        assert abs(ours - f) < 0.01 * f


def test_frame_times() -> None:
    assert torch.allclose(audio.frame_times(4, 10.0), torch.tensor([0.0, 0.01, 0.02, 0.03]))
    assert audio.frame_times(101).shape == audio.log_mel(sine(100)).shape[1:]
