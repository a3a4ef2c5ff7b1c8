"""Seeing and hearing speech: players and plots with time in seconds (notebook 00 onward).

Also the course's map of the field, :func:`plot_taxonomy` (notebook 00 and the README's
``docs/taxonomy.png``), and :func:`ask_box`, a widget to ask a model about an utterance (notebook 09).

Every plot takes an optional matplotlib ``ax`` (a new figure is made when it is None), puts time in
seconds on the x-axis, and returns the ``Axes`` so that plots can be stacked: a spectrogram, then
the F0 contour or the word boundaries over it, then the speech tokens of a tokenizer.

>>> ax = plot_spectrogram(wav, sr)            # doctest: +SKIP
>>> plot_spans(words, ax)                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slm_course import audio
from slm_course.audio import SR

if TYPE_CHECKING:
    from IPython.display import Audio
    from matplotlib.axes import Axes

__all__ = ["ask_box", "play", "play_stereo", "plot_pitch", "plot_spans", "plot_spectrogram", "plot_taxonomy", "plot_tokens", "plot_waveform"]

_KINDS = ("log_mel", "spectrogram", "mfcc")


def _axes(ax: Axes | None, figsize: tuple[float, float] = (8, 2.5)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def play(wav: torch.Tensor | np.ndarray, sr: int = SR) -> Audio:
    """An ``IPython.display.Audio`` player for ``wav`` (peak-normalised; silence stays silent); a cell's last line shows it."""
    from IPython.display import Audio

    x = audio.check_wav(wav, sr)
    loud = float(x.abs().max()) > 0  # a peak of 0 cannot be normalised
    return Audio(data=x.detach().cpu().numpy(), rate=int(sr), normalize=loud)


def ask_box(utterances: dict[str, Any], answer: Any, prompt: str = "who is speaking", sr: int = SR):
    """A widget: pick an utterance, type an instruction, press "ask": the utterance plays and the answer shows.

    ``utterances``: label -> waveform; ``answer(label, instruction) -> str``. Returns the ``ipywidgets`` box
    (a cell's last line shows it); ``box.ask()`` asks what the widgets hold, as the button does.
    """
    import ipywidgets as widgets
    from IPython.display import display

    if not utterances:
        raise ValueError("utterances is empty: give at least one label -> waveform")
    if not callable(answer):
        raise ValueError("answer must be a function (label, instruction) -> str")
    pick = widgets.Dropdown(options=list(utterances), description="utterance", layout=widgets.Layout(width="80%"))
    text = widgets.Text(value=prompt, description="instruction", layout=widgets.Layout(width="80%"))
    button = widgets.Button(description="ask")
    out = widgets.Output()

    def ask(_=None) -> str:
        said = str(answer(pick.value, text.value))
        out.clear_output()
        with out:
            display(play(utterances[pick.value], sr))
            print(f"{text.value!r} -> {said!r}")
        return said

    button.on_click(ask)
    text.on_submit(ask)
    box = widgets.VBox([pick, widgets.HBox([text, button]), out])
    box.ask = ask
    return box


def play_stereo(left: torch.Tensor | np.ndarray, right: torch.Tensor | np.ndarray, sr: int = SR) -> Audio:
    """A stereo player: ``left`` in the left ear, ``right`` in the right (say, a dialogue's user and system).

    Both channels are scaled by the same factor, so the louder side stays louder; the shorter one is
    padded with silence.
    """
    from IPython.display import Audio

    a, b = audio.check_wav(left, sr, name="left"), audio.check_wav(right, sr, name="right")
    n = max(len(a), len(b))
    x = torch.zeros(2, n)
    x[0, : len(a)], x[1, : len(b)] = a, b
    peak = float(x.abs().max())
    if peak > 0:
        x = x / peak
    return Audio(data=x.detach().cpu().numpy(), rate=int(sr), normalize=False)


