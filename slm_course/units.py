"""Discrete speech units: frames -> k-means -> de-duplicated units, and how good they are (notebook 02).

Every spoken language model of the course reads *units*: a 16 kHz waveform becomes 50 frames per
second, each frame is assigned to the nearest of K centroids, and runs of one unit are merged
(with their durations kept). Two kinds of frames are clustered:

- **log-mel units** (:class:`MelUnits`): 40-band log-mel every 20 ms with one frame of context on
  each side (120 numbers), normalised with statistics of the *whole training corpus* (GSLM's
  log-mel baseline);
- **self-supervised units** (:class:`SslUnits`): one layer of a tiny HuBERT-style Transformer
  (:mod:`slm_course.hubert`) that learned to predict the log-mel units of masked frames (HuBERT's
  second iteration, in miniature).

Both are :class:`slm_course.speech_tokens.SpeechTokenizer` s (``encode(wav) -> SpeechTokens`` with
durations, ``vocab_size``, ``frame_rate``, ``bitrate()``); a :class:`UnitVocoder` (units -> log
spectrogram -> Griffin-Lim) makes them audible. Unit quality is measured against the corpus'
phone alignments: :func:`unit_quality` (PNMI, phone purity, cluster purity) and :func:`abx`
(within- and across-speaker ABX on phones in the same context, DTW with the angular distance).

Later notebooks call :func:`load_mel_units`, :func:`load_ssl_units` and :func:`load_unit_vocoder`,
which load from the cache or train with the same recipe and seed; a tokenizer decodes once it has
a vocoder (``units.vocoder = load_unit_vocoder(units)``, then ``units.decode(tokens)``).

>>> units = load_ssl_units()                               # doctest: +SKIP
>>> tokens = units.encode(corpus.wav(utt))                 # doctest: +SKIP
>>> tokens.ids[:8], tokens.durations[:8]                   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from slm_course import audio
from slm_course.corpus import corpus_version
from slm_course.hubert import HubertConfig, TinyHubert
from slm_course.runtime import artifact_record, cached, digest, recipe_config, seed_everything
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens, check_ids, deduplicate, expand
from slm_course.train import History, TrainConfig, model_record, restore, train

if TYPE_CHECKING:
    from slm_course.corpus import Corpus, Utterance

__all__ = [
    "FRAME_RATE",
    "SILENCE",
    "AbxItem",
    "FeatureNorm",
    "MelUnits",
    "SslUnits",
    "UnitVocoder",
    "VocoderConfig",
    "abx",
    "abx_items",
    "bench_units",
    "dtw_distance",
    "evaluate_units",
    "fit_kmeans",
    "frame_phones",
    "kmeans_assign",
    "load_hubert",
    "load_mel_units",
    "load_ssl_units",
    "load_unit_vocoder",
    "mel_features",
    "mel_frames",
    "per_utterance_normalise",
    "phone_unit_counts",
    "resynthesis_cer",
    "stack_context",
    "train_hubert",
    "train_mel_units",
    "train_unit_vocoder",
    "unit_quality",
]

SR = audio.SR  # 16 kHz
HOP_MS = 20.0  # one unit frame every 20 ms ...
FRAME_RATE = 1000.0 / HOP_MS  # ... 50 frames per second, as HuBERT's
N_MELS = 40  # log-mel bands of the baseline frames
CONTEXT = 1  # frames of context stacked on each side: 3 x 40 = 120 numbers per frame
SILENCE = "sil"  # the phone label of frames outside every phone span
RECIPE = 1  # bump when the recipe changes in a way the configs do not show: cached models are rebuilt


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


def mel_frames(wav: torch.Tensor | np.ndarray, sr: int = SR, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel frames at 50 Hz (25 ms window, 20 ms hop): ``(frames, n_mels)``, time first.

    >>> mel_frames(torch.randn(16000)).shape
    torch.Size([51, 40])
    """
    x = audio.check_wav(wav, sr, expected_sr=SR)
    return audio.log_mel(x, SR, n_mels=n_mels, win_ms=25.0, hop_ms=HOP_MS).T.contiguous()  # (T, n_mels)


def stack_context(frames: torch.Tensor, context: int = CONTEXT) -> torch.Tensor:
    """Each frame with its ``context`` neighbours on each side: ``(T, D) -> (T, (2 * context + 1) * D)``.

    Edges repeat the first and last frame. ``[f0, f1, f2]`` with context 1 gives rows
    ``[f0 f0 f1], [f0 f1 f2], [f1 f2 f2]``.
    """
    if frames.ndim != 2:
        raise ValueError(f"frames must be (T, D), got shape {tuple(frames.shape)}")
    if context < 0:
        raise ValueError(f"context must be >= 0 frames, got {context}")
    if context == 0:
        return frames
    T = frames.shape[0]
    idx = (torch.arange(T)[:, None] + torch.arange(-context, context + 1)[None, :]).clamp(0, T - 1)  # (T, 2c+1)
    return frames[idx].reshape(T, -1)  # (T, (2c+1) * D)


