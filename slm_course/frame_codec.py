"""Speech tokens at 12.5 frames/s for notebook 08's Moshi-style model: one semantic unit and a few acoustic codes per 80 ms.

Moshi reads Mimi's tokens: 12.5 frames/s, a semantic codebook (distilled from WavLM) and acoustic
residual codebooks. The course builds the same shape from what it has:

- the **semantic** token of a frame is the most frequent of its four 50 Hz speaker-normalised units
  (notebook 05), :func:`frame_units`;
- the **acoustic** tokens are :class:`MelRVQ`: residual vector quantisation of the frame's 80 ms of
  log-mel (8 frames x 80 bands), decoded by Griffin-Lim. Mimi is a trained neural codec; a patch
  quantiser is the smallest thing that gives several codebook levels at 12.5 Hz and that the
  course's recogniser can still read back.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from slm_course import audio
from slm_course.codec import rvq_encode

__all__ = ["FRAME_S", "MelRVQ", "frame_units", "n_frames"]

FRAME_S = 0.08  # one frame every 80 ms: 12.5 frames/s, Mimi's rate
PATCH = 8  # 10 ms log-mel frames per 80 ms frame
N_MELS = 80
HOP = 160  # 10 ms at 16 kHz


def n_frames(n_samples: int) -> int:
    """Frames of 80 ms that cover ``n_samples`` at 16 kHz (the last one padded with silence)."""
    return max(1, math.ceil(n_samples / (HOP * PATCH)))


def frame_units(units: torch.Tensor, frames: int, per_frame: int = 4) -> torch.Tensor:
    """50 Hz unit ids ``(N,)`` -> one per 80 ms frame ``(frames,)``: the most frequent of its 4 (ties: the first).

    >>> frame_units(torch.tensor([3, 3, 5, 5, 7, 7, 7, 2]), 2).tolist()
    [3, 7]
    """
    if units.ndim != 1 or len(units) == 0:
        raise ValueError(f"need 50 Hz unit ids (N,), N >= 1, got shape {tuple(units.shape)}")
    need = frames * per_frame
    u = torch.cat([units, units[-1:].expand(max(0, need - len(units)))])[:need].view(frames, per_frame)
    out = []
    for row in u.tolist():
        out.append(max(row, key=lambda x: (row.count(x), -row.index(x))))
    return torch.tensor(out, dtype=torch.long)


class MelRVQ:
    """Acoustic tokens at 12.5 Hz: residual VQ of 80 ms log-mel patches (8 frames x 80 bands), Griffin-Lim back."""

    def __init__(self, codebooks: torch.Tensor, mean: torch.Tensor) -> None:
        if codebooks.ndim != 3 or codebooks.shape[2] != PATCH * N_MELS:
            raise ValueError(f"codebooks must be (levels, K, {PATCH * N_MELS}), got {tuple(codebooks.shape)}")
        self.codebooks, self.mean = codebooks.float(), mean.float()

    @property
    def levels(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @staticmethod
    def patches(wav: torch.Tensor | np.ndarray, frames: int | None = None) -> torch.Tensor:
        """``(frames, 640)``: each 80 ms frame's 8 log-mel columns, one vector per frame."""
        x = audio.check_wav(wav, audio.SR)
        T = n_frames(len(x)) if frames is None else frames
        x = F.pad(x, (0, max(0, T * HOP * PATCH - len(x))))
        mel = audio.log_mel(x, audio.SR, n_mels=N_MELS)[:, : T * PATCH]  # (80, 8T)
        return mel.T.reshape(T, PATCH * N_MELS)

    @classmethod
    def fit(cls, patches: torch.Tensor, levels: int = 3, codebook_size: int = 64, seed: int = 0) -> MelRVQ:
        """k-means level by level on what the levels before left (the residual)."""
        from slm_course.units import fit_kmeans

        mean = patches.mean(0)
        residual, books = patches - mean, []
        for level in range(levels):
            book = fit_kmeans(residual, codebook_size, seed=seed + level)
            residual = residual - book[torch.cdist(residual, book).argmin(1)]
            books.append(book)
        return cls(torch.stack(books), mean)

    def encode(self, wav: torch.Tensor | np.ndarray, frames: int | None = None) -> torch.Tensor:
        """``(levels, frames)`` codes."""
        return rvq_encode(self.patches(wav, frames) - self.mean, self.codebooks)[0]

    def decode_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """``(levels' <= levels, T)`` codes -> ``(80, 8T)`` log-mel: the sum of the chosen codewords."""
        codes = torch.as_tensor(codes).long()
        if codes.ndim != 2 or not 1 <= codes.shape[0] <= self.levels:
            raise ValueError(f"codes must be (levels, T) with 1..{self.levels} levels, got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must be in 0..{self.codebook_size - 1}; were they made by another quantiser?")
        x = self.mean + sum(self.codebooks[q][codes[q]] for q in range(codes.shape[0]))  # (T, 640)
        return x.reshape(-1, N_MELS).T

    def decode(self, codes: torch.Tensor, n_iter: int = 32) -> torch.Tensor:
        """A 16 kHz waveform: mel -> linear power (least squares through the filterbank) -> Griffin-Lim."""
        mel = self.decode_mel(codes).exp()
        fb = torchaudio.functional.melscale_fbanks(201, 0.0, audio.SR / 2, N_MELS, audio.SR, norm=None, mel_scale="htk")
        power = (torch.linalg.pinv(fb.T) @ mel).clamp_min(1e-10)  # (201, 8T)
        gl = torchaudio.transforms.GriffinLim(n_fft=400, n_iter=n_iter, win_length=400, hop_length=HOP, power=2.0,
                                              rand_init=False)
        wav = gl(power)
        return wav / wav.abs().max().clamp_min(1e-4) * 0.5
