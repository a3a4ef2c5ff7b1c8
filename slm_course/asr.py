"""The course's ears: a small CTC speech recogniser, from log-mel frames to characters (notebook 01).

Speech recognition here is the first stage of the cascade (ASR -> text LM -> TTS), and later the
course's yardstick: how intelligible is speech that a model generated? This file is the model; its
recipe (batches, training, the cached model, FSDD, the benchmark) is :mod:`slm_course.asr_recipe`.

- features: 80-band log-mel every 10 ms (:func:`slm_course.audio.log_mel`), normalised per
  utterance and per band (zero mean, unit variance), which removes much of what differs between
  speakers and recording levels (:func:`asr_features`);
- model: two 1-D convolutions (strides 3 and 1: 100 Hz -> 33 Hz) and a bidirectional GRU, then a
  linear layer to the characters of :data:`VOCAB` (:class:`CtcAsr`). CTC needs at least one frame
  per character (two for a doubled letter): fast "excited" speech says up to 20 characters per
  second, too many for 25 Hz frames, so the output rate is 33 Hz;
- loss: CTC (connectionist temporal classification), which sums over every way of aligning the
  character string to the frames, with a *blank* symbol for "no new character here";
- training aid: SpecAugment (random mel bands and stretches of frames blanked while training,
  :meth:`CtcAsr.spec_augment`), so that it also reads speech decoded from tokens;
- decoding: greedy, i.e. the most likely symbol per frame, repeats merged, blanks dropped
  (:func:`greedy_decode`).

>>> asr = load_asr()                                         # doctest: +SKIP
>>> asr.transcribe(corpus.wav(corpus.split("test")[0]))      # doctest: +SKIP
['the cook cuts the cake']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from slm_course import audio
from slm_course.metrics import normalize_text
from slm_course.runtime import artifact_record, digest

__all__ = [
    "BLANK",
    "VOCAB",
    "AsrConfig",
    "CtcAsr",
    "asr_features",
    "conv_lengths",
    "greedy_decode",
    "ids_to_text",
    "pad_features",
    "text_to_ids",
]

SR = audio.SR  # the recogniser hears 16 kHz speech

# ---------------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------------

BLANK = 0  # index of the CTC blank: "no new character in this frame"
VOCAB: tuple[str, ...] = ("<blank>", " ", *"abcdefghijklmnopqrstuvwxyz", "'")  # 29 symbols, blank first
_ID_OF = {ch: i for i, ch in enumerate(VOCAB) if i != BLANK}


def text_to_ids(text: str) -> list[int]:
    """Normalise ``text`` (lowercase, no punctuation) and map its characters to indices of :data:`VOCAB`.

    >>> text_to_ids("Hi, Bo!")
    [9, 10, 1, 3, 16]
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    norm = normalize_text(text)
    unknown = sorted({ch for ch in norm if ch not in _ID_OF})
    if unknown:
        raise ValueError(
            f"text {text!r} holds characters outside the recogniser's vocabulary (a-z, space, apostrophe): "
            f"{', '.join(repr(ch) for ch in unknown)}; write numbers as words and transliterate accented "
            "or non-Latin letters (e.g. 'é' -> 'e') before training or scoring"
        )
    return [_ID_OF[ch] for ch in norm]