def mel_features(wav: torch.Tensor | np.ndarray, sr: int = SR) -> torch.Tensor:
    """The baseline's frames, before normalisation: 40-band log-mel with +-1 frame of context, ``(T, 120)``."""
    return stack_context(mel_frames(wav, sr), CONTEXT)


@dataclass(frozen=True)
class FeatureNorm:
    """Mean and variance normalisation with fixed statistics: ``(x - mean) / std`` per dimension.

    Fit it on the *whole training corpus* (:meth:`fit`), not per utterance: a one-word utterance has
    too few frames for its own mean to be the speaker's average, so per-utterance normalisation
    shifts its frames away from those of the same sounds in long sentences.
    """

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    @classmethod
    def fit(cls, feats: Sequence[torch.Tensor] | torch.Tensor) -> FeatureNorm:
        """Statistics over every frame of ``feats`` (a list of ``(T, D)`` tensors or one ``(N, D)``)."""
        x = torch.cat(list(feats)) if not isinstance(feats, torch.Tensor) else feats
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"FeatureNorm.fit needs frames (N, D) with N >= 2, got shape {tuple(x.shape)}")
        return cls(x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-5))

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 2 or feats.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"feats must be (T, {self.mean.shape[0]}) frames of the kind the statistics were fitted on, "
                f"got {tuple(feats.shape)}"
            )
        return (feats - self.mean) / self.std


def per_utterance_normalise(feats: torch.Tensor) -> torch.Tensor:
    """The tempting alternative: each utterance normalised by its own frames' mean and std (``(T, D)``)."""
    return (feats - feats.mean(dim=0)) / feats.std(dim=0, unbiased=False).clamp_min(1e-5)


# ---------------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------------


