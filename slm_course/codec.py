"""A neural audio codec: encoder -> residual vector quantiser -> decoder (notebook 03).

A codec turns a waveform into a few integer codes per frame and back into a waveform. EnCodec,
SoundStream and Moshi's Mimi do it with a convolutional encoder, a **residual vector quantiser**
(RVQ) and a decoder: level 1 picks the codeword nearest to the encoder's frame vector, level 2
the codeword nearest to what level 1 left over, and so on; decoding sums the chosen codewords.
Each added level costs ``frame_rate x log2(codebook_size)`` bits per second and refines the sound.

The course's codec is built for a laptop CPU, so it works in the spectral domain (as Vocos does)
instead of on raw samples:

- STFT log-magnitude frames, 62.5 per second (hop 256 at 16 kHz), are the encoder's input;
- the encoder and the decoder are a few ConvNeXt-style blocks over time (:class:`ConvNeXtBlock`);
- the quantiser is the ``encodec`` package's ``ResidualVectorQuantizer`` (8 levels x 256 codes,
  k-means initialised, EMA codebooks; its dead-code restart is undone by the EMA step that follows
  it, so the k-means start is what keeps the codes in use), trained with *quantiser dropout*:
  each batch uses a random number of levels, so one model decodes at every bitrate;
- the decoder predicts log-magnitude **and** phase, and an inverse STFT makes the waveform;
- the losses are an L1 on the log-magnitude and a multi-resolution log-mel L1 on the output
  waveform (plus the quantiser's commitment loss); no adversarial loss.

Nothing ties the predicted phase to the input's phase, so the decoded waveform sounds right but
does not line up sample by sample with the original: its SI-SNR (:func:`si_snr`) stays near
noise level. Judge it by :func:`mel_distance` and by how well the course's ASR reads it
(:func:`slm_course.codec_recipe.evaluate_levels`). A waveform codec trained for days on GPUs with adversarial losses (the
real EnCodec) gets both right, at a cost far beyond a few minutes of a laptop CPU.

:class:`Codec` is a :class:`slm_course.speech_tokens.SpeechTokenizer`: ``encode(wav)`` gives
``SpeechTokens`` with ids ``(n_levels, T)``, ``decode(tokens)`` takes ``(k, T)`` for any
``k <= n_levels``. This file is the model; its recipe (training, the cached codec, the bitrate vs
quality evaluation, the benchmark) is :mod:`slm_course.codec_recipe`, and later notebooks get the
trained codec with its :func:`~slm_course.codec_recipe.load_codec`.

>>> codec = load_codec()                             # doctest: +SKIP
>>> tokens = codec.encode(wav)                       # doctest: +SKIP
>>> tokens.ids.shape, codec.bitrate(n_levels=2)      # doctest: +SKIP
(torch.Size([8, 107]), 1000.0)
>>> wav_hat = codec.decode(tokens.ids[:2])           # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from slm_course import audio
from slm_course.metrics import MEL_FLOOR, mel_distance, si_snr  # noqa: F401 (re-exported: codec.si_snr)
from slm_course.runtime import artifact_record, digest
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens, check_ids

__all__ = [
    "MEL_FLOOR",
    "Codec",
    "CodecConfig",
    "CodecModel",
    "ConvNeXtBlock",
    "codebook_usage",
    "match_length",
    "mel_distance",
    "rvq_encode",
    "si_snr",
]

SR = audio.SR  # the codec works on 16 kHz speech
MAG_FLOOR = 1e-3  # the encoder reads log(|STFT| + MAG_FLOOR): eSpeak's digital silence stays finite
LOG_MAG_MEAN, LOG_MAG_STD = -2.5, 1.7  # typical log(|STFT| + MAG_FLOOR) of the corpus: inputs are standardised

# ---------------------------------------------------------------------------------------------
# Metrics: codebook usage here; SI-SNR and mel distance live in slm_course.metrics
# ---------------------------------------------------------------------------------------------


def match_length(wav: torch.Tensor, n: int) -> torch.Tensor:
    """Cut or zero-pad a ``(T,)`` waveform to ``n`` samples (a decoded waveform ends on a frame boundary)."""
    if wav.shape[-1] >= n:
        return wav[..., :n]
    return F.pad(wav, (0, n - wav.shape[-1]))


def codebook_usage(ids: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes in use and perplexity per level of ``(n_levels, T)`` ids: two ``(n_levels,)`` tensors.

    The perplexity ``exp(entropy)`` of a level's code histogram is the number of equally used codes
    it is worth: ``vocab_size`` if every code is used equally, 1 if one code is used throughout.
    """
    ids = check_ids(ids, vocab_size, (1, 2), shape="(n_levels, T) or (T,)", allow_empty=False)
    if ids.ndim == 1:
        ids = ids[None]
    counts = torch.stack([torch.bincount(row, minlength=vocab_size) for row in ids.long()]).double()  # (L, K)
    p = counts / counts.sum(dim=1, keepdim=True)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(dim=1)
    return (counts > 0).sum(dim=1), entropy.exp()


