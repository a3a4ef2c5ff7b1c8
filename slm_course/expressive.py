"""Expressive speech tokens (notebook 07): pitch and style tokens merged with the units by timestamp.

SpiRit-LM's expressive variant keeps what de-duplicated HuBERT units throw away, *how* something is
said, with two more token streams: pitch tokens (its F0 at 12.5 Hz, one per 80 ms) and style
tokens (one per second), each de-duplicated and merged with the units in the order of their
timestamps, so that one token sequence still reads left to right in time. The toy does the same with
the course's own parts:

- :func:`log_f0`, :func:`pitch_windows` and :func:`style_features`: the course's pitch tracker
  (notebook 00), the median log-F0 of each 80 ms window, and each second's prosody (pitch spread and
  range, voiced onsets per second, voiced share, pitch level);
- pitch tokens quantise the window medians into ``n_pitch`` bins of equal mass (the bin edges are
  quantiles of the training speech); style tokens are k-means clusters of the per-second features;
- :func:`dedup_timed` and :func:`merge_by_time`, the two mechanisms;
- :class:`ExpressiveTokens`, a speech tokenizer whose tokens are units, then pitch, then style ids in
  one vocabulary: ``encode(wav)`` gives the merged stream with each unit's duration (pitch and style
  tokens last 0 frames, so the durations still add up to the utterance's time and
  :func:`slm_course.spiritlm.word_units` cuts it at words unchanged);
- :class:`ExpressiveVocoder`: a source-filter vocoder, the course's unit vocoder for the filter and
  the pitch tokens for the source, so what the LM writes about pitch can be heard.

How it is fitted and measured (the cached tokenizer, style preservation, the style probe) is in
:mod:`slm_course.expressive_recipe`; the expressive LM itself is trained by
``spiritlm_recipe.load_spiritlm(expressive=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slm_course.audio import SR, check_wav
from slm_course.runtime import digest
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens
from slm_course.units import UnitVocoder

__all__ = ["PITCH_HOP", "STYLE_HOP", "ExpressiveTokens", "ExpressiveVocoder", "dedup_timed", "frame_streams",
           "log_f0", "merge_by_time", "pitch_windows", "style_durations", "style_features", "with_durations"]

PITCH_HOP = 0.08  # s per pitch token (SpiRit-LM: 12.5 Hz)
STYLE_HOP = 1.0  # s per style token (SpiRit-LM: 1 Hz)
F0_HOP = 0.01  # s per frame of the pitch tracker


def log_f0(wav: torch.Tensor | np.ndarray) -> np.ndarray:
    """log2 F0 every 10 ms (NaN where unvoiced), from the course's pitch tracker. (frames,)"""
    from slm_course.audio import pitch

    _, f0 = pitch(wav, hop_ms=F0_HOP * 1000)
    return np.log2(f0.numpy())


