"""Tests for slm_course.display: every plot returns an Axes whose x-axis is time in seconds."""

from __future__ import annotations

import math
from collections import namedtuple

import matplotlib
import numpy as np
import pytest
import torch
from IPython.display import Audio

from slm_course import audio, display
from slm_course.audio import SR

matplotlib.use("Agg")  # no windows: pyplot is imported lazily, after this

Span = namedtuple("Span", "label start end")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def wav() -> torch.Tensor:
    t = torch.arange(int(1.5 * SR)) / SR  # 1.5 s
    return audio.add_noise_floor(0.3 * torch.sin(2 * math.pi * 150 * t) + 0.1 * torch.sin(2 * math.pi * 300 * t))


def test_play_returns_audio(wav: torch.Tensor) -> None:
    player = display.play(wav, SR)
    assert isinstance(player, Audio)
    assert player.data[:4] == b"RIFF"  # a WAV file in memory
    assert display.play(torch.zeros(100), SR).data[:4] == b"RIFF"  # silence plays (as silence)


def test_play_stereo_has_two_channels(wav: torch.Tensor) -> None:
    player = display.play_stereo(wav, 0.5 * wav[: SR // 2], SR)
    header = player.data
    assert header[:4] == b"RIFF" and int.from_bytes(header[22:24], "little") == 2  # two channels
    frames = (len(header) - 44) // 4  # 16-bit samples, two per frame
    assert frames == len(wav)  # the shorter side is padded to the longer
    with pytest.raises(ValueError, match="sr|rate|sample"):
        display.play_stereo(wav, wav, sr=0)


def test_plot_waveform(wav: torch.Tensor) -> None:
    ax = display.plot_waveform(wav, SR, title="tone")
    assert ax.get_xlim() == pytest.approx((0, 1.5))
    assert ax.get_xlabel() == "time (s)" and ax.get_title() == "tone"
    assert len(ax.lines[0].get_xdata()) == len(wav)


@pytest.mark.parametrize("kind", ["log_mel", "spectrogram", "mfcc"])
def test_plot_spectrogram_from_wav(wav: torch.Tensor, kind: str) -> None:
    ax = display.plot_spectrogram(wav, SR, kind=kind)
    assert ax.get_xlim() == pytest.approx((0, 1.5))
    image = ax.get_images()[0].get_array()
    assert image.shape[1] == 151  # 1 + T // hop frames
    if kind == "spectrogram":
        assert ax.get_ylim() == pytest.approx((0, SR / 2))


def test_plot_spectrogram_from_matrix_and_errors() -> None:
    import matplotlib.pyplot as plt

    feats = np.random.default_rng(0).standard_normal((40, 200))  # (features, frames)
    _, given = plt.subplots()
    ax = display.plot_spectrogram(feats, hop_ms=20.0, ax=given)
    assert ax is given and ax.get_xlim() == pytest.approx((0, 4.0))
    with pytest.raises(ValueError, match=r"looks like \(frames, features\).*feats\.T"):
        display.plot_spectrogram(feats.T)
    with pytest.raises(ValueError, match="kind must be one of"):
        display.plot_spectrogram(feats, kind="cqt")


def test_plot_pitch(wav: torch.Tensor) -> None:
    ax = display.plot_pitch(wav, SR)
    assert ax.get_xlim() == pytest.approx((0, 1.5)) and ax.get_ylabel() == "F0 (Hz)"
    f0 = ax.lines[0].get_ydata()
    assert np.nanmedian(f0) == pytest.approx(150, abs=3)
    ax = display.plot_pitch(wav, SR, show_spectrogram=True)
    assert len(ax.get_images()) == 1 and ax.get_ylim() == pytest.approx((0, 500))


def test_plot_spans_objects_and_tuples(wav: torch.Tensor) -> None:
    ax = display.plot_spectrogram(wav, SR)
    display.plot_spans([Span("hello", 0.1, 0.6), ("world", 0.6, 1.2)], ax)
    assert ax.get_xlim() == pytest.approx((0, 1.5))  # drawing spans keeps the plot's time axis
    assert sorted(t.get_text() for t in ax.texts) == ["hello", "world"]
    assert len(ax.lines) == 3  # boundaries 0.1, 0.6, 1.2: the shared one drawn once
    new = display.plot_spans([("a", 0.0, 0.5), ("b", 0.5, 2.0)])
    assert new.get_xlim() == pytest.approx((0, 2.0))
    with pytest.raises(ValueError, match="ends .* before it starts"):
        display.plot_spans([("x", 1.0, 0.5)])
    with pytest.raises(TypeError, match="label .start .end"):
        display.plot_spans([("x", 1.0)])


def test_plot_tokens_merges_repeats(wav: torch.Tensor) -> None:
    tokens = torch.tensor([5] * 10 + [7] * 5 + [5] * 60)  # 75 tokens at 50 Hz = 1.5 s
    ax = display.plot_tokens(tokens, wav, SR, frame_rate=50.0)
    assert ax.get_xlim() == pytest.approx((0, 1.5))
    assert [t.get_text() for t in ax.texts] == ["5", "7", "5"]
    assert [t.get_position()[0] for t in ax.texts] == pytest.approx([0.1, 0.25, 0.9])
    with pytest.raises(ValueError, match="1-D"):
        display.plot_tokens(torch.zeros(2, 3, dtype=torch.long), wav)


def test_plot_taxonomy_names_each_family_its_factorisation_and_notebooks() -> None:
    ax = display.plot_taxonomy()
    text = " ".join(t.get_text() for t in ax.texts)
    for family, formula, where in [
        ("pure speech LMs", r"p(\mathrm{speech})", "notebooks 04-06"),
        ("speech+text LMs", r"p(\mathrm{text},\ \mathrm{speech})", "notebooks 07-08"),
        ("speech-aware text LMs", r"p(\mathrm{text} \mid \mathrm{speech},\ \mathrm{text})", "notebook 09"),
    ]:
        assert family in text and formula in text and where in text
    assert "the cascade" in text and "notebook 01" in text and "notebook 10" in text
    # "(to come)" marks exactly the notebooks not written yet
    from pathlib import Path

    written = {p.name[:2] for p in (Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for t in ax.texts:
        marked = "(to come)" in t.get_text()
        named = [n for n in ("04", "05", "06", "07", "08", "09", "10") if n in t.get_text()]
        assert not named or marked == any(n not in written for n in named), t.get_text()
    assert len(ax.patches) == 5  # the cascade, three families, the universal SLM
    import matplotlib.pyplot as plt

    fig, given = plt.subplots()
    assert display.plot_taxonomy(given) is given  # draws into the Axes it is given


def test_ask_box_asks_the_function_about_the_picked_utterance(wav: torch.Tensor) -> None:
    asked = []

    def answer(label, instruction):
        asked.append((label, instruction))
        return f"{instruction} about {label}"

    box = display.ask_box({"one": wav, "two": wav * 0.5}, answer, prompt="who is it")
    pick, text = box.children[0], box.children[1].children[0]
    pick.value, text.value = "two", "how does it sound"
    assert box.ask() == "how does it sound about two"
    assert asked == [("two", "how does it sound")]
    with pytest.raises(ValueError, match="empty"):
        display.ask_box({}, answer)
    with pytest.raises(ValueError, match="function"):
        display.ask_box({"one": wav}, "not a function")
