"""A full-duplex speech + text LM in the style of Moshi (notebook 08): parallel streams, frame by frame.

SpiRit-LM (notebook 07) puts text and speech *one after the other* in one sequence. Moshi (Défossez
et al., 2024) runs them **in parallel**, one step per audio frame (80 ms here, 12.5 frames/s as Mimi):

- a **text stream**, the "inner monologue": the words of the model's own speech, each at the frame
  where it starts to be said, ``EPAD`` just before it, ``PAD`` everywhere else (:func:`align_text`);
- the model's own audio: a **semantic** token (what is said) and ``levels`` **acoustic** tokens (how),
  the acoustic ones one frame late, the **acoustic delay** (:func:`delay`, :func:`undelay`);
- the **user's audio**, semantic and acoustic, as more input streams: the model hears while it speaks.

A **temporal transformer** (the course's one LM core, :class:`slm_course.lm.LM`, which sums the
streams' embeddings) reads one frame per step and gives a context vector ``z_t``; the text token of
frame ``t`` is read from ``z_t``, then a small **depth transformer** predicts the frame's audio tokens
one after another, each given the ones before it (:class:`DepthTransformer`; separate weights per
step, Moshi's ``depformer_multi_linear``). Generation is one loop over frames (:meth:`MoshiLM.generate`):
the user's tokens are read as they arrive, the model's own are sampled.

The audio tokens come from :mod:`slm_course.frame_codec` (80 ms frames, a semantic unit and residual
VQ codes per frame). The data, training and evaluations are in :mod:`slm_course.moshi_recipe` and
:mod:`slm_course.moshi_eval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slm_course.frame_codec import FRAME_S
from slm_course.lm import IGNORE, LM, LMConfig, sample_next
from slm_course.runtime import artifact_record

__all__ = ["EPAD", "PAD", "DepthTransformer", "MoshiConfig", "MoshiLM", "align_text", "delay", "undelay"]

PAD, EPAD = 0, 1  # text stream: "no word starts here" and "a word starts at the next frame"


def align_text(words: Sequence[tuple[int, float]], frames: int) -> torch.Tensor:
    """The text stream of one channel: ``(frames,)`` ids, each word's id at the frame where it starts.

    ``words``: ``(token id, start time in seconds)`` in order. Every word is announced by ``EPAD``
    in the frame before it (Moshi's "end of padding"), so a word is placed at its start frame or,
    when the previous word is too close, at the first frame after it that leaves room for ``EPAD``:
    the text can run a frame or two late, never early.

    >>> align_text([(5, 0.10), (6, 0.20), (7, 0.50)], 9).tolist()
    [1, 5, 1, 6, 0, 1, 7, 0, 0]
    """
    out = torch.full((frames,), PAD, dtype=torch.long)
    last = -2
    for tok, start in words:
        if tok in (PAD, EPAD):
            raise ValueError(f"word ids must not be PAD ({PAD}) or EPAD ({EPAD}); got {tok}")
        f = max(int(start / FRAME_S), last + 2, 1)
        if f >= frames:
            raise ValueError(f"a word starting at {start:.2f} s lands at frame {f}, past the {frames} frames given; "
                             "give more frames (n_frames of the audio)")
        out[f - 1], out[f] = EPAD, tok
        last = f
    return out


def delay(grid: torch.Tensor, delays: Sequence[int], fill: int) -> torch.Tensor:
    """Shift stream ``s`` of ``grid`` ``(S, T)`` (or ``(B, S, T)``) ``delays[s]`` frames later: ``(..., S, T + D)``.

    ``D = max(delays)``; the frames a shift leaves empty, at the start and at the end, hold ``fill``.
    Read down a column of the result and you see what the model predicts at one step: the acoustic
    tokens there belong to the frame *before* the semantic token's.

    >>> delay(torch.tensor([[1, 2, 3], [4, 5, 6]]), [0, 1], fill=9).tolist()
    [[1, 2, 3, 9], [9, 4, 5, 6]]
    """
    S, T = grid.shape[-2:]
    if len(delays) != S or min(delays) < 0:
        raise ValueError(f"need one delay >= 0 per stream ({S}), got {list(delays)}")
    D = max(delays)
    out = grid.new_full((*grid.shape[:-1], T + D), fill)
    for s, d in enumerate(delays):
        out[..., s, d : d + T] = grid[..., s, :]
    return out


def undelay(grid: torch.Tensor, delays: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`delay`: ``(..., S, T + D) -> (..., S, T)``, every stream back in step.

    >>> undelay(delay(torch.tensor([[1, 2, 3], [4, 5, 6]]), [0, 1], fill=9), [0, 1]).tolist()
    [[1, 2, 3], [4, 5, 6]]
    """
    S, L = grid.shape[-2:]
    if len(delays) != S or min(delays) < 0 or L <= max(delays):
        raise ValueError(f"need one delay >= 0 per stream ({S}) and more than {max(delays, default=0)} frames, "
                         f"got delays {list(delays)} for {L} frames")
    T = L - max(delays)
    return torch.stack([grid[..., s, d : d + T] for s, d in enumerate(delays)], dim=-2)


@artifact_record
@dataclass(frozen=True)
class MoshiConfig:
    """Streams, sizes and training budget. Streams: text, own semantic, own acoustic x levels, then the user's."""

    text_vocab: int  # PAD, EPAD and the words
    n_semantic: int = 100  # semantic units (the speaker-normalised units of notebook 05)
    levels: int = 3  # acoustic codebooks
    codebook_size: int = 64
    inner_monologue: bool = True  # False: the text stream is all PAD and not predicted
    acoustic_delay: int = 1  # frames the acoustic tokens lag the semantic one
    text_delay: int = 0  # frames the text lags the audio (negative: the audio lags the text)
    user_streams: bool = True  # the user's audio as input streams (full duplex)
    depth: bool = True  # False: every audio token from z_t by its own head, independently
    d_model: int = 128  # the temporal transformer's width, layers and heads
    n_layers: int = 2
    n_heads: int = 4
    depth_d_model: int = 64  # the depth transformer's width and layers: it reads one frame's few tokens
    depth_layers: int = 1
    max_frames: int = 128  # the longest sequence of frames, delays included (the recipe's: moshi_recipe.MAX_FRAMES)
    dropout: float = 0.0  # in the temporal transformer
    steps: int = 1500  # training steps; the recipe sets its own (moshi_recipe.config_for: STEPS, ONE_CHANNEL_STEPS)
    lr: float = 3e-3  # AdamW's peak learning rate, after `warmup_steps` of linear warm-up, then a cosine decay
    warmup_steps: int = 100
    batch_size: int = 16  # dialogues per step
    seed: int = 0  # the initial weights and the order of the batches

    def __post_init__(self) -> None:
        if self.text_vocab < 3 or self.levels < 1 or self.acoustic_delay < 0:
            raise ValueError("need text_vocab >= 3 (PAD, EPAD, a word), levels >= 1 and acoustic_delay >= 0")

    @property
    def n_system(self) -> int:  # streams the model predicts: text, semantic, acoustic levels
        return 2 + self.levels

    @property
    def n_streams(self) -> int:
        return self.n_system + (1 + self.levels if self.user_streams else 0)

    @property
    def vocab(self) -> int:  # one embedding table size for all streams; its last id is INITIAL
        return max(self.text_vocab, self.n_semantic, self.codebook_size) + 1

    @property
    def initial(self) -> int:  # "nothing here": before the first frame, and where a delay leaves a gap
        return self.vocab - 1

    @property
    def delays(self) -> list[int]:
        audio_delays = [0] + [self.acoustic_delay] * self.levels
        text, shift = max(self.text_delay, 0), max(-self.text_delay, 0)
        user = audio_delays if self.user_streams else []
        return [text] + [d + shift for d in audio_delays] + [d + shift for d in user]

    @property
    def sizes(self) -> list[int]:  # vocabulary of each predicted stream
        return [self.text_vocab, self.n_semantic] + [self.codebook_size] * self.levels


class StepLinear(nn.Module):
    """A linear layer with its own weights at each depth step: ``(N, K, d_in) -> (N, K, d_out)``."""

    def __init__(self, steps: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(steps, d_in, d_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(steps, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = x.shape[1]
        return torch.einsum("nki,kio->nko", x, self.weight[:K]) + self.bias[:K]


class DepthBlock(nn.Module):
    """Pre-norm Transformer block over the steps of one frame, causal, every linear layer per step."""

    def __init__(self, steps: int, d: int, n_heads: int = 4) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = StepLinear(steps, d, 3 * d), StepLinear(steps, d, d)
        self.up, self.down = StepLinear(steps, d, 4 * d), StepLinear(steps, 4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, K, C = x.shape
        q, k, v = (t.view(N, K, self.n_heads, -1).transpose(1, 2) for t in self.qkv(self.ln1(x)).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=K > 1).transpose(1, 2).reshape(N, K, C)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class DepthTransformer(nn.Module):
    """One frame's audio tokens, one after another: step ``k`` reads ``z_t`` and the token of step ``k - 1``.

    Step 0 (the semantic token) reads the frame's text token, as Moshi's depformer does.
    """

    def __init__(self, cfg: MoshiConfig) -> None:
        super().__init__()
        K, d = cfg.n_system - 1, cfg.depth_d_model
        self.z_in = StepLinear(K, cfg.d_model, d)
        self.emb = nn.ModuleList(nn.Embedding(cfg.vocab, d) for _ in range(K))  # previous token of each step
        self.blocks = nn.ModuleList(DepthBlock(K, d) for _ in range(cfg.depth_layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, n) for n in cfg.sizes[1:])

    def forward(self, z: torch.Tensor, prev: torch.Tensor) -> list[torch.Tensor]:
        """``z`` ``(N, d_model)``, ``prev`` ``(N, K')`` the tokens before each step -> ``K'`` logits ``(N, V_k)``."""
        K = prev.shape[1]
        x = self.z_in(z[:, None].expand(-1, K, -1)) + torch.stack([self.emb[k](prev[:, k]) for k in range(K)], 1)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return [self.heads[k](x[:, k]) for k in range(K)]


class MoshiLM(nn.Module):
    """Temporal transformer over frames + text head + depth transformer (or independent heads) per frame."""

    def __init__(self, cfg: MoshiConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.temporal = LM(LMConfig(vocab_size=cfg.vocab, d_model=cfg.d_model, n_layers=cfg.n_layers,
                                    n_heads=cfg.n_heads, max_len=cfg.max_frames + 1, n_streams=cfg.n_streams,
                                    tie_weights=False, dropout=cfg.dropout))
        self.temporal.heads = nn.ModuleList()  # its output feeds the text head and the depth transformer instead
        self.text_head = nn.Linear(cfg.d_model, cfg.text_vocab)
        if cfg.depth:
            self.depth = DepthTransformer(cfg)
        else:
            self.audio_heads = nn.ModuleList(nn.Linear(cfg.d_model, n) for n in cfg.sizes[1:])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def audio_logits(self, z: torch.Tensor, frame: torch.Tensor) -> list[torch.Tensor]:
        """Logits of the audio tokens of frames whose context is ``z`` ``(N, d)``, teacher-forced on ``frame`` ``(N, S_sys)``."""
        if not self.cfg.depth:
            return [head(z) for head in self.audio_heads]
        prev = frame[:, : self.cfg.n_system - 1]  # text, semantic, acoustic 1 .. L-1
        if not self.cfg.inner_monologue:
            prev = torch.cat([torch.full_like(prev[:, :1], PAD), prev[:, 1:]], 1)
        return self.depth(z, prev)

    def _context(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` ``(B*T, d)`` for every step of delayed grids ``(B, S, T)`` (each step sees the grid up to the one
        before), and the system's tokens of each step ``(B*T, S_sys)``."""
        cfg = self.cfg
        if grid.ndim != 3 or grid.shape[1] != cfg.n_streams:
            raise ValueError(f"grid must be (B, {cfg.n_streams}, T), got {tuple(grid.shape)}")
        B, _, T = grid.shape
        inp = torch.cat([torch.full_like(grid[:, :, :1], cfg.initial), grid[:, :, :-1]], dim=2)
        if not cfg.inner_monologue:
            inp[:, 0] = torch.where(inp[:, 0] == cfg.initial, inp[:, 0], PAD)
        z = self.temporal.hidden(inp).reshape(B * T, -1)
        return z, grid[:, : cfg.n_system].transpose(1, 2).reshape(B * T, cfg.n_system)

    def logits(self, grid: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Teacher-forced logits for every step of delayed grids ``(B, S, T)``: text ``(B, T, V)`` (None without
        the inner monologue) and one ``(B, T, V_k)`` per audio stream."""
        B, _, T = grid.shape
        z, frame = self._context(grid)
        text = self.text_head(z).view(B, T, -1) if self.cfg.inner_monologue else None
        return text, [lg.view(B, T, -1) for lg in self.audio_logits(z, frame)]

    def forward(self, batch: dict) -> dict:
        """``batch["grid"]``: delayed token grids ``(B, S, T)``, ``initial`` where nothing is (never scored)."""
        cfg = self.cfg
        z, frame = self._context(batch["grid"])
        target = frame.masked_fill(frame == cfg.initial, IGNORE)
        losses = {}
        if cfg.inner_monologue:
            losses["text"] = F.cross_entropy(self.text_head(z), target[:, 0], ignore_index=IGNORE)
        keep = (target[:, 1:] != IGNORE).any(1)  # the depth transformer runs on frames with audio to predict only
        logits = self.audio_logits(z[keep], frame[keep])
        per = [F.cross_entropy(lg, target[keep, k + 1], ignore_index=IGNORE) for k, lg in enumerate(logits)]
        losses["semantic"], losses["acoustic"] = per[0], torch.stack(per[1:]).mean()
        return {"loss": sum(losses.values()), **{f"{k}_nll": float(v.detach()) for k, v in losses.items()}}

    @torch.no_grad()
    def generate(self, frames: int, user: torch.Tensor | None = None, forced: torch.Tensor | None = None,
                 temperature: float = 0.8, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Run the model for ``frames`` frames: ``(S_sys, frames)`` of its own tokens, back in step (undelayed).

        ``user``: the user's tokens ``(1 + levels, frames)``, read one frame at a time as they would
        arrive (full duplex). ``forced``: ``(S_sys, frames)`` ids to keep instead of sampling, ``-1``
        where the model chooses (a prompt; a transcript to speak; audio to transcribe). Give both with
        a leading batch dimension, ``(B, ..., frames)``, to run ``B`` dialogues at once: ``(B, S_sys, frames)``.
        """
        cfg = self.cfg
        S, L = cfg.n_system, frames + max(cfg.delays)
        if L > cfg.max_frames:
            raise ValueError(f"{frames} frames and the delays need {L} steps; this model holds {cfg.max_frames}")
        batched = any(x is not None and x.ndim == 3 for x in (user, forced))
        B = next((x.shape[0] for x in (user, forced) if x is not None and x.ndim == 3), 1)
        streams = torch.full((B, cfg.n_streams, frames), -1, dtype=torch.long)
        if cfg.user_streams:
            want = (B, 1 + cfg.levels, frames) if batched else (1 + cfg.levels, frames)
            if user is None or tuple(user.shape) != want:
                raise ValueError(f"this model listens: give user tokens (1 + levels, frames) = {want[-2:]}, "
                                 "with a leading batch dimension to run several dialogues")
            streams[:, S:] = user
        elif user is not None:
            raise ValueError("this model has no user streams (a one-channel model, such as the delay swap's 'asr' or "
                             "'tts'): give the audio it reads as forced=(S_sys, frames), -1 where it writes")
        if forced is not None:
            want = (B, S, frames) if batched else (S, frames)
            if tuple(forced.shape) != want:
                raise ValueError(f"forced must be (S_sys, frames) = {(S, frames)} (batched: {(B, S, frames)}), "
                                 "-1 where the model samples")
            streams[:, :S] = forced
        if not cfg.inner_monologue:
            if forced is not None and bool(((forced[..., 0, :] >= 0) & (forced[..., 0, :] != PAD)).any()):
                raise ValueError("this model has no inner monologue (its text stream is all PAD): forced text would "
                                 "be lost; force audio streams only, with -1 or PAD in the text stream (row 0)")
            streams[:, 0] = PAD
        grid = delay(streams, cfg.delays, fill=cfg.initial)  # (B, S_all, L): -1 where the model samples
        was = self.training
        self.eval()
        caches = [{} for _ in self.temporal.blocks]
        prev = torch.full((B, cfg.n_streams, 1), cfg.initial, dtype=torch.long)
        for t in range(L):
            z = self.temporal.hidden(prev, caches=caches, start=t)[:, -1]  # (B, d)
            col = grid[:, :S, t].clone()
            col[:, 0] = torch.where(col[:, 0] < 0, sample_next(self.text_head(z), temperature, top_k, generator),
                                    col[:, 0])
            if cfg.depth:
                for k in range(1, S):  # each audio token given the ones before it in this frame
                    logits = self.audio_logits(z, col.clamp_min(0))[k - 1]
                    col[:, k] = torch.where(col[:, k] < 0, sample_next(logits, temperature, top_k, generator),
                                            col[:, k])
            else:
                logits = self.audio_logits(z, col.clamp_min(0))
                for k in range(1, S):
                    col[:, k] = torch.where(col[:, k] < 0, sample_next(logits[k - 1], temperature, top_k, generator),
                                            col[:, k])
            grid[:, :S, t] = col
            prev = grid[:, :, t : t + 1].clone()
        self.train(was)
        out = undelay(grid[:, :S], cfg.delays[:S])
        return out if batched else out[0]