def ids_to_text(ids: Sequence[int] | torch.Tensor) -> str:
    """Characters of ``ids`` (indices of :data:`VOCAB`) as a string; blanks are skipped.

    >>> ids_to_text([9, 10, 0, 1, 3, 16])
    'hi bo'
    """
    if isinstance(ids, torch.Tensor):
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D (one transcript), got shape {tuple(ids.shape)}; loop over a batch")
        ids = ids.tolist()
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(VOCAB):
            raise ValueError(f"ids must be ints in [0, {len(VOCAB)}) (indices of asr.VOCAB), got {i!r}")
        if i != BLANK:
            out.append(VOCAB[i])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def asr_features(wav: torch.Tensor | np.ndarray, sr: int = SR, n_mels: int = 80) -> torch.Tensor:
    """Log-mel frames of 16 kHz speech, normalised per utterance and band: ``(frames, n_mels)`` at 100 Hz.

    Each band gets zero mean and unit variance over the utterance, so a louder voice or a different
    microphone shifts nothing: what is left is how the spectrum *changes*, which carries the words.

    >>> asr_features(torch.randn(16000)).shape
    torch.Size([101, 80])
    """
    x = audio.check_wav(wav, sr, expected_sr=SR)
    mel = audio.log_mel(x, SR, n_mels=n_mels)  # (n_mels, frames)
    mean = mel.mean(dim=1, keepdim=True)
    std = mel.std(dim=1, keepdim=True, unbiased=False) if mel.shape[1] > 1 else torch.ones_like(mean)
    return ((mel - mean) / (std + 0.1)).T.contiguous()  # (frames, n_mels); +0.1 keeps flat bands flat


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------


@artifact_record  # stored in the cached model's record
@dataclass(frozen=True)
class AsrConfig:
    """The recogniser's size and training budget; the defaults train in a few minutes on a laptop CPU."""

    n_mels: int = 80  # log-mel bands per 10 ms frame (the model's input width)
    strides: tuple[int, int] = (3, 1)  # strides of the two convolutions: 100 Hz / (3 * 1) = 33 Hz output frames
    channels: int = 192  # channels of the two convolutions
    hidden: int = 192  # GRU units per direction
    layers: int = 2  # stacked bidirectional GRU layers
    dropout: float = 0.1  # dropout between GRU layers and before the output layer
    steps: int = 1000  # optimiser updates (about 6 passes over the corpus's training split)
    lr: float = 4e-3  # peak learning rate (AdamW; linear warm-up, then cosine decay to 10%)
    warmup_steps: int = 50  # steps of linear learning-rate warm-up
    frames_per_batch: int = 3000  # input frames per batch, padding included (3000 = 30 s of speech)
    seed: int = 0  # seeds the weights, the dropout and the batch order
    # SpecAugment (Park et al., 2019) while training: blank random mel bands and stretches of time, so that
    # the model cannot lean on any one of them; meant to make the recogniser robust to speech decoded by
    # notebook 03's codec, at no cost at test time.
    freq_masks: int = 2  # mel-band masks per utterance, each up to freq_mask_width bands wide
    freq_mask_width: int = 12
    time_masks: int = 2  # time masks per utterance, each up to time_mask_width frames and 5% of the input
    time_mask_width: int = 20

    def __post_init__(self) -> None:
        for name in ("n_mels", "channels", "hidden", "layers", "steps", "frames_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AsrConfig.{name} must be a positive int, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"AsrConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"AsrConfig.lr must be a positive finite number (e.g. 2e-3), got {self.lr!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"AsrConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        strides = tuple(self.strides)
        if len(strides) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in strides):
            raise ValueError(f"AsrConfig.strides must be two positive ints, e.g. (2, 2), got {self.strides!r}")
        object.__setattr__(self, "strides", strides)  # a list from JSON becomes a tuple again
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"AsrConfig.seed must be an int, got {self.seed!r}")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AsrConfig.{name} must be an int >= 0 (0 turns that masking off), got {value!r}")

    def key(self) -> str:
        """A short hash of every field, for cache names: equal configs give equal keys."""
        return digest(self)


def conv_lengths(lengths: torch.Tensor, strides: Sequence[int]) -> torch.Tensor:
    """Frames left after the convolutions of ``strides`` (the course's recogniser: ``AsrConfig().strides``): each one
    of stride ``s`` keeps ``ceil(T / s)`` of ``T`` frames."""
    for s in strides:
        lengths = (lengths + s - 1) // s
    return lengths


