"""One interface for every speech tokenizer in the course.

Notebook 02's units (k-means on log-mel or on a self-supervised model's layer) and notebook 03's
codec codes both turn a 16 kHz waveform into integer tokens, and later notebooks' LMs read them
without caring which one made them:

- ``tokenizer.encode(wav) -> SpeechTokens`` (ids, the frame rate, and durations where repeated
  units were merged);
- ``tokenizer.decode(tokens) -> wav`` where the tokenizer can make sound again;
- ``tokenizer.vocab_size`` (codes per level), ``tokenizer.frame_rate`` (token frames per second),
  ``tokenizer.n_levels`` (1 for units; the RVQ levels for a codec) and ``tokenizer.bitrate()``.

A subclass implements ``_encode`` (and ``_decode`` if it can); the base class validates the input
(wrong sample rate, stereo, NaNs, ids out of the vocabulary) with errors that say what to do.

Two helpers serve every model that reads tokens: :func:`check_ids`, the one check of token ids
(integer dtype, shape, vocabulary range) that LMs, stages and vocoders call, and
:func:`tokenizer_key`, which names a tokenizer in cache names.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from .audio import SR, check_wav
from .runtime import digest


def check_ids(ids: object, vocab_size: int, ndim: int | tuple[int, ...] = 1, what: str = "ids",
              shape: str | None = None, hint: str = "were they made by another tokenizer, or already offset for an LM?",
              allow_empty: bool = True) -> torch.Tensor:
    """``ids`` as a long tensor, after checking they are integer token ids of ``ndim`` dimensions in ``0..vocab_size-1``.

    Raises ``TypeError`` for floats or booleans (audio or features passed by mistake) and
    ``ValueError`` for a wrong shape, no tokens (unless ``allow_empty``) or ids outside the vocabulary;
    each message names ``what`` and ends with ``hint``.

    >>> check_ids([3, 0, 2], vocab_size=4).tolist()
    [3, 0, 2]
    >>> check_ids([4], vocab_size=4)
    Traceback (most recent call last):
    ...
    ValueError: ids must be in 0..3, got values in 4..4: were they made by another tokenizer, or already offset for an LM?
    """
    x = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(ids)
    if x.numel() == 0 and not isinstance(ids, torch.Tensor):
        x = x.long()  # an empty list has no dtype of its own
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{what} must be integer token ids (torch.long), got {x.dtype}: did you pass audio or features?")
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in dims:
        want = shape or " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{what} must have shape {want}, got {tuple(x.shape)}")
    if x.numel() == 0:
        if not allow_empty:
            raise ValueError(f"{what} are empty: give at least one token")
        return x.long()
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{what} must be in 0..{vocab_size - 1}, got values in {lo}..{hi}: {hint}")
    return x.long()


def tokenizer_key(tokenizer: object) -> str:
    """A short hash that tells tokenizers apart in cache names: its ``cache_key``, else its codebook, else its repr."""
    key = getattr(tokenizer, "cache_key", None)
    if key is not None:
        return key
    centroids = getattr(tokenizer, "centroids", None)
    return digest(centroids if centroids is not None else repr(tokenizer))


@dataclass(frozen=True)
class SpeechTokens:
    """Tokens of one utterance.

    ``ids`` is ``(T,)`` for one stream of units or ``(n_levels, T)`` for residual-quantiser codes.
    ``frame_rate`` is the rate of the frames the tokens were made from (before de-duplication).
    ``durations`` (``(T,)``, frames per token) is set when repeated tokens were merged, so that
    ``expand(ids, durations)`` gives back one token per frame.
    """

    ids: torch.Tensor
    frame_rate: float
    durations: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[-1])

    @property
    def n_frames(self) -> int:
        """Frames covered: the sum of the durations, or the number of tokens per level."""
        return int(self.durations.sum()) if self.durations is not None else len(self)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.frame_rate


def deduplicate(ids: torch.Tensor | np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge runs of a repeated unit: ``[5, 5, 5, 2, 2, 7] -> ([5, 2, 7], [3, 2, 1])``.

    GSLM's unit LMs read de-duplicated units: a long vowel is one token, not twenty.
    """
    x = torch.as_tensor(ids)
    if x.ndim != 1:
        raise ValueError(f"deduplicate() takes one stream of ids, shape (T,), got {tuple(x.shape)}")
    if x.numel() == 0:
        return x.long(), torch.zeros(0, dtype=torch.long)
    units, counts = torch.unique_consecutive(x.long(), return_counts=True)
    return units, counts