def rvq_encode(x: torch.Tensor, codebooks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual vector quantisation of frame vectors ``x`` ``(T, D)`` with ``codebooks`` ``(L, K, D)``.

    Level by level: pick the nearest codeword to what is left (the residual), subtract it. Returns
    the codes ``(L, T)`` and the quantised vectors ``(T, D)`` (the sum of the chosen codewords).
    The loop written out; :class:`Codec` uses ``encodec``'s quantiser, which does the same.
    """
    if x.ndim != 2 or codebooks.ndim != 3 or codebooks.shape[2] != x.shape[1]:
        raise ValueError(f"need x (T, D) and codebooks (L, K, D) of one D, got {tuple(x.shape)}, {tuple(codebooks.shape)}")
    residual = x
    quantized = torch.zeros_like(x)
    codes = []
    for book in codebooks:  # (K, D)
        idx = torch.cdist(residual, book).argmin(dim=1)  # (T,): nearest codeword per frame
        chosen = book[idx]  # (T, D)
        quantized = quantized + chosen
        residual = residual - chosen
        codes.append(idx)
    return torch.stack(codes), quantized


# ---------------------------------------------------------------------------------------------
# Config and model
# ---------------------------------------------------------------------------------------------


@artifact_record  # stored in the cached model's record
@dataclass(frozen=True)
class CodecConfig:
    """The codec's size and training budget; the defaults train in a few minutes on a 2-core CPU."""

    n_fft: int = 512  # STFT size (and window length) in samples: 32 ms, 257 frequency bins
    hop: int = 256  # samples between frames: 16000 / 256 = 62.5 frames (and code vectors) per second
    channels: int = 192  # width of the ConvNeXt blocks
    blocks: int = 3  # ConvNeXt blocks in the encoder, and again in the decoder
    code_dim: int = 128  # size of the vectors the quantiser sees
    n_levels: int = 8  # RVQ levels (codebooks)
    codebook_size: int = 256  # codes per level: 8 bits per level and frame
    steps: int = 900  # optimiser updates
    lr: float = 2e-3  # peak learning rate (AdamW, warm-up then cosine decay)
    warmup_steps: int = 30  # steps of linear warm-up
    batch_size: int = 8  # crops per batch
    segment: int = 16384  # samples per training crop (1.02 s)
    mel_weight: float = 1.0  # weight of the multi-resolution log-mel loss on the output waveform
    mag_weight: float = 1.0  # weight of the L1 loss on the predicted log-magnitude
    commit_weight: float = 0.1  # weight of the quantiser's commitment loss
    seed: int = 0  # seeds the weights, the codebook initialisation and the crops

    def __post_init__(self) -> None:
        for name in ("n_fft", "hop", "channels", "blocks", "code_dim", "n_levels", "codebook_size", "steps",
                     "batch_size", "segment"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CodecConfig.{name} must be a positive int, got {value!r}")
        if self.hop > self.n_fft:
            raise ValueError(f"CodecConfig.hop ({self.hop}) must not exceed n_fft ({self.n_fft}): frames would leave gaps")
        if self.codebook_size < 2:
            raise ValueError("CodecConfig.codebook_size must be at least 2 (one code carries no information)")
        if self.segment < 4 * self.hop:
            raise ValueError(f"CodecConfig.segment must be at least 4 hops ({4 * self.hop} samples)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"CodecConfig.lr must be a positive finite number, got {self.lr!r}")

    @property
    def frame_rate(self) -> float:
        return SR / self.hop

    def key(self) -> str:
        """A short hash of every field, for cache names: equal configs give equal keys."""
        return digest(self)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time -> LayerNorm -> MLP (x3) -> scaled residual; ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, 3 * channels)
        self.down = nn.Linear(3 * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))  # small residual branch at the start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        h = self.down(F.gelu(self.up(self.norm(h)))) * self.scale
        return x + h.transpose(1, 2)


class CodecModel(nn.Module):
    """The network: log-magnitude -> encoder -> RVQ -> decoder -> log-magnitude and phase -> iSTFT.

    ``forward(wav (B, T))`` returns the training losses (the contract of :func:`slm_course.train.train`);
    :meth:`encode` and :meth:`decode` are what :class:`Codec` calls.
    """

    def __init__(self, config: CodecConfig = CodecConfig()) -> None:
        super().__init__()
        from encodec.quantization import ResidualVectorQuantizer

        if not isinstance(config, CodecConfig):
            raise TypeError(f"config must be a CodecConfig, got {type(config).__name__}")
        self.config = c = config
        n_bins = c.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        bins = torch.arange(n_bins, dtype=torch.float32)
        self.register_buffer("bin_advance", (2 * math.pi * bins * c.hop / c.n_fft) % (2 * math.pi), persistent=False)
        self.enc_in = nn.Conv1d(n_bins, c.channels, kernel_size=3, padding=1)
        self.encoder = nn.Sequential(*[ConvNeXtBlock(c.channels) for _ in range(c.blocks)])
        self.enc_out = nn.Conv1d(c.channels, c.code_dim, kernel_size=1)
        self.quantizer = ResidualVectorQuantizer(
            dimension=c.code_dim, n_q=c.n_levels, bins=c.codebook_size, kmeans_init=True, kmeans_iters=10,
            threshold_ema_dead_code=2,
        )
        self.dec_in = nn.Conv1d(c.code_dim, c.channels, kernel_size=3, padding=1)
        self.decoder = nn.Sequential(*[ConvNeXtBlock(c.channels) for _ in range(c.blocks)])
        self.dec_out = nn.Linear(c.channels, 2 * n_bins)  # log-magnitude and phase per bin
        with torch.no_grad():  # start from the typical log-magnitude: a bias far from 0 takes AdamW long to learn
            self.dec_out.bias[:n_bins].fill_(LOG_MAG_MEAN)
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(SR, n_fft=n, hop_length=n // 4, n_mels=m, power=1.0)
            for n, m in ((512, 40), (1024, 80), (2048, 128))
        )

    # -- spectra ------------------------------------------------------------------------------
    def spec(self, wav: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``(B, n_fft/2+1, frames)`` of ``(B, T)`` waveforms; ``frames = 1 + T // hop``."""
        c = self.config
        return torch.stft(wav, c.n_fft, c.hop, window=self.window, center=True, return_complex=True)

    def log_mag(self, wav: torch.Tensor) -> torch.Tensor:
        """``log(|STFT| + MAG_FLOOR)``, ``(B, n_bins, frames)``: the encoder's input and the decoder's target."""
        return torch.log(self.spec(wav).abs() + MAG_FLOOR)

    # -- the three stages ---------------------------------------------------------------------
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Encoder: ``(B, T)`` waveforms -> ``(B, code_dim, frames)`` continuous frame vectors."""
        x = self.enc_in((self.log_mag(wav) - LOG_MAG_MEAN) / LOG_MAG_STD)  # (B, C, frames), standardised input
        return self.enc_out(self.encoder(x))  # (B, code_dim, frames)

    def synthesize(self, quantized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder: ``(B, code_dim, frames)`` -> predicted log-magnitude ``(B, n_bins, frames)`` and waveform ``(B, T)``."""
        c = self.config
        h = self.decoder(self.dec_in(quantized)).transpose(1, 2)  # (B, frames, C)
        out = self.dec_out(h).transpose(1, 2)  # (B, 2 * n_bins, frames)
        log_mag, advance = out.chunk(2, dim=1)  # (B, n_bins, frames) each
        # Phase: integrate, frame by frame, each bin's expected advance (2 pi k hop / n_fft, exact for a
        # steady tone at the bin's centre) plus a learned correction. Frames then overlap-add coherently
        # from the first step, instead of cancelling as independent random phases would.
        phase = torch.cumsum(self.bin_advance[:, None] + advance, dim=-1)
        mag = torch.exp(log_mag.clamp(max=6.0))
        spec = torch.polar(mag, phase)  # mag * (cos(phase) + i sin(phase))
        wav = torch.istft(spec, c.n_fft, c.hop, window=self.window, center=True,
                          length=(spec.shape[-1] - 1) * c.hop)
        return log_mag, wav

    def encode(self, wav: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """Codes ``(n_levels, B, frames)`` of ``(B, T)`` waveforms."""
        return self.quantizer.encode(self.embed(wav), SR, None)[: n_levels or self.config.n_levels]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, (frames - 1) * hop)`` from codes ``(k, B, frames)``, any ``k <= n_levels``."""
        return self.synthesize(self.quantizer.decode(codes))[1]

    # -- training -----------------------------------------------------------------------------
    def mel_loss(self, wav_hat: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """Multi-resolution log-mel L1 (windows of 32, 64 and 128 ms), averaged."""
        losses = [(torch.log10(m(wav_hat) + MEL_FLOOR) - torch.log10(m(wav) + MEL_FLOOR)).abs().mean()
                  for m in self.mels]
        return torch.stack(losses).mean()

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses of a batch of crops ``(B, T)`` (``T`` a multiple of ``hop``) with a random number of levels."""
        c = self.config
        n_q = int(torch.randint(1, c.n_levels + 1, ()))  # quantiser dropout: one model for every bitrate
        z = self.embed(wav)  # (B, D, frames)
        q = self.quantizer.vq(z, n_q=n_q)  # straight-through quantised z, codes, commitment losses
        quantized, commit = q[0], q[2].mean()
        log_mag, wav_hat = self.synthesize(quantized)
        mag_loss = (log_mag - self.log_mag(wav)).abs().mean()
        mel_loss = self.mel_loss(wav_hat, wav)  # both (B, T): T is a whole number of hops
        loss = c.mag_weight * mag_loss + c.mel_weight * mel_loss + c.commit_weight * commit
        return {"loss": loss, "mag": mag_loss.detach(), "mel": mel_loss.detach(), "commit": commit.detach()}


# ---------------------------------------------------------------------------------------------
# The tokenizer interface
# ---------------------------------------------------------------------------------------------


class Codec(SpeechTokenizer):
    """The trained codec behind the course's one tokenizer interface.

    ``encode(wav)`` -> ``SpeechTokens`` with ids ``(n_levels, frames)`` at 62.5 frames per second;
    ``decode(ids (k, frames))`` -> waveform, for any ``k <= n_levels`` (fewer levels, fewer bits);
    ``resynthesize(wav, k)`` does both and returns a waveform as long as the input.
    """

    name = "codec"

    def __init__(self, model: CodecModel) -> None:
        if not isinstance(model, CodecModel):
            raise TypeError(f"model must be a CodecModel, got {type(model).__name__}")
        self.model = model.eval()
        self.config = model.config
        self.vocab_size = model.config.codebook_size
        self.n_levels = model.config.n_levels
        self.frame_rate = model.config.frame_rate
        self.metrics: dict[str, Any] = {}

    def _encode(self, wav: torch.Tensor) -> SpeechTokens:
        hop = self.config.hop
        x = F.pad(wav, (0, (-wav.numel()) % hop))  # a whole number of hops: decode gives back len(x) samples
        with torch.no_grad():
            codes = self.model.encode(x[None].to(self._device()))  # (n_levels, 1, frames)
        return SpeechTokens(codes[:, 0].cpu().long(), self.frame_rate)

    def _decode(self, tokens: SpeechTokens) -> torch.Tensor:
        if tokens.durations is not None:
            raise ValueError("codec tokens are never de-duplicated: pass ids with one column per frame (no durations)")
        ids = tokens.ids if tokens.ids.ndim == 2 else tokens.ids[None]
        with torch.no_grad():
            return self.model.decode(ids[:, None].to(self._device()))[0].cpu()  # ((frames - 1) * hop,)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def resynthesize(self, wav: torch.Tensor | np.ndarray, n_levels: int | None = None, sr: int = SR) -> torch.Tensor:
        """Encode, keep the first ``n_levels`` levels, decode: a waveform as long as ``wav``."""
        k = self.check_levels(n_levels)
        x = audio.check_wav(wav, sr, expected_sr=self.sr)
        return match_length(self.decode(self.encode(x, sr).ids[:k]), x.numel())

    def codebooks(self) -> torch.Tensor:
        """The codewords, ``(n_levels, codebook_size, code_dim)``."""
        return torch.stack([layer._codebook.embed.detach().cpu() for layer in self.model.quantizer.vq.layers])

    def embed(self, wav: torch.Tensor | np.ndarray, sr: int = SR) -> torch.Tensor:
        """The encoder's continuous frame vectors before quantisation, ``(frames, code_dim)``."""
        x = audio.check_wav(wav, sr, expected_sr=self.sr)
        x = F.pad(x, (0, (-x.numel()) % self.config.hop))
        with torch.no_grad():
            return self.model.embed(x[None].to(self._device()))[0].T.cpu()

    def check_levels(self, n_levels: int | None) -> int:
        """``n_levels`` checked against the codec's RVQ levels (None: all of them)."""
        if n_levels is None:
            return self.n_levels
        if isinstance(n_levels, bool) or not isinstance(n_levels, int) or not 1 <= n_levels <= self.n_levels:
            raise ValueError(f"n_levels must be an int in 1..{self.n_levels} (the codec's RVQ levels), got {n_levels!r}")
        return n_levels

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"Codec({self.n_levels} levels x {self.vocab_size} codes at {self.frame_rate:g} frames/s, "
                f"{self.bitrate(n_levels=1):g}-{self.bitrate():g} bit/s, {params / 1e6:.2f} M parameters)")