def kmeans_assign(feats: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean distance) for every frame: ``(T, D), (K, D) -> (T,)``.

    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2``, and ``|x|^2`` is the same for every centroid, so the
    argmin needs only ``|c|^2 - 2 x.c``.

    >>> kmeans_assign(torch.tensor([[0.0], [0.9], [2.2]]), torch.tensor([[0.0], [2.0]]))
    tensor([0, 0, 1])
    """
    if feats.ndim != 2 or centroids.ndim != 2 or feats.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"feats (T, D) and centroids (K, D) must share D, got {tuple(feats.shape)} and {tuple(centroids.shape)}"
        )
    feats, centroids = feats.float(), centroids.float()
    scores = (centroids * centroids).sum(dim=1)[None, :] - 2 * feats @ centroids.T  # (T, K)
    return scores.argmin(dim=1)


def fit_kmeans(feats: torch.Tensor, k: int, seed: int = 0, max_frames: int = 60_000) -> torch.Tensor:
    """K centroids ``(k, D)`` from frames ``(N, D)`` with scikit-learn's MiniBatchKMeans (k-means++ start).

    At most ``max_frames`` frames, drawn with a seeded generator, are clustered (GSLM's tools
    cluster a sample of the frames too).
    """
    from sklearn.cluster import MiniBatchKMeans

    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int >= 2 clusters, got {k!r}")
    if feats.ndim != 2 or feats.shape[0] < k:
        raise ValueError(f"need frames (N, D) with N >= k={k}, got shape {tuple(feats.shape)}")
    x = feats.float()
    if x.shape[0] > max_frames:
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_frames]
        x = x[pick]
    km = MiniBatchKMeans(
        n_clusters=k, init="k-means++", batch_size=4096, max_iter=50, n_init=3, random_state=seed,
        max_no_improvement=20, reassignment_ratio=0.01,
    )
    km.fit(x.numpy().astype(np.float64))
    return torch.from_numpy(km.cluster_centers_).float()


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


class _KMeansUnits(SpeechTokenizer):
    """Shared part of the unit tokenizers: dense frames -> nearest centroid -> de-duplication."""

    frame_rate = FRAME_RATE
    n_levels = 1

    def __init__(self, centroids: torch.Tensor, vocoder: UnitVocoder | None = None) -> None:
        if centroids.ndim != 2 or centroids.shape[0] < 2:
            raise ValueError(f"centroids must be (K, D) with K >= 2, got {tuple(centroids.shape)}")
        self.centroids = centroids.float()  # (K, D)
        self.vocab_size = int(centroids.shape[0])
        self.vocoder = vocoder

    def features(self, wav: torch.Tensor | np.ndarray, sr: int = SR) -> torch.Tensor:
        """The dense frames that are clustered, ``(T, D)`` at 50 Hz."""
        x = audio.check_wav(wav, sr, expected_sr=self.sr)
        return self._features(x)

    def _features(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def frame_units(self, wav: torch.Tensor | np.ndarray, sr: int = SR) -> torch.Tensor:
        """One unit per 20 ms frame, before de-duplication: ``(T,)``."""
        return kmeans_assign(self.features(wav, sr), self.centroids)

    def _encode(self, wav: torch.Tensor) -> SpeechTokens:
        units, durations = deduplicate(kmeans_assign(self._features(wav), self.centroids))
        return SpeechTokens(units, self.frame_rate, durations)

    def _decode(self, tokens: SpeechTokens) -> torch.Tensor:
        if self.vocoder is None:
            return super()._decode(tokens)
        return self.vocoder.synthesize(tokens)


class MelUnits(_KMeansUnits):
    """Log-mel k-means units: corpus-normalised 120-d log-mel frames -> nearest of K centroids.

    >>> units = load_mel_units(k=100)                          # doctest: +SKIP
    >>> units.encode(wav).ids                                  # doctest: +SKIP
    """

    name = "mel-units"

    def __init__(self, norm: FeatureNorm, centroids: torch.Tensor, vocoder: UnitVocoder | None = None) -> None:
        super().__init__(centroids, vocoder)
        if centroids.shape[1] != norm.mean.shape[0]:
            raise ValueError(f"centroids have {centroids.shape[1]} dimensions, the features {norm.mean.shape[0]}")
        self.norm = norm

    def _features(self, wav: torch.Tensor) -> torch.Tensor:
        return self.norm(mel_features(wav))  # (T, 120)

    def __repr__(self) -> str:
        return f"MelUnits(K={self.vocab_size}, {self.frame_rate:g} Hz, {self.bitrate():.0f} bit/s before de-duplication)"


class SslUnits(_KMeansUnits):
    """Self-supervised units: one layer of a tiny HuBERT (:mod:`slm_course.hubert`) -> nearest of K centroids."""

    name = "ssl-units"

    def __init__(
        self, model: TinyHubert, norm: FeatureNorm, layer: int, centroids: torch.Tensor,
        vocoder: UnitVocoder | None = None,
    ) -> None:
        super().__init__(centroids, vocoder)
        if not 0 <= layer <= model.config.n_layers:
            raise ValueError(f"layer must be in 0..{model.config.n_layers}, got {layer}")
        self.model, self.norm, self.layer = model.eval(), norm, layer

    @torch.no_grad()
    def _features(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.norm(mel_frames(wav))  # (T, 40)
        return self.model.layer_output(x, self.layer)  # (T, d_model)

    def __repr__(self) -> str:
        return f"SslUnits(layer {self.layer}, K={self.vocab_size}, {self.frame_rate:g} Hz)"


# ---------------------------------------------------------------------------------------------
# Unit quality against phone alignments
# ---------------------------------------------------------------------------------------------


def frame_phones(utt: Utterance, n_frames: int, frame_rate: float = FRAME_RATE) -> list[str]:
    """The phone said at each frame's centre (``i / frame_rate`` s), :data:`SILENCE` outside every span."""
    labels = [SILENCE] * n_frames
    for span in utt.phone_spans:
        first = max(0, math.ceil(span.start * frame_rate - 1e-9))
        last = min(n_frames, math.ceil(span.end * frame_rate - 1e-9))
        for i in range(first, last):
            labels[i] = span.label
    return labels