def expand(units: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Undo :func:`deduplicate`: repeat each unit for its duration (in frames)."""
    units, durations = torch.as_tensor(units).long(), torch.as_tensor(durations).long()
    if units.shape != durations.shape or units.ndim != 1:
        raise ValueError(
            f"units {tuple(units.shape)} and durations {tuple(durations.shape)} must be two (T,) tensors of one length"
        )
    if (durations < 1).any():
        raise ValueError("every duration must be at least 1 frame")
    return torch.repeat_interleave(units, durations)


class SpeechTokenizer(ABC):
    """Base class of the course's speech tokenizers (see the module docstring)."""

    name: str = "tokenizer"
    vocab_size: int  # codes per level
    frame_rate: float  # token frames per second (before de-duplication)
    n_levels: int = 1  # residual quantiser levels (1 for units)
    sr: int = SR

    # -- what subclasses implement ------------------------------------------------------------
    @abstractmethod
    def _encode(self, wav: torch.Tensor) -> SpeechTokens:
        """``wav`` is a checked float32 ``(T,)`` tensor at ``self.sr``."""

    def _decode(self, tokens: SpeechTokens) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} cannot turn tokens back into audio; use a tokenizer with a decoder "
            "(for units: units.UnitVocoder; a codec decodes itself)"
        )

    # -- the interface ------------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int = SR) -> SpeechTokens:
        """Tokens of a mono waveform at ``self.sr`` (16 kHz): resample other rates with ``audio.resample``."""
        x = check_wav(wav, sr, expected_sr=self.sr)
        if x.numel() == 0:
            raise ValueError("the waveform is empty: there is nothing to tokenize")
        return self._encode(x)

    def decode(self, tokens: SpeechTokens | torch.Tensor) -> torch.Tensor:
        """A ``(T,)`` waveform at ``self.sr`` from tokens (or a bare ids tensor, one token per frame)."""
        if not isinstance(tokens, SpeechTokens):
            tokens = SpeechTokens(torch.as_tensor(tokens), self.frame_rate)
        self.check_ids(tokens.ids)
        return self._decode(tokens)

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise a clear error unless ``ids`` are integer tokens of this tokenizer's shape and vocabulary."""
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a torch tensor of token ids, got {type(ids).__name__}")
        want = "(T,)" if self.n_levels == 1 else f"({self.n_levels}, T) or fewer levels (k, T)"
        check_ids(ids, self.vocab_size, 1 if self.n_levels == 1 else 2, what=f"{self.name} ids", shape=want,
                  allow_empty=False)
        if self.n_levels > 1 and not 1 <= ids.shape[0] <= self.n_levels:
            raise ValueError(f"{self.name} ids must have shape {want}, got {tuple(ids.shape)}")

    def bitrate(self, tokens: SpeechTokens | None = None, n_levels: int | None = None) -> float:
        """Bits per second.

        Without ``tokens``: the fixed rate, ``frame_rate x levels x log2(vocab_size)``. With
        de-duplicated ``tokens``: the actual rate, ``tokens x log2(vocab_size) / seconds`` (durations
        not counted, as in GSLM's and the survey's unit bitrates).
        """
        bits = math.log2(self.vocab_size)
        if tokens is None:
            return self.frame_rate * (n_levels or self.n_levels) * bits
        levels = 1 if tokens.ids.ndim == 1 else tokens.ids.shape[0]
        return len(tokens) * levels * bits / tokens.seconds
