"""A tiny HuBERT: a Transformer that learns speech by predicting the units of masked frames (notebook 02).

HuBERT (Hsu et al., 2021) hides spans of its input and predicts, for each hidden frame, the
cluster (unit) that an earlier model assigned to it. Its first iteration's targets are k-means
clusters of MFCCs; the second iteration re-clusters a layer of the first model and trains again.
Here, in miniature: the targets are the log-mel units of :mod:`slm_course.units`, and k-means on
one of this model's layers gives the self-supervised units (:class:`slm_course.units.SslUnits`).
This file is the model alone; :func:`slm_course.units_recipe.train_hubert` is the course's recipe for it.

What is new over the log-mel units is *context* and *invariance*: to guess a hidden frame's unit
the model must use its neighbours (up to seconds away), and because its input is randomly
distorted (the mel axis stretched like a longer or shorter vocal tract, a random loudness, faint
noise) while the targets are not, it learns to map many voices to the same units.

- input: 40-band log-mel frames at 50 Hz, corpus-normalised, ``(B, T, 40)``;
- a convolution (3 frames) into ``d_model``, a learned mask embedding for hidden frames, a
  convolutional position embedding (HuBERT's), ``n_layers`` pre-norm Transformer layers;
- loss: cross-entropy of the hidden frames' units (plus ``unmasked_weight`` times that of the
  visible ones).

>>> model = TinyHubert(HubertConfig(d_model=32, n_layers=1, n_heads=2, ff=64))
>>> model.layer_output(torch.randn(50, 40), 1).shape
torch.Size([50, 32])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slm_course.runtime import artifact_record

__all__ = ["HubertConfig", "TinyHubert", "span_mask", "warp_bands"]


@artifact_record  # stored in the cached model's record
@dataclass(frozen=True)
class HubertConfig:
    """Size, masking, augmentation and training budget of the tiny HuBERT."""

    n_mels: int = 40  # input bands per 20 ms frame
    d_model: int = 128  # width of the Transformer
    n_layers: int = 2  # Transformer layers
    n_heads: int = 4  # attention heads
    ff: int = 512  # width of each layer's MLP
    dropout: float = 0.1  # dropout in the Transformer layers
    mask_prob: float = 0.08  # chance that a frame starts a hidden span (HuBERT: 0.08) ...
    mask_span: int = 5  # ... of this many frames (100 ms); about a third of frames end up hidden
    unmasked_weight: float = 1.0  # weight of the visible frames' loss (HuBERT: 0; here it speeds learning)
    n_targets: int = 50  # K of the log-mel units it predicts (coarser than the final units' K=100)
    warp: float = 0.2  # mel-axis stretch factor drawn from [1 - warp, 1 + warp] per crop (0 = off)
    gain: float = 0.5  # random offset of the normalised log-mel per crop (loudness), std
    noise: float = 0.1  # std of Gaussian noise added to the normalised input frames
    steps: int = 250  # optimiser updates (a short CPU run, then cached)
    lr: float = 1.5e-3  # peak learning rate
    warmup_steps: int = 40  # linear warm-up
    batch_size: int = 8  # crops per batch
    crop: int = 150  # frames per crop (3 s, across utterance boundaries)
    unit_layer: int = 1  # the layer clustered into units by default
    seed: int = 0  # seeds the weights, the crops, the masks and the augmentation

    def __post_init__(self) -> None:
        for name in ("n_mels", "d_model", "n_layers", "n_heads", "ff", "mask_span", "n_targets", "steps",
                     "batch_size", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HubertConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0 <= self.warp < 0.5:
            raise ValueError(f"warp must be in [0, 0.5), got {self.warp}")
        if not 0 <= self.unit_layer <= self.n_layers:
            raise ValueError(f"unit_layer must be in 0..{self.n_layers}, got {self.unit_layer}")


def span_mask(B: int, T: int, prob: float, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """HuBERT's mask: each frame starts a hidden span of ``span`` frames with chance ``prob``; ``(B, T)`` bool.

    At least one frame per row is hidden. Spans overlap, so the hidden share is
    ``1 - (1 - prob) ** span`` on average (0.34 for 0.08 and 5).
    """
    if not 0 < prob < 1 or isinstance(span, bool) or not isinstance(span, int) or span < 1 or B < 1 or T < 1:
        raise ValueError(f"span_mask needs 0 < prob < 1 (a chance, e.g. 0.08, not a percentage), span >= 1 frames "
                         f"and B, T >= 1; got B={B}, T={T}, prob={prob!r}, span={span!r}")
    starts = torch.rand(B, T, generator=generator) < prob  # (B, T)
    starts[torch.arange(B), torch.randint(T, (B,), generator=generator)] = True
    mask = torch.zeros(B, T + span, dtype=torch.bool)
    for k in range(span):
        mask[:, k : k + T] |= starts
    return mask[:, :T]


def warp_bands(frames: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Stretch the mel axis of ``(B, T, M)`` frames by ``factor`` ``(B,)``: band ``i`` reads band ``i * factor``.

    A factor above 1 moves spectral peaks down (a longer vocal tract), below 1 up; linear
    interpolation between bands, the top band repeated past the edge.
    """
    B, T, M = frames.shape
    pos = (torch.arange(M, dtype=frames.dtype)[None, :] * factor[:, None]).clamp(0, M - 1)  # (B, M)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(M - 1)
    w = (pos - lo)[:, None, :]  # (B, 1, M)
    take = lambda idx: torch.gather(frames, 2, idx[:, None, :].expand(B, T, M))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