def phone_unit_counts(phones: Sequence[str], units: Sequence[int] | torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """Joint counts ``(n_phones, K)`` of frame-level phone labels and units, and the phone names (rows)."""
    units = torch.as_tensor(units).long().tolist()
    if len(phones) != len(units):
        raise ValueError(f"one phone label per frame: got {len(phones)} labels and {len(units)} units")
    if not units:
        raise ValueError("no frames to count")
    if min(units) < 0:
        raise ValueError(f"units must be ids >= 0, got {min(units)}")
    names = sorted(set(phones))
    row = {p: i for i, p in enumerate(names)}
    counts = np.zeros((len(names), max(units) + 1))
    np.add.at(counts, ([row[p] for p in phones], units), 1)
    return counts, names


def unit_quality(phones: Sequence[str], units: Sequence[int] | torch.Tensor) -> dict[str, float]:
    """PNMI, phone purity and cluster purity of frame-level units against phone labels (HuBERT's measures).

    From the joint distribution ``p(phone, unit)`` of frames: PNMI ``= I(phone; unit) / H(phone)``
    (the share of the phone's uncertainty that the unit removes, 1 = units determine phones),
    phone purity ``= sum_unit max_phone p`` (accuracy of guessing each unit's commonest phone) and
    cluster purity ``= sum_phone max_unit p``.

    >>> unit_quality(["a", "a", "b", "b"], [0, 0, 1, 1])["pnmi"]
    1.0
    """
    counts, _ = phone_unit_counts(phones, units)
    p = counts / counts.sum()  # (P, K)
    p_phone, p_unit = p.sum(axis=1), p.sum(axis=0)  # (P,), (K,)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (p_phone[:, None] * p_unit[None, :])[nz])).sum())
    h_phone = float(-(p_phone[p_phone > 0] * np.log(p_phone[p_phone > 0])).sum())
    return {
        "pnmi": mi / h_phone if h_phone > 0 else 0.0,
        "phone_purity": float(p.max(axis=0).sum()),
        "cluster_purity": float(p.max(axis=1).sum()),
    }


def dtw_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Dynamic time warping of two frame sequences with the angular distance ``arccos(cos) / pi``.

    The cost is averaged along the best path (summed cost / path length, as in ZeroSpeech's ABX),
    so long and short segments compare fairly. ``a`` is ``(Ta, D)``, ``b`` is ``(Tb, D)``.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"a and b must be non-empty (T, D) frames of one D, got {tuple(a.shape)}, {tuple(b.shape)}")
    an = F.normalize(a.double(), dim=1)
    bn = F.normalize(b.double(), dim=1)
    cost = (torch.arccos((an @ bn.T).clamp(-1, 1)) / math.pi).numpy()  # (Ta, Tb)
    Ta, Tb = cost.shape
    acc = np.full((Ta + 1, Tb + 1), np.inf)
    steps = np.zeros((Ta + 1, Tb + 1))
    acc[0, 0] = 0.0
    for i in range(1, Ta + 1):
        for j in range(1, Tb + 1):
            moves = ((acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1]))
            best, n = min(moves, key=lambda m: m[0])
            acc[i, j] = best + cost[i - 1, j - 1]
            steps[i, j] = n + 1
    return float(acc[Ta, Tb] / steps[Ta, Tb])


@dataclass(frozen=True)
class AbxItem:
    """One phone in context: where it is, what it is, who said it."""

    utt: str  # utterance id
    phone: str  # the centre phone
    context: tuple[str, str]  # previous and next phone
    speaker: str
    first: int  # first frame (at 50 Hz)
    last: int  # one past the last frame


def abx_items(utterances: Sequence[Utterance], frame_rate: float = FRAME_RATE, min_frames: int = 2) -> list[AbxItem]:
    """Every phone with a phone on each side (a triphone) in ``utterances``, as :class:`AbxItem` s.

    Two items with the same context and different centre phones are a minimal pair (``b-ɛ-d`` vs
    ``b-æ-d``); ABX asks whether a third token of one of them is nearer to its own kind.
    """
    items = []
    for u in utterances:
        spans = u.phone_spans
        for k in range(1, len(spans) - 1):
            first = round(spans[k].start * frame_rate)
            last = round(spans[k].end * frame_rate)
            if last - first >= min_frames:
                items.append(AbxItem(u.id, spans[k].label, (spans[k - 1].label, spans[k + 1].label), u.speaker,
                                     first, last))
    return items