class CtcAsr(nn.Module):
    """Log-mel frames -> 2 convs (33 Hz) -> BiGRU -> per-frame log-probabilities over :data:`VOCAB`.

    ``forward(batch)`` returns ``{"loss": CTC loss}`` (the contract of :func:`slm_course.train.train`);
    ``transcribe(wavs)`` turns 16 kHz waveforms into text.
    """

    def __init__(self, config: AsrConfig = AsrConfig()) -> None:
        super().__init__()
        if not isinstance(config, AsrConfig):
            raise TypeError(f"config must be an AsrConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.conv1 = nn.Conv1d(c.n_mels, c.channels, kernel_size=5, stride=c.strides[0], padding=2)
        self.conv2 = nn.Conv1d(c.channels, c.channels, kernel_size=5, stride=c.strides[1], padding=2)
        self.norm = nn.LayerNorm(c.channels)  # per frame; training converges sooner with it
        self.rnn = nn.GRU(
            c.channels, c.hidden, num_layers=c.layers, batch_first=True, bidirectional=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(2 * c.hidden, len(VOCAB))
        self.freq_mask = torchaudio.transforms.FrequencyMasking(c.freq_mask_width, iid_masks=True)
        self.time_mask = torchaudio.transforms.TimeMasking(c.time_mask_width, iid_masks=True, p=0.05)

    def spec_augment(self, feats: torch.Tensor) -> torch.Tensor:
        """SpecAugment of ``(B, T, n_mels)`` features: each utterance gets its own random masks (set to 0, the mean)."""
        c = self.config
        x = feats.transpose(1, 2)[:, None]  # (B, 1, n_mels, T): torchaudio's masks want (..., freq, time)
        for _ in range(c.freq_masks if c.freq_mask_width else 0):
            x = self.freq_mask(x)
        for _ in range(c.time_masks if c.time_mask_width else 0):
            x = self.time_mask(x)
        return x[:, 0].transpose(1, 2)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's two views of ``(B, T, n_mels)`` features: the convolutions' frames ``(B, T', C)``, the
        GRU's states ``(B, T', 2H)`` (33 Hz by default), and their lengths ``(B,)``.

        The convolutions' frames still say much about the voice; the GRU's, trained for characters, say more
        about the words (notebook 09 hands both to a text LM). Padding does not change the result.
        """
        if feats.ndim != 3 or feats.shape[2] != self.config.n_mels:
            raise ValueError(
                f"feats must have shape (B, T, {self.config.n_mels}) (batch, frames, mel bands), "
                f"got {tuple(feats.shape)}; make them with asr_features(wav) and pad with asr_recipe.make_batches"
            )
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (feats.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > feats.shape[1]:
            raise ValueError(
                f"lengths must hold one frame count in [1, {feats.shape[1]}] per utterance "
                f"({feats.shape[0]}), got {lengths.tolist()}"
            )
        s1, s2 = self.config.strides
        x = F.gelu(self.conv1(feats.transpose(1, 2)))  # (B, C, ceil(T / s1))
        mid = conv_lengths(lengths, (s1,))
        mask = torch.arange(x.shape[2], device=x.device)[None, :] < mid.to(x.device)[:, None]  # (B, T / s1)
        x = x * mask[:, None, :]  # zero the padding, as the convolution's own zero padding would be
        x = F.gelu(self.norm(self.conv2(x).transpose(1, 2)))  # (B, T', C), T' = ceil(T / s1 / s2)
        out_lengths = conv_lengths(lengths, (s1, s2))
        packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # (B, T', 2H)
        return x, y, out_lengths

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-probabilities ``(B, T', V)`` (33 Hz by default) and their lengths ``(B,)``.

        ``feats`` is ``(B, T, n_mels)`` (zero-padded) and ``lengths`` its real frame counts ``(B,)``.
        Padding does not change the result: an utterance scores the same alone or in a batch.
        """
        _, y, out_lengths = self.encode(feats, lengths)
        return self.head(self.drop(y)).log_softmax(dim=-1), out_lengths  # (B, T', V), (B,)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """CTC loss of a batch from :func:`slm_course.asr_recipe.make_batches` (per-utterance loss / target length, batch mean).

        In training mode the features are SpecAugment-ed first (:meth:`spec_augment`).
        """
        feats = self.spec_augment(batch["feats"]) if self.training else batch["feats"]
        log_probs, out_lengths = self.log_probs(feats, batch["feat_lengths"])  # (B, T', V)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V): CTC wants time first
            batch["targets"],
            out_lengths,
            batch["target_lengths"].cpu(),
            blank=BLANK,
            reduction="mean",
            zero_infinity=True,  # an utterance too short for its text contributes 0, not inf
        )
        return {"loss": loss}

    @torch.no_grad()
    def transcribe(
        self, wavs: Sequence[torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray, sr: int = SR,
        batch_size: int = 32,
    ) -> list[str]:
        """Greedy transcripts of 16 kHz waveforms: one string per waveform (a single tensor gives a list of one).

        Spaces are tidied (no leading, trailing or double spaces), so a transcript compares with ``" ".join(words)``.

        >>> asr.transcribe([wav1, wav2])                      # doctest: +SKIP
        ['the cook cuts the cake', 'where is the plate']
        """
        if isinstance(wavs, (torch.Tensor, np.ndarray)):
            wavs = [wavs]
        if isinstance(wavs, (str, bytes)) or not isinstance(wavs, Sequence):
            raise TypeError(
                f"wavs must be a waveform tensor (T,) or a list of them, got {type(wavs).__name__}; "
                "read files with audio.load(path, sr=16000)"
            )
        if len(wavs) == 0:
            raise ValueError("wavs is empty: pass at least one waveform (a 1-D float tensor at 16 kHz)")
        feats = [asr_features(w, sr, self.config.n_mels) for w in wavs]
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))  # similar lengths share a batch
        texts: list[str] = [""] * len(feats)
        try:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                x, lengths = pad_features([feats[i] for i in chunk])
                log_probs, out_lengths = self.log_probs(x.to(device), lengths)
                for i, ids in zip(chunk, greedy_decode(log_probs, out_lengths)):
                    texts[i] = " ".join(ids_to_text(ids).split())  # no stray leading/double spaces
        finally:
            self.train(was_training)
        return texts


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None) -> list[list[int]]:
    """Best path CTC decoding: the argmax symbol per frame, repeats merged, then blanks dropped.

    ``log_probs`` is ``(B, T, V)`` (or ``(T, V)`` for one utterance); ``lengths`` the valid frames
    per utterance (default: all). A blank between two equal symbols keeps both ("l _ l" -> "ll").

    >>> lp = torch.log(torch.eye(4)[[1, 1, 0, 1, 2, 2]])[None]   # frames say a a _ a b b
    >>> greedy_decode(lp)
    [[1, 1, 2]]
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.ndim not in (2, 3):
        raise ValueError(
            "log_probs must be a tensor of shape (B, T, V) (or (T, V) for one utterance), got "
            f"{tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__}"
        )
    if log_probs.ndim == 2:
        log_probs = log_probs[None]
    B, T, _ = log_probs.shape
    lengths = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths).reshape(-1).cpu()
    if len(lengths) != B or (B and (int(lengths.min()) < 0 or int(lengths.max()) > T)):
        raise ValueError(f"lengths must hold one frame count in [0, {T}] per utterance ({B}), got {lengths.tolist()}")
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    out = []
    for b in range(B):
        path = best[b, : int(lengths[b])]
        if len(path):
            keep = torch.ones_like(path, dtype=torch.bool)
            keep[1:] = path[1:] != path[:-1]  # first frame of each run
            path = path[keep & (path != BLANK)]
        out.append(path.tolist())
    return out


def pad_features(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(T_i, D)`` feature matrices into ``(B, max T, D)`` and their lengths ``(B,)``."""
    lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(list(feats), batch_first=True), lengths