def pitch_windows(lf0: np.ndarray, hop: float = PITCH_HOP) -> tuple[np.ndarray, np.ndarray]:
    """``(values, starts)`` of every ``hop``-second window: its median log-F0, NaN if fewer than 2 frames are voiced."""
    n = max(1, round(hop / F0_HOP))
    lf0 = np.asarray(lf0)
    starts = np.arange(0, len(lf0), n) * F0_HOP
    # all windows at once: one row each, padded with NaN, sorted so that its k voiced values come first
    rows = np.sort(np.pad(lf0, (0, -len(lf0) % n), constant_values=np.nan).reshape(-1, n), axis=1)
    k = (~np.isnan(rows)).sum(axis=1)
    r = np.arange(len(rows))
    lo, hi = rows[r, np.maximum(k - 1, 0) // 2], rows[r, np.minimum(k // 2, n - 1)]
    median = np.where(k % 2 == 1, hi, (lo + hi) / lo.dtype.type(2))  # np.median's middle value, or its two's mean
    return np.where(k >= 2, median, np.nan).astype(np.float64), starts


def style_features(lf0: np.ndarray, hop: float = STYLE_HOP) -> tuple[np.ndarray, np.ndarray]:
    """``(features (W, 5), starts (W,))``: per ``hop``-second window (the last one if it is at least a third of
    ``hop``): log-F0 spread and 10-90% range, voiced onsets per second, voiced share and median log-F0."""
    n = max(1, round(hop / F0_HOP))
    voiced_all = ~np.isnan(lf0)
    fallback = float(np.median(lf0[voiced_all])) if voiced_all.any() else 7.0  # 7 octaves: 128 Hz
    feats, starts = [], []
    for s in range(0, len(lf0), n):
        w = lf0[s : s + n]
        if s and len(w) < n / 3:
            break
        v = ~np.isnan(w)
        x = w[v] if v.sum() >= 3 else np.full(3, fallback)
        onsets = float((v[1:] & ~v[:-1]).sum()) / (len(w) * F0_HOP)
        feats.append([x.std(), np.quantile(x, 0.9) - np.quantile(x, 0.1), onsets, v.mean(), np.median(x)])
        starts.append(s * F0_HOP)
    return np.array(feats, dtype=np.float32).reshape(-1, 5), np.array(starts)


def dedup_timed(ids: Sequence[int], times: Sequence[float]) -> tuple[list[int], list[float]]:
    """Merge runs of a repeated token into its first occurrence, keeping that occurrence's time."""
    if len(ids) != len(times):
        raise ValueError(f"{len(ids)} ids but {len(times)} times: give one time per token")
    out_ids, out_times = [], []
    for i, t in zip(ids, times, strict=True):
        if not out_ids or int(i) != out_ids[-1]:
            out_ids.append(int(i))
            out_times.append(float(t))
    return out_ids, out_times


def merge_by_time(*streams: tuple[Sequence[int], Sequence[float]]) -> tuple[list[int], list[float]]:
    """One sequence from several ``(ids, times)`` streams, in the order of their times.

    At equal times a token of an earlier stream comes first (the recipe passes style, pitch, units:
    the slower stream first, so the units it describes follow it). Each stream's own order is kept.
    Times are compared to the nanosecond, so that 4 frames / 50 and 8 frames x 0.01 s are one time.
    """
    keyed = []
    for k, (ids, times) in enumerate(streams):
        if len(ids) != len(times):
            raise ValueError(f"stream {k} has {len(ids)} ids but {len(times)} times: give one time per token")
        if len(times) and np.any(np.diff(np.asarray(times, dtype=float)) < 0):
            raise ValueError(f"stream {k}'s times go backwards: each stream must be in time order")
        keyed += [(round(float(t), 9), k, j, int(i)) for j, (i, t) in enumerate(zip(ids, times, strict=True))]
    keyed.sort()
    return [i for *_, i in keyed], [t for t, *_ in keyed]


class ExpressiveTokens(SpeechTokenizer):
    """Units, pitch and style tokens in one vocabulary (units first, then ``n_pitch``, then ``n_style`` ids), merged.

    ``units``: the unit tokenizer (the course's speaker-normalised units); ``pitch_edges``: the log-F0
    bin edges (``n_pitch`` is their number + 2: one id per bin, and the last one for "unvoiced"); ``style_mean``/``style_std``/``style_centroids``: how style
    features are standardised and clustered. Build one with :meth:`fit`.
    """

    name = "expressive-units"

    def __init__(self, units: SpeechTokenizer, pitch_edges: torch.Tensor, style_mean: torch.Tensor,
                 style_std: torch.Tensor, style_centroids: torch.Tensor) -> None:
        self.units = units
        self.pitch_edges = torch.as_tensor(pitch_edges, dtype=torch.float32)
        self.style_mean = torch.as_tensor(style_mean, dtype=torch.float32)
        self.style_std = torch.as_tensor(style_std, dtype=torch.float32)
        self.style_centroids = torch.as_tensor(style_centroids, dtype=torch.float32)
        self.n_units = units.vocab_size
        self.n_pitch = len(self.pitch_edges) + 2  # bins, then unvoiced
        self.n_style = len(self.style_centroids)
        self.vocab_size = self.n_units + self.n_pitch + self.n_style
        self.frame_rate = units.frame_rate

    @classmethod
    def fit(cls, units: SpeechTokenizer, wavs: Sequence[torch.Tensor], n_bins: int = 16, n_style: int = 8,
            seed: int = 0) -> ExpressiveTokens:
        """``n_bins`` pitch bins of equal mass and ``n_style`` style clusters, from ``wavs`` (training speech)."""
        from slm_course.units import fit_kmeans

        if n_bins < 2 or n_style < 1:
            raise ValueError(f"need n_bins >= 2 and n_style >= 1, got {n_bins} and {n_style}")
        tracks = [log_f0(w) for w in wavs]
        values = np.concatenate([pitch_windows(t)[0] for t in tracks])
        values = values[~np.isnan(values)]
        feats = np.concatenate([style_features(t)[0] for t in tracks])
        if len(values) < n_bins or len(feats) < n_style:
            raise ValueError(f"{len(values)} voiced windows and {len(feats)} style windows are too few to fit "
                             f"{n_bins} pitch bins and {n_style} styles: give more (voiced) speech")
        edges = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
        mean, std = feats.mean(0), feats.std(0) + 1e-6
        centroids = fit_kmeans(torch.tensor((feats - mean) / std), n_style, seed=seed)
        return cls(units, torch.tensor(edges), torch.tensor(mean), torch.tensor(std), centroids)

    @property
    def cache_key(self) -> str:
        from slm_course.speech_tokens import tokenizer_key

        return digest(tokenizer_key(self.units), self.pitch_edges, self.style_centroids, self.style_mean)

    def pitch_tokens(self, lf0: np.ndarray) -> tuple[list[int], list[float]]:
        """De-duplicated pitch ids (a bin 0..n_pitch-2, or n_pitch-1 for an unvoiced window) and their start times."""
        if np.nanmax(lf0, initial=0.0) > 12:  # 2^12 Hz: nobody speaks that high
            raise ValueError("lf0 must be log2 F0 (log_f0(wav)), got values above 12: were they in Hz?")
        values, starts = pitch_windows(lf0)
        ids = np.where(np.isnan(values), self.n_pitch - 1, np.searchsorted(self.pitch_edges.numpy(), values))
        return dedup_timed(ids.tolist(), starts.tolist())

    def pitch_log2(self, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Each pitch id's log2 F0 (its bin's centre; NaN for unvoiced). Outer bins are as wide as their neighbours."""
        e = self.pitch_edges.double()
        centres = torch.cat([e[:1] - (e[1] - e[0]) / 2, (e[1:] + e[:-1]) / 2, e[-1:] + (e[-1] - e[-2]) / 2,
                             torch.tensor([float("nan")], dtype=torch.float64)])
        return centres[torch.as_tensor(ids).long()].float()

    def style_tokens(self, lf0: np.ndarray) -> tuple[list[int], list[float]]:
        """De-duplicated style-cluster ids (0..n_style-1) and their start times."""
        from slm_course.units import kmeans_assign

        feats, starts = style_features(lf0)
        x = (torch.from_numpy(feats) - self.style_mean) / self.style_std
        return dedup_timed(kmeans_assign(x, self.style_centroids).tolist(), starts.tolist())

    def _encode(self, wav: torch.Tensor) -> SpeechTokens:
        return self._merge(wav, self.units.encode(wav))

    def merge(self, wav: torch.Tensor | np.ndarray, units: SpeechTokens, sr: int = SR) -> SpeechTokens:
        """:meth:`encode` given the units of ``wav`` (``self.units.encode(wav)``, or a stored copy of them): the pitch
        and style tokens are tracked on ``wav`` and merged with ``units`` by time, so a corpus whose units are
        already encoded is not encoded again."""
        x = check_wav(wav, sr, expected_sr=self.sr)
        if not isinstance(units, SpeechTokens):
            raise TypeError(f"units must be the SpeechTokens of self.units.encode(wav), got {type(units).__name__}")
        if units.frame_rate != self.frame_rate:
            raise ValueError(f"units are at {units.frame_rate} frames/s but this tokenizer's units are at "
                             f"{self.frame_rate}: pass self.units.encode(wav)")
        self.units.check_ids(units.ids)
        return self._merge(x, units)

    def _merge(self, wav: torch.Tensor, u: SpeechTokens) -> SpeechTokens:
        durations = u.durations if u.durations is not None else torch.ones(len(u.ids), dtype=torch.long)
        unit_times = ((torch.cumsum(durations, 0) - durations).double() / self.frame_rate).tolist()
        lf0 = log_f0(wav)
        pitch, p_times = self.pitch_tokens(lf0)
        style, s_times = self.style_tokens(lf0)
        ids, _ = merge_by_time(([s + self.n_units + self.n_pitch for s in style], s_times),
                               ([p + self.n_units for p in pitch], p_times), (u.ids.tolist(), unit_times))
        ids_t = torch.tensor(ids, dtype=torch.long)
        dur = torch.zeros(len(ids), dtype=torch.long)
        dur[ids_t < self.n_units] = durations.long()  # units keep their frames, in their order
        return SpeechTokens(ids_t, self.frame_rate, dur)

    def split(self, ids: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """The merged ids' three streams: ``units``, ``pitch`` (0..n_pitch-1) and ``style`` (0..n_style-1)."""
        ids = torch.as_tensor(ids).long()
        self.check_ids(ids)
        p0, s0 = self.n_units, self.n_units + self.n_pitch
        return {"units": ids[ids < p0], "pitch": ids[(ids >= p0) & (ids < s0)] - p0, "style": ids[ids >= s0] - s0}

    def __repr__(self) -> str:
        return f"ExpressiveTokens({self.n_units} units + {self.n_pitch} pitch + {self.n_style} style)"


def frame_streams(ids: torch.Tensor, durations: torch.Tensor, n_units: int, n_pitch: int, n_style: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merged ids with unit durations -> per frame ``(unit, pitch, style)``: each frame's unit, and the latest
    pitch and style token before it (``n_pitch`` / ``n_style`` = none yet, an extra id of each). (T,) each."""
    ids, durations = torch.as_tensor(ids).long(), torch.as_tensor(durations).long()
    if ids.shape != durations.shape or ids.ndim != 1:
        raise ValueError(f"ids {tuple(ids.shape)} and durations {tuple(durations.shape)} must be two (T,) tensors")
    units, pitch, style = [], [], []
    p, s = n_pitch, n_style
    for i, d in zip(ids.tolist(), durations.tolist(), strict=True):
        if i < n_units:
            units += [i] * max(d, 1)
            pitch += [p] * max(d, 1)
            style += [s] * max(d, 1)
        elif i < n_units + n_pitch:
            p = i - n_units
        else:
            s = i - n_units - n_pitch
    return (torch.tensor(units, dtype=torch.long), torch.tensor(pitch, dtype=torch.long),
            torch.tensor(style, dtype=torch.long))


def style_durations(streams: Sequence[SpeechTokens], tokens: ExpressiveTokens, prior: float = 5.0) -> torch.Tensor:
    """A duration model: each unit's mean frames under each style token, ``(n_style + 1, n_units)`` (the last row:
    before any style token). Few observations lean on the unit's mean over all styles (``prior`` pseudo-counts)."""
    n_units, n_style = tokens.n_units, tokens.n_style
    total, count = torch.zeros(n_style + 1, n_units), torch.zeros(n_style + 1, n_units)
    for t in streams:
        units, _, style = frame_streams(t.ids, t.durations, n_units, tokens.n_pitch, n_style)
        change = torch.ones(len(units), dtype=torch.bool)
        change[1:] = (units[1:] != units[:-1]) | (style[1:] != style[:-1])
        run = torch.cumsum(change.long(), 0) - 1  # one run per unit occurrence
        lengths = torch.bincount(run).float()
        total.index_put_((style[change], units[change]), lengths, accumulate=True)
        count.index_put_((style[change], units[change]), torch.ones(len(lengths)), accumulate=True)
    overall = total.sum(0) / count.sum(0).clamp_min(1)
    overall = torch.where(count.sum(0) > 0, overall, torch.ones_like(overall))
    return ((total + prior * overall) / (count + prior)).round().clamp_min(1).long()


def with_durations(ids: torch.Tensor | Sequence[int], table: torch.Tensor, tokens: ExpressiveTokens) -> SpeechTokens:
    """An LM's merged ids -> :class:`SpeechTokens` whose units last ``table[current style, unit]`` frames (others 0)."""
    ids = torch.as_tensor(ids).long()
    tokens.check_ids(ids)
    n_units, n_pitch, n_style = tokens.n_units, tokens.n_pitch, tokens.n_style
    if table.shape != (n_style + 1, n_units):
        raise ValueError(f"table must be (n_style + 1, n_units) = {(n_style + 1, n_units)} (style_durations), "
                         f"got {tuple(table.shape)}")
    durations, style = torch.zeros(len(ids), dtype=torch.long), n_style
    for k, i in enumerate(ids.tolist()):
        if i < n_units:
            durations[k] = table[style, i]
        elif i >= n_units + n_pitch:
            style = i - n_units - n_pitch
    return SpeechTokens(ids, tokens.frame_rate, durations)


class ExpressiveVocoder:
    """A source-filter vocoder: the unit vocoder (notebook 02) says *what*, the pitch tokens say *how high*.

    The unit vocoder's spectrogram, smoothed along frequency (its first ``lifter`` cepstral
    coefficients), is the vocal tract's filter; the source is a train of harmonics at each frame's
    pitch-token F0 (noise where the token says unvoiced); the two are multiplied frame by frame and
    turned back into a waveform (the classic vocoder of Dudley, 1939, and of WORLD). Nothing here is
    trained: the pitch the LM writes is the pitch one hears.
    """

    def __init__(self, unit_vocoder: UnitVocoder, tokens: ExpressiveTokens, lifter: int = 30) -> None:
        if unit_vocoder.vocab_size != tokens.n_units:
            raise ValueError(f"the unit vocoder reads {unit_vocoder.vocab_size} units, the tokens have "
                             f"{tokens.n_units}: give the vocoder of the tokens' units (load_unit_vocoder(units.ssl))")
        self.unit_vocoder, self.tokens, self.lifter = unit_vocoder, tokens, lifter

    def envelope(self, units: torch.Tensor) -> torch.Tensor:
        """``(T,)`` frame-level units -> ``(2T, 257)`` smooth log magnitudes (the filter)."""
        with torch.no_grad():
            log_mag = self.unit_vocoder.spectrogram(units[None])[0]  # (2T, 257)
        cep = torch.fft.irfft(log_mag, dim=-1)  # real cepstrum, (2T, 512)
        keep = torch.zeros(cep.shape[-1])
        keep[: self.lifter] = 1
        keep[-(self.lifter - 1) :] = 1
        return torch.fft.rfft(cep * keep, dim=-1).real

    def source(self, f0: torch.Tensor) -> torch.Tensor:
        """Per-10-ms-frame F0 in Hz (NaN = unvoiced) -> an excitation waveform: harmonics up to 8 kHz, or noise."""
        from slm_course.units import VOC_HOP

        hz = f0.repeat_interleave(VOC_HOP).double()
        voiced = ~torch.isnan(hz)
        hz = torch.nan_to_num(hz, nan=100.0).clamp_min(20.0)
        phase = torch.cumsum(2 * torch.pi * hz / SR, 0)
        n_harm = (SR / 2 / hz).floor()  # every harmonic below 8 kHz
        k = torch.arange(1, int(n_harm.max()) + 1, dtype=torch.float64)
        harmonics = (torch.cos(phase[:, None] * k) * (k <= n_harm[:, None])).sum(1) / n_harm.sqrt()
        noise = torch.randn(len(hz), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
        return torch.where(voiced, harmonics, noise).float()

    @torch.no_grad()
    def synthesize(self, tokens: SpeechTokens) -> torch.Tensor:
        """A 16 kHz waveform from a merged stream with durations (``ExpressiveTokens.encode`` or the LM's output)."""
        from slm_course.units import N_FFT, VOC_HOP, VOC_WIN

        if not isinstance(tokens, SpeechTokens) or tokens.durations is None:
            raise TypeError("synthesize needs SpeechTokens with durations: ExpressiveTokens.encode(wav), or an LM's ids "
                            "through with_durations(ids, style_table(tokens), tokens)")
        t = self.tokens
        units, pitch, _ = frame_streams(tokens.ids, tokens.durations, t.n_units, t.n_pitch, t.n_style)
        if len(units) == 0:
            raise ValueError("the stream has no units: there is nothing to say")
        pitch = torch.where(pitch >= t.n_pitch, t.n_pitch - 1, pitch)  # before the first pitch token: unvoiced
        f0 = 2 ** t.pitch_log2(pitch).repeat_interleave(2)  # two 10 ms frames per 20 ms unit
        env = self.envelope(units)  # (2T, 257)
        window = torch.hann_window(VOC_WIN)
        exc = torch.stft(self.source(f0), N_FFT, VOC_HOP, VOC_WIN, window, center=True, return_complex=True)
        n = min(exc.shape[1], env.shape[0])
        flat = exc[:, :n] / exc[:, :n].abs().mean(0, keepdim=True).clamp_min(1e-6)  # the source's own level out
        wav = torch.istft(flat * env[:n].T.exp(), N_FFT, VOC_HOP, VOC_WIN, window, center=True)
        return wav / wav.abs().max().clamp_min(1e-4) * 0.5