def plot_waveform(
    wav: torch.Tensor | np.ndarray, sr: int = SR, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Plot the samples against time in seconds, from 0 to the duration."""
    x = audio.check_wav(wav, sr).detach().cpu().numpy()
    ax = _axes(ax)
    t = np.arange(len(x)) / sr
    ax.plot(t, x, lw=0.5, color="C0")
    ax.set_xlim(0, len(x) / sr)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    if title:
        ax.set_title(title)
    return ax


def plot_spectrogram(
    spec_or_wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    hop_ms: float = 10.0,
    ax: Axes | None = None,
    title: str | None = None,
    kind: str = "log_mel",
) -> Axes:
    """Show a time-frequency image: a 1-D ``wav`` is turned into ``kind`` features, a 2-D array is shown as is.

    ``kind`` is ``"log_mel"`` (mel channel), ``"spectrogram"`` (power in dB, y-axis in Hz) or ``"mfcc"``.
    A 2-D input is ``(features, frames)`` with one frame every ``hop_ms`` ms. The x-axis runs from
    0 to the duration (of the wav, or of the frames).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    data = torch.as_tensor(spec_or_wav) if isinstance(spec_or_wav, np.ndarray) else spec_or_wav
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"expected a wav (T,) or a feature matrix (features, frames), got {type(spec_or_wav).__name__}")
    hop_s = hop_ms / 1000
    freq_axis: tuple[float, float] | None = None
    if data.ndim == 1:
        wav = audio.check_wav(data, sr)
        duration = len(wav) / sr
        if kind == "log_mel":
            feats, ylabel = audio.log_mel(wav, sr, hop_ms=hop_ms), "mel channel"
        elif kind == "mfcc":
            feats, ylabel = audio.mfcc(wav, sr, hop_ms=hop_ms), "MFCC"
        else:
            power = audio.spectrogram(wav, sr, hop_ms=hop_ms)
            feats, ylabel = 10 * torch.log10(power + 1e-10), "frequency (Hz)"
            freq_axis = (0.0, sr / 2)
    elif data.ndim == 2:
        if data.shape[0] > data.shape[1] * 4:
            raise ValueError(
                f"feature matrix has shape {tuple(data.shape)}, which looks like (frames, features); "
                "pass it as (features, frames), e.g. feats.T"
            )
        feats = data
        ylabel = {"log_mel": "mel channel", "mfcc": "MFCC", "spectrogram": "frequency bin"}[kind]
        duration = data.shape[1] * hop_s
    else:
        raise ValueError(f"expected a wav (T,) or a feature matrix (features, frames), got shape {tuple(data.shape)}")

    image = feats.detach().float().cpu().numpy()  # (features, frames)
    n_feats, n_frames = image.shape
    y0, y1 = freq_axis if freq_axis is not None else (-0.5, n_feats - 0.5)
    ax = _axes(ax)
    # frame i is centred at i * hop, so its column spans [(i - 0.5) * hop, (i + 0.5) * hop]
    ax.imshow(
        image,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(-0.5 * hop_s, (n_frames - 0.5) * hop_s, y0, y1),
        cmap="magma",
    )
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def plot_pitch(
    wav: torch.Tensor | np.ndarray,
    sr: int = SR,
    ax: Axes | None = None,
    show_spectrogram: bool = False,
    fmax_display: float = 500.0,
    title: str | None = None,
) -> Axes:
    """Plot the F0 contour (Hz) against time (s); gaps are unvoiced frames.

    With ``show_spectrogram=True`` the contour is drawn over a power spectrogram up to ``fmax_display`` Hz.
    """
    wav = audio.check_wav(wav, sr)
    times, f0 = audio.pitch(wav, sr)
    ax = _axes(ax)
    if show_spectrogram:
        plot_spectrogram(wav, sr, ax=ax, kind="spectrogram")
        ax.set_ylim(0, fmax_display)
    ax.plot(times.numpy(), f0.numpy(), ".-", color="cyan" if show_spectrogram else "C1", lw=1.5, ms=3)
    ax.set_xlim(0, len(wav) / sr)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("F0 (Hz)")
    if title:
        ax.set_title(title)
    return ax


def _span(span: Any) -> tuple[str, float, float]:
    """``(label, start, end)`` of an object with ``.label .start .end`` or of a 3-tuple."""
    if all(hasattr(span, a) for a in ("label", "start", "end")):
        label, start, end = span.label, span.start, span.end
    elif isinstance(span, Sequence) and len(span) == 3:
        label, start, end = span
    else:
        raise TypeError(f"a span must have .label .start .end or be a tuple (label, start, end), got {span!r}")
    start, end = float(start), float(end)
    if end < start:
        raise ValueError(f"span {label!r} ends ({end}) before it starts ({start}); times are in seconds")
    return str(label), start, end


def plot_spans(
    spans: Iterable[Any],
    ax: Axes | None = None,
    color: str = "white",
    y: float = 0.92,
    fontsize: float = 8,
) -> Axes:
    """Draw labelled boundaries for word/phone spans (times in seconds) over an existing plot.

    Each span is an object with ``.label .start .end`` or a tuple ``(label, start, end)``. Lines go
    at every boundary, labels at the middle of each span at height ``y`` (in axes coordinates).
    On a new ``ax`` the x-axis runs from 0 to the last end.
    """
    items = [_span(s) for s in spans]
    new = ax is None
    ax = _axes(ax)
    boundaries = sorted({t for _, start, end in items for t in (start, end)})
    for t in boundaries:
        ax.axvline(t, color=color, lw=0.8, alpha=0.8)
    for label, start, end in items:
        ax.text(
            (start + end) / 2,
            y,
            label,
            transform=ax.get_xaxis_transform(),  # x in data (seconds), y in axes coordinates
            ha="center",
            va="center",
            fontsize=fontsize,
            color="black",
            bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "lw": 0},
            clip_on=True,
        )
    if new:
        ax.set_xlim(0, max((end for _, _, end in items), default=1.0))
        ax.set_xlabel("time (s)")
    return ax