class TinyHubert(nn.Module):
    """Masked prediction of units over log-mel frames (see the module docstring)."""

    def __init__(self, config: HubertConfig = HubertConfig()) -> None:
        super().__init__()
        if not isinstance(config, HubertConfig):
            raise TypeError(f"config must be a HubertConfig, got {type(config).__name__}")
        self.config = c = config
        self.front = nn.Conv1d(c.n_mels, c.d_model, kernel_size=3, padding=1)
        self.mask_embed = nn.Parameter(torch.randn(c.d_model) * 0.1)
        self.pos = nn.Conv1d(c.d_model, c.d_model, kernel_size=15, padding=7, groups=16 if c.d_model % 16 == 0 else 1)
        self.norm_in = nn.LayerNorm(c.d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff, c.dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(c.n_layers)
        )
        self.norm_out = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_targets)

    def hidden_states(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Outputs of the input stage (0) and of every layer (1..n_layers), each ``(B, T, d_model)``."""
        if feats.ndim != 3 or feats.shape[2] != self.config.n_mels:
            raise ValueError(f"feats must be (B, T, {self.config.n_mels}) normalised log-mel frames, "
                             f"got {tuple(feats.shape)}")
        x = self.front(feats.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embed.to(x.dtype), x)
        x = self.norm_in(x + F.gelu(self.pos(x.transpose(1, 2))).transpose(1, 2))
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return states

    @torch.no_grad()
    def layer_output(self, feats: torch.Tensor, layer: int) -> torch.Tensor:
        """Frames ``(T, n_mels)`` of one utterance -> that layer's output ``(T, d_model)`` (eval mode, no mask)."""
        if not 0 <= layer <= self.config.n_layers:
            raise ValueError(f"layer must be in 0..{self.config.n_layers}, got {layer}")
        if feats.ndim != 2:
            raise ValueError(f"feats must be (T, {self.config.n_mels}) frames of one utterance, got {tuple(feats.shape)}")
        was = self.training
        self.eval()
        states = self.hidden_states(feats[None].float())
        self.train(was)
        return states[layer][0]

    def augment(self, feats: torch.Tensor) -> torch.Tensor:
        """Random vocal-tract stretch, loudness and noise per crop (training only; targets stay as they were)."""
        c = self.config
        B = feats.shape[0]
        if c.warp > 0:
            feats = warp_bands(feats, 1 + (torch.rand(B) * 2 - 1) * c.warp)
        if c.gain > 0:
            feats = feats + torch.randn(B, 1, 1) * c.gain
        if c.noise > 0:
            feats = feats + torch.randn_like(feats) * c.noise
        return feats

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"feats": (B, T, n_mels), "labels": (B, T)}`` -> loss and masked-frame accuracy."""
        feats, labels = batch["feats"], batch["labels"]
        c = self.config
        B, T, _ = feats.shape
        mask = span_mask(B, T, c.mask_prob, c.mask_span)
        if self.training:
            feats = self.augment(feats)
        logits = self.head(self.norm_out(self.hidden_states(feats, mask)[-1]))  # (B, T, K)
        ce = F.cross_entropy(logits.reshape(B * T, -1), labels.reshape(-1), reduction="none").reshape(B, T)
        masked = ce[mask].mean()
        loss = masked + c.unmasked_weight * ce[~mask].mean() if c.unmasked_weight > 0 else masked
        acc = (logits.argmax(-1) == labels)[mask].float().mean()
        return {"loss": loss, "masked_loss": masked.detach(), "masked_acc": acc}
