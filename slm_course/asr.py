"""The course's ears: a small CTC speech recogniser, from log-mel frames to characters (notebook 01).

Speech recognition here is the first stage of the cascade (ASR -> text LM -> TTS), and later the
course's yardstick: how intelligible is speech that a model generated? The recipe is small enough
to train on a laptop CPU in a few minutes (1,000 steps):

- features: 80-band log-mel every 10 ms (:func:`slm_course.audio.log_mel`), normalised per
  utterance and per band (zero mean, unit variance), which removes much of what differs between
  speakers and recording levels (:func:`asr_features`);
- model: two 1-D convolutions (strides 3 and 1: 100 Hz -> 33 Hz) and a bidirectional GRU, then a
  linear layer to the characters of :data:`VOCAB` (:class:`CtcAsr`). CTC needs at least one frame
  per character (two for a doubled letter): fast "excited" speech says up to 20 characters per
  second, too many for 25 Hz frames, so the output rate is 33 Hz;
- loss: CTC (connectionist temporal classification), which sums over every way of aligning the
  character string to the frames, with a *blank* symbol for "no new character here";
- decoding: greedy, i.e. the most likely symbol per frame, repeats merged, blanks dropped
  (:func:`greedy_decode`);
- training: the course's one loop, :func:`slm_course.train.train`, on batches of utterances of
  similar length (:func:`make_batches`), with SpecAugment (random mel bands and stretches of frames
  blanked, :meth:`CtcAsr.spec_augment`), so that it also reads speech decoded from tokens.
  ``slm-course bench asr`` reports its CER and WER on held-out speakers.

Later notebooks only call :func:`load_asr`, which loads the trained model from the cache or trains
it with the same recipe and seed. The same recipe also runs on real speech, the spoken digits of
FSDD (:func:`train_fsdd_asr`, :func:`digit_accuracy`).

>>> asr = load_asr()                                         # doctest: +SKIP
>>> asr.transcribe(corpus.wav(corpus.split("test")[0]))      # doctest: +SKIP
['the cook cuts the cake']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from slm_course import audio
from slm_course.metrics import cer, normalize_text, wer
from slm_course.runtime import artifact_record, cached, digest, recipe_config, seed_everything
from slm_course.train import History, TrainConfig, model_record, restore, train

if TYPE_CHECKING:
    from slm_course.corpus import Corpus
    from slm_course.fsdd import Fsdd, Recording

__all__ = [
    "BLANK",
    "FSDD_CONFIG",
    "VOCAB",
    "AsrConfig",
    "Batches",
    "CtcAsr",
    "asr_features",
    "bench_asr",
    "bench_fsdd_asr",
    "digit_accuracy",
    "evaluate_asr",
    "fsdd_examples",
    "greedy_decode",
    "ids_to_text",
    "load_asr",
    "make_batches",
    "text_to_ids",
    "train_asr",
    "train_fsdd_asr",
]

SR = audio.SR  # the recogniser hears 16 kHz speech
RECIPE = 1  # bump when features or model change in a way AsrConfig does not show: cached models are retrained

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
    # the model cannot lean on any one of them. At equal steps it lowers the CER of speech decoded by
    # notebook 03's codec, and costs nothing at test time.
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


def conv_lengths(lengths: torch.Tensor, strides: Sequence[int] = (2, 2)) -> torch.Tensor:
    """Frames left after the convolutions: each one of stride ``s`` keeps ``ceil(T / s)`` of ``T`` frames."""
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

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-probabilities ``(B, T', V)`` (33 Hz by default) and their lengths ``(B,)``.

        ``feats`` is ``(B, T, n_mels)`` (zero-padded) and ``lengths`` its real frame counts ``(B,)``.
        Padding does not change the result: an utterance scores the same alone or in a batch.
        """
        if feats.ndim != 3 or feats.shape[2] != self.config.n_mels:
            raise ValueError(
                f"feats must have shape (B, T, {self.config.n_mels}) (batch, frames, mel bands), "
                f"got {tuple(feats.shape)}; make them with asr_features(wav) and pad with make_batches"
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
        return self.head(self.drop(y)).log_softmax(dim=-1), out_lengths  # (B, T', V), (B,)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """CTC loss of a batch from :func:`make_batches` (per-utterance loss / target length, batch mean).

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
                x, lengths = _pad([feats[i] for i in chunk])
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


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def _pad(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad ``(T_i, D)`` feature matrices into ``(B, max T, D)`` and their lengths ``(B,)``."""
    lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(list(feats), batch_first=True), lengths


class Batches:
    """Utterances grouped into batches of similar length; ``batches(step)`` is the batch of a training step.

    The batches are fixed (cut from the utterances sorted by length); each epoch visits them in a
    new order drawn from an explicit generator seeded with ``(seed, epoch)``, so the sequence of
    batches depends only on the seed.
    """

    def __init__(self, examples: Sequence[tuple[torch.Tensor, Sequence[int]]], frames_per_batch: int, seed: int):
        self.examples = [(f, torch.as_tensor(list(t), dtype=torch.long)) for f, t in examples]
        self.seed = seed
        order = sorted(range(len(self.examples)), key=lambda i: (len(self.examples[i][0]), i))
        self.groups: list[list[int]] = []
        group: list[int] = []
        for i in order:  # sorted ascending, so the newest utterance is the longest of its group
            if group and (len(group) + 1) * len(self.examples[i][0]) > frames_per_batch:
                self.groups.append(group)
                group = []
            group.append(i)
        self.groups.append(group)
        self._epoch = -1
        self._perm: list[int] = []

    def __len__(self) -> int:
        return len(self.groups)

    def __repr__(self) -> str:
        sizes = [len(g) for g in self.groups]
        return f"Batches({len(self.examples)} utterances in {len(self)} batches of {min(sizes)}-{max(sizes)})"

    def collate(self, group: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the utterances ``group`` into one batch: feats, feat_lengths, targets, target_lengths."""
        feats, feat_lengths = _pad([self.examples[i][0] for i in group])  # (B, T, D), (B,)
        targets = [self.examples[i][1] for i in group]
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)  # (B,)
        padded = torch.zeros(len(group), max(1, int(target_lengths.max())), dtype=torch.long)  # (B, S)
        for row, t in enumerate(targets):
            padded[row, : len(t)] = t
        return {"feats": feats, "feat_lengths": feat_lengths, "targets": padded, "target_lengths": target_lengths}

    def order(self, epoch: int) -> list[int]:
        """The order in which epoch ``epoch`` (0-based) visits the batches."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self), generator=gen).tolist()

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1 (train() counts from 1), got {step!r}")
        epoch, pos = divmod(step - 1, len(self))
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self.order(epoch)
        return self.collate(self.groups[self._perm[pos]])


def make_batches(
    examples: Sequence[tuple[torch.Tensor, Sequence[int]]], frames_per_batch: int = 3000, seed: int = 0
) -> Batches:
    """Group ``(feats (T, D), target ids)`` pairs by length into padded batches: a callable ``step -> batch``.

    A batch holds as many utterances of similar length as fit in ``frames_per_batch`` frames
    (padding included), so little compute is spent on padding.

    >>> batches = make_batches([(asr_features(w), text_to_ids(t)) for w, t in pairs])   # doctest: +SKIP
    >>> batches(1)["feats"].shape                                                       # doctest: +SKIP
    torch.Size([37, 160, 80])
    """
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise TypeError(f"examples must be a list of (feats, target ids) pairs, got {type(examples).__name__}")
    if len(examples) == 0:
        raise ValueError("examples is empty: pass at least one (feats, target ids) pair")
    if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
        raise ValueError(f"frames_per_batch must be a positive int (e.g. 3000), got {frames_per_batch!r}")
    dim = None
    for k, example in enumerate(examples):
        if not (isinstance(example, (tuple, list)) and len(example) == 2):
            raise TypeError(f"examples[{k}] must be a (feats, target ids) pair, got {type(example).__name__}")
        feats = example[0]
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or len(feats) == 0:
            raise ValueError(
                f"examples[{k}][0] must be a non-empty (frames, n_mels) tensor from asr_features(wav), got "
                f"{tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__}"
            )
        if dim is not None and feats.shape[1] != dim:
            raise ValueError(f"examples[{k}] has {feats.shape[1]} feature bands, the others {dim}; use one n_mels")
        dim = feats.shape[1]
        if len(feats) > frames_per_batch:
            raise ValueError(
                f"examples[{k}] has {len(feats)} frames, more than frames_per_batch={frames_per_batch}; "
                "raise frames_per_batch or drop the utterance"
            )
    return Batches(examples, frames_per_batch, seed)


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------


def _pairs_of(data: Any, split: str, what: str) -> list[tuple[torch.Tensor, str]]:
    """``(wav, text)`` pairs of a corpus split, or checked pairs given directly."""
    if hasattr(data, "split") and hasattr(data, "wav") and hasattr(data, "sr"):  # a Corpus
        if data.sr != SR:
            raise ValueError(f"the corpus is sampled at {data.sr} Hz; the recogniser needs {SR} Hz")
        return [(data.wav(u), u.text) for u in data.split(split)]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise TypeError(f"{what} takes a Corpus or a list of (wav, text) pairs at 16 kHz, got {type(data).__name__}")
    pairs = []
    for k, item in enumerate(data):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], str)):
            raise TypeError(f"item {k} of {what}'s data must be a (wav, text) pair, got {type(item).__name__}")
        pairs.append((item[0], item[1]))
    return pairs


def train_asr(
    data: Corpus | Sequence[tuple[torch.Tensor, str]],
    config: AsrConfig = AsrConfig(),
    progress: bool = True,
    device: torch.device | str | None = None,
) -> tuple[CtcAsr, History]:
    """Train a :class:`CtcAsr` on a corpus's ``train`` split (or on ``(wav, text)`` pairs at 16 kHz).

    Returns the model in eval mode and the :class:`slm_course.train.History` of the run. The same
    data, config and seed give the same model on the same machine.

    >>> model, history = train_asr(load_corpus())        # doctest: +SKIP
    """
    if not isinstance(config, AsrConfig):
        raise TypeError(f"config must be an AsrConfig, got {type(config).__name__}")
    pairs = _pairs_of(data, "train", "train_asr")
    if not pairs:
        raise ValueError("train_asr got no training utterances; pass a corpus or a non-empty list of (wav, text)")
    examples = []
    for k, (wav, text) in enumerate(pairs):
        ids = text_to_ids(text)
        if not ids:
            raise ValueError(f"training text {k} ({text!r}) is empty after normalisation; drop it")
        examples.append((asr_features(wav, SR, config.n_mels), ids))
    batches = make_batches(examples, config.frames_per_batch, config.seed)
    seed_everything(config.seed)  # the initial weights depend on the seed only
    model = CtcAsr(config)
    train_config = TrainConfig(
        steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0, seed=config.seed,
        progress=progress, desc="asr",
    )
    history = train(model, batches, train_config, device=device)
    return model.eval(), history


def evaluate_asr(
    model: CtcAsr, data: Corpus | Sequence[tuple[torch.Tensor, str]], split: str = "test", limit: int | None = None
) -> dict[str, float]:
    """CER and WER of greedy transcripts of a corpus split (held-out speakers by default), or of (wav, text) pairs.

    The corpus is closed-vocabulary (a small grammar), so this is a closed-vocabulary recogniser: it
    spells the corpus's words well and nothing else. Score it on in-vocabulary speech; the lexical
    evaluation set's non-words would come out as the nearest known words.
    """
    if not isinstance(model, CtcAsr):
        raise TypeError(f"model must be a CtcAsr (from train_asr or load_asr), got {type(model).__name__}")
    pairs = _pairs_of(data, split, "evaluate_asr")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int or None (all), got {limit!r}")
        pairs = pairs[:limit]
    if not pairs:
        raise ValueError(f"nothing to evaluate: split {split!r} is empty or no (wav, text) pairs were given")
    hyps = model.transcribe([w for w, _ in pairs])
    refs = [t for _, t in pairs]
    return {"cer": cer(refs, hyps), "wer": wer(refs, hyps), "utterances": len(pairs)}


def _cache_name(config: AsrConfig, corpus: Corpus | None) -> str:
    from slm_course.corpus import corpus_version

    name = f"asr-r{RECIPE}-corpus{corpus_version()}-{config.key()}"
    if corpus is not None:  # a corpus other than the default one: name it by its content
        name += f"-{corpus.manifest['sha256'][:10]}"
    return name


def load_asr(
    config: AsrConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False, progress: bool = True
) -> CtcAsr:
    """The course's recogniser: loaded from the cache, or trained with ``config`` (same recipe and seed) and cached.

    Trains on ``corpus`` (default: :func:`slm_course.corpus.load_corpus`), stores the weights, the
    config, the training history (``model.history``) and the test-speaker metrics (``model.metrics``), and returns
    the model in eval mode on the CPU.

    >>> asr = load_asr(); sorted(asr.metrics)             # doctest: +SKIP
    ['cer', 'utterances', 'wer']
    """
    config = recipe_config(config, AsrConfig())

    def build() -> dict[str, Any]:
        from slm_course.corpus import load_corpus

        data = corpus if corpus is not None else load_corpus(progress=progress)
        model, history = train_asr(data, config, progress=progress)
        model.cpu()
        return model_record(model, config, history, evaluate_asr(model, data, "test"))

    record = cached(_cache_name(config, corpus), build, rebuild=rebuild)
    return restore(CtcAsr(record["config"]), record)


# ---------------------------------------------------------------------------------------------
# Real speech: FSDD spoken digits
# ---------------------------------------------------------------------------------------------

# FSDD holds single words (0.5 s on average): smaller batches, so more updates per pass, and a higher
# learning rate to leave CTC's early "all blank" plateau sooner; fewer steps than for the corpus.
# No SpecAugment: at 300 steps the masks slow learning more than they help.
FSDD_CONFIG = AsrConfig(steps=300, lr=5e-3, warmup_steps=30, frames_per_batch=1500, freq_masks=0, time_masks=0)


def _fsdd_wav(rec: Recording) -> torch.Tensor:
    """One FSDD recording as a 16 kHz float32 tensor (T,) (FSDD is 8 kHz: resampled)."""
    data, file_sr = sf.read(rec.path, dtype="float32", always_2d=True)  # (T, C)
    return audio.resample(torch.from_numpy(data.mean(axis=1)), int(file_sr), SR)


def fsdd_examples(recordings: Sequence[Recording]) -> list[tuple[torch.Tensor, str]]:
    """``(wav at 16 kHz, digit word)`` pairs of FSDD recordings, e.g. ``(tensor([...]), 'seven')``."""
    if isinstance(recordings, (str, bytes)) or not isinstance(recordings, Sequence) or not recordings:
        raise ValueError("recordings must be a non-empty list of FSDD recordings, e.g. load_fsdd().split('test')")
    for k, rec in enumerate(recordings):
        if not (hasattr(rec, "path") and hasattr(rec, "word")):
            raise TypeError(f"recordings[{k}] is a {type(rec).__name__}, not an FSDD Recording (from load_fsdd())")
    return [(_fsdd_wav(rec), rec.word) for rec in recordings]


def train_fsdd_asr(
    config: AsrConfig = FSDD_CONFIG,
    recordings: Sequence[Recording] | None = None,
    fsdd: Fsdd | None = None,
    progress: bool = True,
) -> tuple[CtcAsr, History]:
    """The same recipe on real speech: train on FSDD recordings (default: takes 5-49 of every speaker).

    Words are the digit names ("zero" .. "nine"), audio is resampled from 8 kHz to 16 kHz.
    """
    if recordings is None:
        from slm_course.fsdd import load_fsdd

        recordings = (fsdd or load_fsdd()).split("train")
    return train_asr(fsdd_examples(recordings), config, progress=progress)


def load_fsdd_asr(
    config: AsrConfig | None = None, *, fsdd: Fsdd | None = None, rebuild: bool = False, progress: bool = True
) -> CtcAsr:
    """The FSDD recogniser (:func:`train_fsdd_asr` on takes 5-49), from the cache or trained now (a short run).

    The cache name holds the config and the recordings it trains on, so a different FSDD copy gets its own model.
    Raises :class:`slm_course.fsdd.FsddMissing` (saying how to get FSDD) when no copy is found.
    """
    config = recipe_config(config, FSDD_CONFIG)
    if fsdd is None:
        from slm_course.fsdd import load_fsdd

        fsdd = load_fsdd()
    recordings = fsdd.split("train")
    names = digest("\n".join(sorted(r.path.name for r in recordings)))

    def build() -> dict[str, Any]:
        model, history = train_fsdd_asr(config, recordings, progress=progress)
        return model_record(model.cpu(), config, history)

    record = cached(f"asr-fsdd-r{RECIPE}-{config.key()}-{names}", build, rebuild=rebuild)
    return restore(CtcAsr(record["config"]), record)


def digit_accuracy(model: CtcAsr, recordings: Sequence[Recording] | Sequence[tuple[torch.Tensor, str]]) -> float:
    """Share of FSDD recordings transcribed exactly as their digit word (chance: 0.1).

    Takes FSDD recordings, or ready ``(wav at 16 kHz, word)`` pairs from :func:`fsdd_examples`.
    """
    if not isinstance(model, CtcAsr):
        raise TypeError(f"model must be a CtcAsr, got {type(model).__name__}")
    if isinstance(recordings, (str, bytes)) or not isinstance(recordings, Sequence) or not recordings:
        raise ValueError("recordings must be a non-empty list of FSDD recordings, e.g. load_fsdd().split('test')")
    pairs = recordings if isinstance(recordings[0], (tuple, list)) else fsdd_examples(recordings)
    hyps = model.transcribe([w for w, _ in pairs])
    return sum(h == word for h, (_, word) in zip(hyps, pairs)) / len(pairs)


# ---------------------------------------------------------------------------------------------
# Benchmarks (slm-course bench asr / fsdd-asr)
# ---------------------------------------------------------------------------------------------


def bench_asr() -> dict:
    """The notebook's recogniser (cached, or trained with the recipe): CER/WER on held-out and training speakers."""
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    model = load_asr(progress=False)
    test = evaluate_asr(model, corpus, "test")
    valid = evaluate_asr(model, corpus, "valid")
    tail = model.history["loss"][-20:]
    return {
        "cer": round(test["cer"], 4),
        "wer": round(test["wer"], 4),
        "cer_train_speakers": round(valid["cer"], 4),
        "params": sum(p.numel() for p in model.parameters()),
        "steps": model.config.steps,
        "train_seconds": round(model.history["seconds"], 1),
        "final_loss": round(sum(tail) / len(tail), 4),
    }


def bench_fsdd_asr(config: AsrConfig = FSDD_CONFIG, unseen_speakers: int | None = None) -> dict:
    """FSDD digits: the notebook's recogniser (cached; takes 5-49) on takes 0-4; then each speaker left out in turn.

    ``unseen_speakers`` is how many speakers (the first, by name) are held out in turn, one training
    run of ``config`` each (default None: every speaker); ``loso_train_seconds`` is their total.
    Raises :class:`slm_course.fsdd.FsddMissing` (which says how to get FSDD) when it is not here.
    """
    from slm_course.fsdd import load_fsdd

    fsdd = load_fsdd()
    pairs = dict(zip(fsdd.recordings, fsdd_examples(fsdd.recordings)))  # read and resample once, reuse below
    model = load_fsdd_asr(config, fsdd=fsdd, progress=False)
    digit_acc = digit_accuracy(model, [pairs[r] for r in fsdd.split("test")])
    seconds = 0.0
    unseen = {}
    for speaker in fsdd.speakers[:unseen_speakers] if unseen_speakers else fsdd.speakers:
        others = [pairs[r] for r in fsdd.recordings if r.speaker != speaker]  # every take of the other speakers
        loso, loso_history = train_asr(others, config, progress=False)
        unseen[speaker] = round(digit_accuracy(loso, [pairs[r] for r in fsdd.recordings if r.speaker == speaker]), 4)
        seconds += loso_history.seconds
    return {
        "digit_acc": round(digit_acc, 4),
        "digit_acc_unseen_speaker": round(sum(unseen.values()) / len(unseen), 4),
        "unseen_speaker": unseen,
        "speakers": len(fsdd.speakers),
        "steps": config.steps,
        "train_seconds": round(model.history["seconds"], 1),
        "loso_train_runs": len(unseen),
        "loso_train_seconds": round(seconds, 1),
    }