def plot_tokens(
    tokens: torch.Tensor | np.ndarray | Sequence[int],
    wav_or_spec: torch.Tensor | np.ndarray,
    sr: int = SR,
    frame_rate: float = 50.0,
    ax: Axes | None = None,
    hop_ms: float = 10.0,
    title: str | None = None,
) -> Axes:
    """A spectrogram with discrete token ids written over it at their times (repeated tokens merged).

    Token ``i`` covers ``[i / frame_rate, (i + 1) / frame_rate)`` seconds; a run of the same id is
    drawn once, across the whole run. ``wav_or_spec`` is passed to :func:`plot_spectrogram`.
    """
    ids = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, torch.Tensor) else tokens)
    if ids.ndim != 1:
        raise ValueError(f"tokens must be 1-D (one id per frame), got shape {tuple(ids.shape)}; plot one utterance")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive tokens per second (e.g. 50.0), got {frame_rate}")
    ax = plot_spectrogram(wav_or_spec, sr=sr, hop_ms=hop_ms, ax=ax, title=title)
    runs: list[tuple[str, float, float]] = []
    values = ids.tolist()
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append((str(values[start]), start / frame_rate, i / frame_rate))
            start = i
    xlim = ax.get_xlim()
    plot_spans(runs, ax, fontsize=7, y=0.85)
    ax.set_xlim(xlim)
    return ax


# The map of the field (Arora et al. 2025, arXiv:2504.08528): each family is the distribution its model
# learns; the notebooks that build it; "(to come)" marks notebooks not written yet.
_FAMILIES = (
    ("pure speech LMs", r"$p(\mathrm{speech})$", "GSLM, AudioLM, TWIST", "notebooks 04-06", "C0"),
    ("speech+text LMs", r"$p(\mathrm{text},\ \mathrm{speech})$", "SpiRit-LM, Moshi", "notebooks 07-08", "C2"),
    (
        "speech-aware text LMs",
        r"$p(\mathrm{text} \mid \mathrm{speech},\ \mathrm{text})$",
        "SALMONN, Qwen-Audio",
        "notebook 09",
        "C4",
    ),
)
_UNIVERSAL = (
    "a universal SLM: (1) speech in and out, (2) any spoken-language task,\n"
    "(3) instructions in natural language  -  notebook 10, the capstone (to come)"
)


def plot_taxonomy(ax: Axes | None = None) -> Axes:
    """The course's map of spoken language models: three families, the cascade baseline, the universal SLM.

    Each family box gives the distribution it models, example systems and the notebooks that build it;
    the foundations (notebooks 00, 02, 03) run along the bottom. Returns the ``Axes`` (axis off).
    """
    from matplotlib.colors import to_rgba
    from matplotlib.patches import FancyBboxPatch

    ax = _axes(ax, figsize=(11, 4.6))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 46)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, color: str, dashed: bool = False) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                w,
                h,
                boxstyle="round,pad=0.4,rounding_size=1.2",
                fc=to_rgba(color, 0.12),
                ec=to_rgba(color, 0.8),
                lw=1.5,
                ls="--" if dashed else "-",
            )
        )

    # The cascade, on the left: a pipeline of text-only parts, the baseline every SLM must beat.
    box(1, 15, 20, 26, "0.4", dashed=True)
    ax.text(11, 38, "the cascade", ha="center", va="center", fontsize=11, weight="bold")
    ax.text(11, 33.5, "ASR $\\to$ text LM $\\to$ TTS", ha="center", va="center", fontsize=10)
    ax.text(11, 27, "a strong baseline;\nloses voice, style\nand intonation", ha="center", va="center", fontsize=9)
    ax.text(11, 18.5, "notebook 01", ha="center", va="center", fontsize=9.5, style="italic")
    # The three families: one box each.
    for k, (name, formula, examples, where, color) in enumerate(_FAMILIES):
        x = 25 + 25 * k
        box(x, 15, 23, 26, color)
        ax.text(x + 11.5, 38, name, ha="center", va="center", fontsize=11, weight="bold", color=color)
        ax.text(x + 11.5, 32.5, formula, ha="center", va="center", fontsize=12)
        ax.text(x + 11.5, 26, examples, ha="center", va="center", fontsize=9.5)
        ax.text(x + 11.5, 18.5, where, ha="center", va="center", fontsize=9.5, style="italic")
    # What they all aim at, and what they all stand on.
    box(25, 5.5, 73, 6, "C3")
    ax.text(61.5, 8.5, _UNIVERSAL, ha="center", va="center", fontsize=9.5)
    ax.annotate("", xy=(61.5, 12.3), xytext=(61.5, 14.4), arrowprops={"arrowstyle": "->", "color": "C3", "lw": 1.5})
    ax.text(
        50,
        1,
        "foundations: 00 audio and the corpus  $\\cdot$  02 speech units  $\\cdot$  03 neural codec",
        ha="center",
        va="center",
        fontsize=9.5,
        color="0.3",
    )
    ax.text(
        50,
        45,
        "Spoken language models: what each family models, and where this course builds it",
        ha="center",
        va="center",
        fontsize=12,
    )
    return ax