def abx(
    items: Sequence[AbxItem],
    frames: dict[str, torch.Tensor],
    across: bool = False,
    max_per_cell: int = 4,
    max_pairs: int = 400,
    seed: int = 0,
) -> float:
    """ABX error rate (0 = perfect, 0.5 = chance) of frame representations on phones in context.

    ``frames`` maps an utterance id to its ``(T, D)`` frames at 50 Hz: dense features, or one-hot
    units (``F.one_hot(units, K)``). For a minimal pair of centre phones (a, b) in one context, A
    and X are tokens of a, B a token of b; the trial is right when ``d(A, X) < d(B, X)`` (a tie
    counts half), with ``d`` the DTW of :func:`dtw_distance`. *Within*: A, B and X come from one
    speaker. *Across*: A and B from one speaker, X from another. The error is averaged over
    contexts and speakers per phone pair, then over phone pairs (as ZeroSpeech does). At most
    ``max_per_cell`` tokens per (phone, context, speaker) and ``max_pairs`` phone pairs are used,
    drawn with a seeded generator, to keep it fast.
    """
    rng = np.random.default_rng(seed)
    cells: dict[tuple, list[AbxItem]] = defaultdict(list)
    for it in items:
        if it.utt not in frames:
            raise KeyError(f"no frames for utterance {it.utt}: pass frames for every item's utterance")
        cells[(it.phone, it.context, it.speaker)].append(it)
    for key in cells:  # a reproducible sample of tokens per cell
        if len(cells[key]) > max_per_cell:
            pick = rng.choice(len(cells[key]), max_per_cell, replace=False)
            cells[key] = [cells[key][i] for i in sorted(pick)]
    by_context: dict[tuple, dict[str, dict[str, list[AbxItem]]]] = defaultdict(lambda: defaultdict(dict))
    for (phone, context, speaker), toks in cells.items():
        by_context[context][phone][speaker] = toks

    memo: dict[tuple[int, int], float] = {}
    segs = {id(it): frames[it.utt][it.first : min(it.last, len(frames[it.utt]))] for toks in cells.values() for it in toks}

    def dist(x: AbxItem, y: AbxItem) -> float:
        key = (id(x), id(y)) if id(x) < id(y) else (id(y), id(x))
        if key not in memo:
            memo[key] = dtw_distance(segs[id(x)], segs[id(y)])
        return memo[key]

    # (a, b) -> list of scores, one per (context, speaker[s])
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    trials: list[tuple] = []
    for context, phones in by_context.items():
        for a in phones:
            for b in phones:
                if a == b:
                    continue
                for spk in phones[a]:
                    if spk not in phones[b]:
                        continue
                    x_speakers = [s for s in phones[a] if s != spk] if across else [spk]
                    for x_spk in x_speakers:
                        trials.append((a, b, context, spk, x_spk))
    pairs = sorted({(t[0], t[1]) for t in trials})
    if not pairs:
        raise ValueError("no ABX trials: the items hold no minimal pairs" + (" said by two speakers" if across else ""))
    if len(pairs) > max_pairs:
        keep = {pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)}
        trials = [t for t in trials if (t[0], t[1]) in keep]
    for a, b, context, spk, x_spk in trials:
        A_toks, B_toks = by_context[context][a][spk], by_context[context][b][spk]
        X_toks = by_context[context][a][x_spk]
        right, n = 0.0, 0
        for A in A_toks:
            for X in X_toks:
                if A is X:
                    continue
                dax = dist(A, X)
                for B in B_toks:
                    dbx = dist(B, X)
                    right += 1.0 if dax < dbx else (0.5 if dax == dbx else 0.0)
                    n += 1
        if n:
            scores[(a, b)].append(right / n)
    if not scores:
        raise ValueError("no ABX trials: each minimal pair needs two tokens of one phone (A and X)")
    return float(1.0 - np.mean([np.mean(v) for v in scores.values()]))


# ---------------------------------------------------------------------------------------------
# Unit-to-speech: units -> log spectrogram -> Griffin-Lim
# ---------------------------------------------------------------------------------------------

N_FFT = 512  # STFT of the vocoder's target: 32 ms window ...
VOC_HOP = 160  # ... every 10 ms, two spectrogram frames per unit frame
VOC_WIN = 400  # 25 ms window


def log_magnitude(wav: torch.Tensor) -> torch.Tensor:
    """The vocoder's target: ``log(|STFT| + 1e-5)``, ``(frames, 257)`` at 100 Hz."""
    spec = torch.stft(wav, N_FFT, VOC_HOP, VOC_WIN, torch.hann_window(VOC_WIN), center=True, return_complex=True)
    return torch.log(spec.abs() + 1e-5).T.contiguous()  # (T, 257)


@artifact_record  # stored in the cached model's record
@dataclass(frozen=True)
class VocoderConfig:
    """The unit-to-spectrogram model and its training budget (a short run on one CPU thread)."""

    embed: int = 128  # unit embedding width
    hidden: int = 192  # GRU units per direction
    steps: int = 500  # optimiser updates
    lr: float = 3e-3  # peak learning rate
    batch_size: int = 16  # crops per batch
    crop: int = 100  # unit frames per crop (2 s)
    griffin_lim_iters: int = 32  # phase-recovery iterations at synthesis
    seed: int = 0  # seeds the weights and the crops


