"""Discrete speech units: frames -> k-means -> de-duplicated units, and a vocoder that makes them audible (notebook 02).

Every spoken language model of the course reads *units*: a 16 kHz waveform becomes 50 frames per
second, each frame is assigned to the nearest of K centroids, and runs of one unit are merged
(with their durations kept). Two kinds of frames are clustered:

- **log-mel units** (:class:`MelUnits`): 40-band log-mel every 20 ms with one frame of context on
  each side (120 numbers), normalised with statistics of the *whole training corpus* (GSLM's
  log-mel baseline);
- **self-supervised units** (:class:`SslUnits`): one layer of a tiny HuBERT-style Transformer
  (:mod:`slm_course.hubert`) that learned to predict the log-mel units of masked frames (HuBERT's
  first iteration, in miniature: k-means of spectral frames makes its targets).

Both are :class:`slm_course.speech_tokens.SpeechTokenizer` s (``encode(wav) -> SpeechTokens`` with
durations, ``vocab_size``, ``frame_rate``, ``bitrate()``); a :class:`UnitVocoder` (units -> log
spectrogram -> Griffin-Lim) makes them audible. How good units are is measured in
:mod:`slm_course.unit_metrics` (PNMI, purity, ABX); how the course builds them (k-means, the tiny
HuBERT's training, the vocoder's, the cache, the benchmark) is :mod:`slm_course.units_recipe`,
whose :func:`~slm_course.units_recipe.load_mel_units`, :func:`~slm_course.units_recipe.load_ssl_units`
and :func:`~slm_course.units_recipe.load_unit_vocoder` later notebooks call. A tokenizer decodes once
it has a vocoder (``units.vocoder = load_unit_vocoder(units)``, then ``units.decode(tokens)``).

>>> units = load_ssl_units()                               # doctest: +SKIP
>>> tokens = units.encode(corpus.wav(utt))                 # doctest: +SKIP
>>> tokens.ids[:8], tokens.durations[:8]                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from slm_course import audio
from slm_course.hubert import TinyHubert
from slm_course.runtime import artifact_record
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens, check_ids, deduplicate, expand

__all__ = [
    "FRAME_RATE",
    "SILENCE",
    "FeatureNorm",
    "KMeansUnits",
    "MelUnits",
    "SslUnits",
    "UnitVocoder",
    "VocoderConfig",
    "fit_kmeans",
    "kmeans_assign",
    "log_magnitude",
    "mel_features",
    "mel_frames",
    "per_utterance_normalise",
    "ssl_frames",
    "stack_context",
]

SR = audio.SR  # 16 kHz
HOP_MS = 20.0  # one unit frame every 20 ms ...
FRAME_RATE = 1000.0 / HOP_MS  # ... 50 frames per second, as HuBERT's
N_MELS = 40  # log-mel bands of the baseline frames
CONTEXT = 1  # frames of context stacked on each side: 3 x 40 = 120 numbers per frame
SILENCE = "sil"  # the phone label of frames outside every phone span


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


class KMeansUnits(SpeechTokenizer):
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


class MelUnits(KMeansUnits):
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


@torch.no_grad()
def ssl_frames(model: TinyHubert, norm: FeatureNorm, wav: torch.Tensor, layer: int) -> torch.Tensor:
    """Layer ``layer`` of the tiny HuBERT on a 16 kHz waveform: ``(T, d_model)`` at 50 Hz (0 = the input stage)."""
    x = norm(mel_frames(wav))  # (T, 40)
    return model.layer_output(x, layer)  # (T, d_model)


class SslUnits(KMeansUnits):
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

    def _features(self, wav: torch.Tensor) -> torch.Tensor:
        return ssl_frames(self.model, self.norm, wav, self.layer)  # (T, d_model)

    def __repr__(self) -> str:
        return f"SslUnits(layer {self.layer}, K={self.vocab_size}, {self.frame_rate:g} Hz)"


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

    It hears only the units: what it keeps of the words and of the voice is what the units carry of
    them (notebook 03 measures how much of the speaker survives).
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
        return self._spectrogram(self.embed(units))

    def _spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, E)`` frame embeddings -> ``(B, 2T, 257)`` log magnitudes."""
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2) + x
        y, _ = self.rnn(x)  # (B, T, 2H)
        B, T, _ = x.shape
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
        return self._griffin_lim(mag)

    def _griffin_lim(self, mag: torch.Tensor) -> torch.Tensor:
        """``(257, frames)`` magnitudes -> a waveform peaking at 0.5."""
        gl = torchaudio.transforms.GriffinLim(
            n_fft=N_FFT, n_iter=self.config.griffin_lim_iters, win_length=VOC_WIN, hop_length=VOC_HOP, power=1.0,
            rand_init=False,
        )
        wav = gl(mag)
        return wav / wav.abs().max().clamp_min(1e-4) * 0.5