class UnitVocoder(nn.Module):
    """Units -> log-magnitude spectrogram (embedding, conv, BiGRU; 2 frames per unit) -> Griffin-Lim.

    It hears only the units, so every voice comes out as one average voice: what it keeps is what
    the units keep, the words.
    """

    def __init__(self, vocab_size: int, config: VocoderConfig = VocoderConfig()) -> None:
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.embed = nn.Embedding(vocab_size, config.embed)
        self.conv = nn.Conv1d(config.embed, config.embed, kernel_size=5, padding=2)
        self.rnn = nn.GRU(config.embed, config.hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * config.hidden, 2 * (N_FFT // 2 + 1))  # two 10 ms frames per 20 ms unit

    def spectrogram(self, units: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` frame-level units -> ``(B, 2T, 257)`` log magnitudes."""
        x = self.embed(units)  # (B, T, E)
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2) + x
        y, _ = self.rnn(x)  # (B, T, 2H)
        B, T = units.shape
        return self.head(y).reshape(B, T * 2, N_FFT // 2 + 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = self.spectrogram(batch["units"])  # (B, 2T, F)
        target = batch["target"]
        n = min(pred.shape[1], target.shape[1])
        return {"loss": (pred[:, :n] - target[:, :n]).abs().mean()}

    @torch.no_grad()
    def synthesize(self, tokens: SpeechTokens | torch.Tensor) -> torch.Tensor:
        """A 16 kHz waveform ``(T,)`` from units (with durations, or one per frame)."""
        if isinstance(tokens, SpeechTokens):
            units = expand(tokens.ids, tokens.durations) if tokens.durations is not None else tokens.ids
        else:
            units = torch.as_tensor(tokens)
        units = check_ids(units, self.vocab_size, 1, what="unit ids", shape="(T,)", allow_empty=False,
                          hint="was this vocoder trained on another tokenizer?")
        was = self.training
        self.eval()
        mag = self.spectrogram(units.long()[None])[0].exp().T  # (257, 2T)
        self.train(was)
        gl = torchaudio.transforms.GriffinLim(
            n_fft=N_FFT, n_iter=self.config.griffin_lim_iters, win_length=VOC_WIN, hop_length=VOC_HOP, power=1.0,
            rand_init=False,
        )
        wav = gl(mag)
        return wav / wav.abs().max().clamp_min(1e-4) * 0.5


def train_unit_vocoder(
    tokenizer: _KMeansUnits, utterances_wavs: Sequence[torch.Tensor], config: VocoderConfig = VocoderConfig(),
    progress: bool = True,
) -> tuple[UnitVocoder, History]:
    """Train a :class:`UnitVocoder` to turn ``tokenizer`` 's frame-level units back into log spectrograms."""
    pairs = []
    for wav in utterances_wavs:
        units = tokenizer.frame_units(wav)  # (T,)
        target = log_magnitude(audio.check_wav(wav))  # (~2T, 257)
        n = min(len(units), target.shape[0] // 2)
        if n >= 10:
            pairs.append((units[:n], target[: 2 * n]))
    if not pairs:
        raise ValueError("no utterances long enough (0.2 s) to train the vocoder on")
    c = config
    gen = torch.Generator().manual_seed(c.seed)

    def batch(step: int) -> dict[str, torch.Tensor]:
        units, targets = [], []
        for k in torch.randint(len(pairs), (c.batch_size,), generator=gen).tolist():
            u, t = pairs[k]
            start = int(torch.randint(max(1, len(u) - c.crop + 1), (1,), generator=gen))
            u = u[start : start + c.crop]
            t = t[2 * start : 2 * (start + len(u))]
            pad = c.crop - len(u)
            units.append(F.pad(u, (0, pad)))
            targets.append(F.pad(t, (0, 0, 0, 2 * pad), value=math.log(1e-5)))
        return {"units": torch.stack(units), "target": torch.stack(targets)}

    seed_everything(c.seed)
    model = UnitVocoder(tokenizer.vocab_size, c)
    history = train(model, batch, TrainConfig(steps=c.steps, lr=c.lr, warmup_steps=50, eval_every=0, seed=c.seed,
                                              progress=progress, desc="vocoder"))
    return model.eval(), history


# ---------------------------------------------------------------------------------------------
# Recipes and the cache
# ---------------------------------------------------------------------------------------------


def _corpus_tag(corpus: Corpus | None) -> str:
    """Cache-name suffix: empty for the default corpus, a hash of its content for another one."""
    return "" if corpus is None else f"-{corpus.manifest['sha256'][:10]}"


def train_mel_units(
    corpus: Corpus, k: int = 100, seed: int = 0, per_utterance: bool = False
) -> MelUnits:
    """Log-mel units: normalisation statistics over the training split, then k-means with K=``k``.

    ``per_utterance=True`` normalises every utterance by its own statistics instead (for the
    comparison in notebook 02); the tokenizer it returns still applies the corpus statistics.
    """
    feats = [mel_features(corpus.wav(u)) for u in corpus.split("train")]
    norm = FeatureNorm.fit(feats)
    normed = [per_utterance_normalise(f) for f in feats] if per_utterance else [norm(f) for f in feats]
    return MelUnits(norm, fit_kmeans(torch.cat(normed), k, seed))


def load_mel_units(k: int = 100, seed: int = 0, *, corpus: Corpus | None = None, rebuild: bool = False,
                   progress: bool = True) -> MelUnits:
    """The course's log-mel units (K=``k``), from the cache or built (k-means, no training run) with the same recipe and seed."""

    def build() -> dict:
        from slm_course.corpus import load_corpus

        units = train_mel_units(corpus or load_corpus(progress=progress), k, seed)
        return {"mean": units.norm.mean, "std": units.norm.std, "centroids": units.centroids}

    art = cached(f"units-mel-r{RECIPE}-c{corpus_version(corpus)}-k{k}-s{seed}{_corpus_tag(corpus)}", build, rebuild=rebuild)
    return MelUnits(FeatureNorm(art["mean"], art["std"]), art["centroids"])


def train_hubert(
    corpus: Corpus, targets: MelUnits, config: HubertConfig | None = None, progress: bool = True
) -> tuple[TinyHubert, History]:
    """Train a :class:`TinyHubert` on the corpus' training split to predict ``targets`` ' units (default config: the recipe's)."""
    config = recipe_config(config, HubertConfig())
    if targets.vocab_size != config.n_targets:
        raise ValueError(f"config.n_targets={config.n_targets} but the target units have K={targets.vocab_size}")
    M = config.n_mels
    norm = FeatureNorm(targets.norm.mean[M : 2 * M], targets.norm.std[M : 2 * M])  # the centre frame's statistics
    feats, labels = [], []
    for u in corpus.split("train"):
        wav = corpus.wav(u)
        feats.append(norm(mel_frames(wav)))
        labels.append(targets.frame_units(wav))
    stream, label_stream = torch.cat(feats), torch.cat(labels)  # (N, M), (N,)
    gen = torch.Generator().manual_seed(config.seed)
    N, L = len(stream), config.crop

    def batch(step: int) -> dict[str, torch.Tensor]:
        starts = torch.randint(N - L, (config.batch_size,), generator=gen)
        idx = starts[:, None] + torch.arange(L)[None, :]  # (B, L)
        return {"feats": stream[idx], "labels": label_stream[idx]}

    seed_everything(config.seed)
    model = TinyHubert(config)
    history = train(model, batch, TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps,
                                              eval_every=0, seed=config.seed, progress=progress, desc="hubert"))
    return model.eval(), history


def load_hubert(
    config: HubertConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False, progress: bool = True
) -> TinyHubert:
    """The tiny HuBERT (:mod:`slm_course.hubert`), from the cache or trained (a short run) on log-mel units."""
    config = recipe_config(config, HubertConfig())

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        targets = load_mel_units(config.n_targets, config.seed, corpus=corpus)
        model, history = train_hubert(data, targets, config, progress=progress)
        return model_record(model, config, history)

    name = f"hubert-r{RECIPE}-c{corpus_version(corpus)}-{digest(config)}{_corpus_tag(corpus)}"
    record = cached(name, build, rebuild=rebuild)
    return restore(TinyHubert(record["config"]), record)


def _ssl_frames(model: TinyHubert, norm: FeatureNorm, wav: torch.Tensor, layer: int) -> torch.Tensor:
    with torch.no_grad():
        return model.layer_output(norm(mel_frames(wav)), layer)


def load_ssl_units(
    layer: int | None = None, k: int = 100, seed: int = 0, *, corpus: Corpus | None = None, rebuild: bool = False,
    progress: bool = True,
) -> SslUnits:
    """Self-supervised units: k-means (K=``k``) on one layer of :func:`load_hubert` (default: ``unit_layer``); cached."""

    config = HubertConfig()
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= config.n_layers):
        raise ValueError(f"layer must be an int in 0..{config.n_layers} (0 = the input stage), got {layer!r}")
    layer = config.unit_layer if layer is None else layer
    model = load_hubert(config, progress=progress, corpus=corpus)
    mel = load_mel_units(config.n_targets, config.seed, corpus=corpus)
    norm = FeatureNorm(mel.norm.mean[N_MELS : 2 * N_MELS], mel.norm.std[N_MELS : 2 * N_MELS])  # the centre frame

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        feats = torch.cat([_ssl_frames(model, norm, data.wav(u), layer) for u in data.split("train")[::4]])
        return {"centroids": fit_kmeans(feats, k, seed)}

    name = f"units-ssl-r{RECIPE}-c{corpus_version(corpus)}-{digest(config)}-l{layer}-k{k}-s{seed}{_corpus_tag(corpus)}"
    art = cached(name, build, rebuild=rebuild)
    return SslUnits(model, norm, layer, art["centroids"])


def load_unit_vocoder(
    tokenizer: _KMeansUnits, config: VocoderConfig | None = None, *, corpus: Corpus | None = None,
    rebuild: bool = False, progress: bool = True,
) -> UnitVocoder:
    """A :class:`UnitVocoder` for ``tokenizer`` 's units, from the cache or trained (a short run).

    The cache name holds a hash of the tokenizer's centroids, so each tokenizer gets its own vocoder.
    """
    if not isinstance(tokenizer, _KMeansUnits):
        raise TypeError(f"tokenizer must be MelUnits or SslUnits, got {type(tokenizer).__name__}")
    config = recipe_config(config, VocoderConfig())

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        wavs = [data.wav(u) for u in data.split("train")]
        model, history = train_unit_vocoder(tokenizer, wavs, config, progress=progress)
        return model_record(model, config, history)

    units_key = digest(tokenizer.centroids.numpy().round(4))
    name = f"vocoder-r{RECIPE}-{tokenizer.name}-{units_key}-{digest(config)}{_corpus_tag(corpus)}"
    record = cached(name, build, rebuild=rebuild)
    return restore(UnitVocoder(tokenizer.vocab_size, record["config"]), record)


# ---------------------------------------------------------------------------------------------
# Evaluation and the benchmark
# ---------------------------------------------------------------------------------------------


def evaluate_units(
    tokenizer: _KMeansUnits, utterances: Sequence[Utterance], wavs: Sequence[torch.Tensor],
    items: Sequence[AbxItem] | None = None,
) -> dict[str, float]:
    """Unit quality of ``tokenizer`` on ``utterances`` (their waveforms ``wavs``), every number of notebook 02.

    ``pnmi``, ``phone_purity``, ``cluster_purity`` (frame-level units against phones); ABX within and
    across speakers on three views of the same frames: ``abx_*`` on the units (each frame replaced by
    its unit's centroid: what the unit id carries), ``abx_*_onehot`` on one-hot units (every two
    different units equally far apart) and ``abx_*_dense`` on the frames before quantisation; and
    ``bitrate_bps`` of the de-duplicated units.
    """
    phones, units, bits = [], [], [0, 0]
    views: dict[str, dict[str, torch.Tensor]] = {"": {}, "_onehot": {}, "_dense": {}}
    for u, wav in zip(utterances, wavs):
        dense = tokenizer.features(wav)  # (T, D)
        fu = kmeans_assign(dense, tokenizer.centroids)  # (T,)
        phones += frame_phones(u, len(fu))
        units.append(fu)
        views[""][u.id] = tokenizer.centroids[fu]
        views["_onehot"][u.id] = F.one_hot(fu, tokenizer.vocab_size).float()
        views["_dense"][u.id] = dense
        bits[0] += len(deduplicate(fu)[0])
        bits[1] += len(fu)
    out = unit_quality(phones, torch.cat(units))
    items = abx_items(utterances) if items is None else items
    for suffix, frames in views.items():
        out[f"abx_within{suffix}"] = abx(items, frames, across=False)
        out[f"abx_across{suffix}"] = abx(items, frames, across=True)
    out["bitrate_bps"] = bits[0] * math.log2(tokenizer.vocab_size) / (bits[1] / tokenizer.frame_rate)
    return out


def resynthesis_cer(tokenizer: _KMeansUnits, vocoder: UnitVocoder, utterances: Sequence[Utterance],
                    wavs: Sequence[torch.Tensor], asr: Any) -> tuple[float, float]:
    """ASR CER of resynthesised speech (units -> vocoder -> ASR) and of the original speech."""
    from slm_course.metrics import cer

    refs = [u.text for u in utterances]
    resynth = [vocoder.synthesize(tokenizer.encode(w)) for w in wavs]
    return cer(refs, asr.transcribe(resynth)), cer(refs, asr.transcribe(list(wavs)))


def bench_units(n_test: int = 120) -> dict:
    """Log-mel and self-supervised units (K=100) on 120 utterances of the held-out speakers (as notebook 02).

    ``abx_*`` are on the units (each frame as its unit's centroid); ``abx_across_onehot_*`` and
    ``abx_across_dense_*`` are the one-hot and pre-quantisation views; ``resynth_cer`` is the ASR CER of
    the SSL units resynthesised by their :class:`UnitVocoder` (60 utterances), ``original_cer`` that of
    the originals. Models come from the cache, or are trained with the notebook's recipe and seed.
    """
    from slm_course.asr import load_asr
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    test = corpus.split("test")[:n_test]
    wavs = [corpus.wav(u) for u in test]
    items = abx_items(test)
    mel = load_mel_units()
    ssl = load_ssl_units(progress=False)
    m = evaluate_units(mel, test, wavs, items)
    s = evaluate_units(ssl, test, wavs, items)
    vocoder = load_unit_vocoder(ssl, progress=False)
    resynth, original = resynthesis_cer(ssl, vocoder, test[:60], wavs[:60], load_asr(progress=False))
    r = lambda x: round(float(x), 4)  # noqa: E731
    return {
        "pnmi_mel": r(m["pnmi"]), "pnmi_ssl": r(s["pnmi"]),
        "abx_within_mel": r(m["abx_within"]), "abx_within_ssl": r(s["abx_within"]),
        "abx_across_mel": r(m["abx_across"]), "abx_across_ssl": r(s["abx_across"]),
        "abx_across_onehot_mel": r(m["abx_across_onehot"]), "abx_across_onehot_ssl": r(s["abx_across_onehot"]),
        "abx_across_dense_mel": r(m["abx_across_dense"]), "abx_across_dense_ssl": r(s["abx_across_dense"]),
        "bitrate_bps": r(s["bitrate_bps"]), "bitrate_mel_bps": r(m["bitrate_bps"]),
        "resynth_cer": r(resynth), "original_cer": r(original),
    }
