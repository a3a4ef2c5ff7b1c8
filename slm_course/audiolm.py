"""AudioLM (notebook 06): semantic tokens first, then acoustic tokens conditioned on them.

A unit LM (notebooks 04-05) continues *what* is said, over units that should ignore *who* says it. A
codec (notebook 03) keeps the voice, but an LM over its tokens alone spends its capacity on acoustic
detail and babbles. AudioLM (Borsos et al., 2023) chains the two, each stage a decoder-only
Transformer (here each is the course's one core, :class:`slm_course.lm.LM`):

1. **semantic stage** ``p(semantic)``: notebook 05's unit LM over de-duplicated speaker-normalised
   units (50 Hz; :mod:`slm_course.normalizer`); it continues the prompt's content. Each generated
   unit gets a duration drawn from that unit's durations in the training data (:func:`duration_counts`);
2. **coarse acoustic stage** ``p(coarse | semantic)``: the first ``Q'`` RVQ levels of the codec
   (62.5 frames/s), flattened frame by frame with per-level offsets ``o_q = q * N`` (AudioLM's
   ``o_i = ((i - 1) mod Q') * N``), so that one vocabulary of ``Q' * N`` ids says code and level::

       codes (Q'=2, T) = [[a0, a1, ...],        tokens = [a0, N + b0, a1, N + b1, ...]
                          [b0, b1, ...]]

3. **fine acoustic stage** ``p(fine | coarse)``: the next levels, flattened the same way, given the
   coarse codes (optional: ``AudioLMConfig.fine_levels``). The default recipe stops after the
   coarse stage, to fit a CPU's budget: the codec's first 2 levels already keep the words legible to
   the ASR (``slm-course bench codec``) and tell the speakers apart; the finer levels bring the
   decoded voice closer to the speaker's (notebook 03 measures both).

The codec decodes the levels back into a waveform. The **acoustic prompt** is the point: the
acoustic stages continue the codec tokens of the prompt's first second, so the generated voice is
the prompt's voice; given the semantic tokens alone they must guess a voice, and a held-out
speaker's is one they have never heard. :func:`~slm_course.audiolm_recipe.speaker_continuation` measures it with a voice
classifier on the generated audio (AudioLM's Table III: 92.6% for continuations of a 3 s prompt, 3.2% for
sound generated from the real semantic tokens without an acoustic prompt).

Two things differ from the paper, both because of the CPU budget:

- AudioLM puts the semantic tokens *before* the acoustic ones and lets attention find which
  semantic token goes with which acoustic frame, which takes a lot of data. Here each acoustic
  token gets the semantic unit at its own time (and ``lookahead`` frames after it) as an added
  embedding (``LMConfig.extra_embeddings``): a local stand-in for AudioLM's conditioning, where each
  acoustic token attends to the whole semantic sequence, with the 50 Hz -> 62.5 Hz alignment given
  (:func:`align_frames`) instead of learned;
- the course's tiny HuBERT units are far from speaker-invariant (a bag of units names the held-out
  speaker nearly every time, :func:`slm_course.normalizer.speaker_probe`), where AudioLM's w2v-BERT
  tokens say little of the voice. With them as semantic tokens (``AudioLMConfig(semantic_units="ssl")``)
  the acoustic stage reads the voice from the semantic tokens, and the acoustic prompt hardly matters.
  The semantic tokens are therefore notebook 05's speaker-normalised units, which say much less of
  the voice: the voice of the continuation then comes from the acoustic prompt, the AudioLM pattern.
  The speaker test asks "which held-out speaker?" (:func:`~slm_course.audiolm_recipe.speaker_continuation`); ``slm-course bench
  audiolm`` and ``slm-course bench audiolm-ssl`` report it for both kinds of semantic tokens.

This file is the model; how the course trains, caches and evaluates it is :mod:`slm_course.audiolm_recipe`
(its :func:`~slm_course.audiolm_recipe.load_audiolm` gives the trained model)::

    alm = load_audiolm()                                      # cached, or trained
    sem = alm.semantic_frames(wav)                            # (T_sem,) normalised units at 50 Hz
    codes = alm.generate_acoustic([sem], prompts=[codes_1s])  # [(Q', T_ac)], prompt frames kept
    wav_out = alm.decode(codes[0])
    wav_more = alm.continue_speech(wav[:16000], seconds=2.0)  # the whole pipeline
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slm_course import audio
from slm_course.lm import IGNORE, LM, LMConfig
from slm_course.runtime import artifact_record, digest
from slm_course.speech_tokens import check_ids, deduplicate, expand
from slm_course.ulm import BOS, N_SPECIAL, PAD, UlmConfig, UnitLM

if TYPE_CHECKING:
    from slm_course.codec import Codec
    from slm_course.speech_tokens import SpeechTokenizer

__all__ = [
    "ACOUSTIC_RATE",
    "MAX_DURATION",
    "SEMANTIC_RATE",
    "AcousticStage",
    "AudioLM",
    "AudioLMConfig",
    "StageConfig",
    "align_frames",
    "collate",
    "duration_counts",
    "flatten_levels",
    "frame_tokens",
    "make_stage",
    "n_acoustic_frames",
    "unflatten_levels",
]

SEMANTIC_RATE = 50.0  # SSL units per second (notebook 02)
ACOUSTIC_RATE = 62.5  # codec frames per second (notebook 03)


# ---------------------------------------------------------------------------------------------
# Flattening levels, aligning frame rates
# ---------------------------------------------------------------------------------------------


def flatten_levels(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(Q, T)`` codes -> ``(Q * T,)`` ids, frame by frame, level ``q`` offset by ``q * codebook_size``.

    >>> flatten_levels(torch.tensor([[1, 2], [3, 4]]), 10).tolist()
    [1, 13, 2, 14]
    """
    codes = check_ids(codes, codebook_size, 2, what="codes", shape="(n_levels, T)")
    offsets = torch.arange(codes.shape[0])[:, None] * codebook_size  # (Q, 1)
    return (codes + offsets).T.reshape(-1)  # (T, Q) row-major: frame 0's levels, then frame 1's, ...


def unflatten_levels(ids: torch.Tensor, n_levels: int, codebook_size: int) -> torch.Tensor:
    """Undo :func:`flatten_levels`: ``(Q * T,)`` -> ``(Q, T)``; every id must carry its position's level offset."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, int) or n_levels < 1:
        raise ValueError(f"n_levels must be a positive int, got {n_levels!r}")
    ids = check_ids(ids, n_levels * codebook_size, 1, what="ids", shape="(n_levels * T,)")
    if ids.numel() % n_levels:
        raise ValueError(f"{ids.numel()} ids are not a whole number of frames of {n_levels} levels: "
                         "cut the sequence at a frame boundary")
    frames = ids.view(-1, n_levels).T  # (Q, T)
    level = frames // codebook_size
    bad = level != torch.arange(n_levels)[:, None]
    if bad.any():
        q, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"frame {t}, level {q} holds id {int(frames[q, t])}, which belongs to level "
                         f"{int(level[q, t])}: the ids are not in frame-major order with per-level offsets")
    return frames % codebook_size


def n_acoustic_frames(n_semantic: int) -> int:
    """Codec frames (62.5 /s) that cover ``n_semantic`` SSL frames (50 /s): ``round(n * 1.25)``."""
    return round(n_semantic * ACOUSTIC_RATE / SEMANTIC_RATE)


def align_frames(semantic: torch.Tensor, n_frames: int) -> torch.Tensor:
    """The semantic unit at the time of each of ``n_frames`` acoustic frames: ``(n_frames,)``.

    Acoustic frame ``t`` starts at ``t / 62.5`` s, inside semantic frame ``floor(t * 50 / 62.5)``
    (clamped to the last one): five acoustic frames for every four semantic ones.

    >>> align_frames(torch.tensor([7, 8, 9, 10]), 5).tolist()
    [7, 7, 8, 9, 10]
    """
    semantic = torch.as_tensor(semantic)
    if semantic.ndim != 1 or semantic.numel() == 0:
        raise ValueError(f"semantic must be a non-empty (T_sem,) tensor of frame-level units, got {tuple(semantic.shape)}")
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    idx = (torch.arange(n_frames) * SEMANTIC_RATE / ACOUSTIC_RATE).floor().long().clamp(max=len(semantic) - 1)
    return semantic[idx]


# ---------------------------------------------------------------------------------------------
# An acoustic stage: an LM over flattened codec levels, conditioned frame by frame
# ---------------------------------------------------------------------------------------------


@artifact_record  # stored in the cached stages' records
@dataclass(frozen=True)
class StageConfig:
    """One acoustic stage (coarse or fine): its size and training budget."""

    d_model: int = 128  # width of the Transformer
    n_layers: int = 2  # Transformer blocks
    n_heads: int = 4  # attention heads
    lookahead: int = 2  # also condition on the next this-many frames' conditioning tokens (0 = own frame only)
    max_frames: int = 256  # longest window in frames (4.1 s); longer utterances are cropped to it in training
    batch_size: int = 16  # utterances per step (grouped by length, so little padding)
    steps: int = 800  # optimiser updates
    lr: float = 3e-3  # peak learning rate (AdamW, warm-up then cosine)
    warmup_steps: int = 50  # linear warm-up steps
    dropout: float = 0.0  # a few hundred thousand frames and a short run: no regularisation needed
    seed: int = 0  # seeds the weights and the batches

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "max_frames", "batch_size", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StageConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.lookahead, int) or self.lookahead < 0:
            raise ValueError(f"StageConfig.lookahead must be an int >= 0, got {self.lookahead!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"StageConfig.lr must be a positive finite number, got {self.lr!r}")


@dataclass
class AcousticStage:
    """An LM over codec levels ``levels = (lo, hi)``, flattened, conditioned on per-frame tokens.

    ``cond_sizes`` gives the vocabulary of each conditioning stream: ``(100,)`` for the coarse stage
    (the semantic unit of each frame), ``(256, 256)`` for a fine stage given two coarse levels. The
    LM's vocabulary is ``N_SPECIAL + Q * codebook_size`` (``<pad>``, ``<bos>``, ``<eos>`` first, as
    in the unit LM); its sequence is ``<bos>`` then the flattened codes.
    """

    model: LM
    levels: tuple[int, int]
    codebook_size: int
    cond_sizes: tuple[int, ...]
    config: StageConfig
    metrics: dict = field(default_factory=dict)

    @property
    def n_levels(self) -> int:
        return self.levels[1] - self.levels[0]

    # -- sequences ----------------------------------------------------------------------------
    def check_codes(self, codes: Any, what: str = "codes") -> torch.Tensor:
        """``(Q, T)`` codes of this stage's levels, validated."""
        codes = check_ids(codes, self.codebook_size, 2, what=what, shape=f"({self.n_levels}, T)")
        if codes.shape[0] != self.n_levels:
            raise ValueError(f"{what} must hold this stage's {self.n_levels} levels {self.levels[0]}..{self.levels[1] - 1}, "
                             f"got {codes.shape[0]}: slice them as ids[{self.levels[0]}:{self.levels[1]}]")
        return codes

    def check_cond(self, cond: Any, what: str = "cond") -> torch.Tensor:
        """``(C, T)`` conditioning tokens (one row per stream in ``cond_sizes``), validated."""
        cond = torch.as_tensor(cond)
        if cond.ndim == 1 and len(self.cond_sizes) == 1:
            cond = cond[None]
        if cond.is_floating_point() or cond.dtype == torch.bool:
            raise TypeError(f"{what} must be integer tokens, got {cond.dtype}")
        if cond.ndim != 2 or cond.shape[0] != len(self.cond_sizes) or cond.shape[1] == 0:
            raise ValueError(f"{what} must be ({len(self.cond_sizes)}, T) with T >= 1 (one row per conditioning stream: "
                             f"vocabularies {self.cond_sizes}), got {tuple(cond.shape)}")
        for row, size in zip(cond, self.cond_sizes):
            check_ids(row, size, what=f"{what} tokens")
        return cond.long()

    def tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """LM tokens ``(1 + Q * T,)``: ``<bos>``, then the flattened codes shifted by ``N_SPECIAL``."""
        flat = flatten_levels(self.check_codes(codes), self.codebook_size) + N_SPECIAL
        return torch.cat([torch.tensor([BOS]), flat])

    def cond_ids(self, cond: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
        """Extra-embedding ids of ``length`` LM positions: ``{"c{s}_{k}": (length,)}``.

        Position ``p`` predicts token ``p + 1``, which belongs to frame ``p // Q``; it is given the
        conditioning of that frame and of the ``lookahead`` frames after it (``id + 1``; 0 = none,
        past the end of the utterance).
        """
        frame = torch.arange(length) // self.n_levels
        out = {}
        for s, row in enumerate(cond):
            for k in range(self.config.lookahead + 1):
                f = frame + k
                ok = f < row.shape[0]
                out[f"c{s}_{k}"] = torch.where(ok, row[f.clamp(max=row.shape[0] - 1)] + 1, torch.zeros_like(f))
        return out

    # -- training contract --------------------------------------------------------------------
    def loss(self, codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor]) -> float:
        """Mean next-token loss (nats per acoustic token) of utterances (their first ``max_frames`` frames)."""
        if len(codes) == 0 or len(codes) != len(conds):
            raise ValueError(f"need one cond per codes tensor, at least one: got {len(codes)} and {len(conds)}")
        T = self.config.max_frames
        codes = [self.check_codes(c[:, :T]) for c in codes]
        conds = [self.check_cond(c, "conds")[:, :T] for c in conds]
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(codes), 32):
                batch = collate(self, codes[i : i + 32], conds[i : i + 32])
                n = int((batch["targets"] != IGNORE).sum())
                total += float(self.model(batch)["loss"]) * n
                count += n
        return total / count

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, conds: Sequence[torch.Tensor], prompts: Sequence[torch.Tensor | None] | None = None,
        n_frames: Sequence[int] | None = None, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
    ) -> list[torch.Tensor]:
        """Sample this stage's codes for a batch: ``[(Q, T_i)]``, the prompt's frames kept as given.

        ``conds[i]``: ``(C, T)`` conditioning of utterance ``i``; ``prompts[i]``: ``(Q, P_i)`` codes of its
        first ``P_i`` frames (the acoustic prompt) or ``None``; ``n_frames[i]``: frames to produce
        (default: the conditioning's length). The token of each step is drawn among the codes of its
        level only. All rows run in lock step through the LM core's one decoding loop
        (:meth:`slm_course.lm.LM.generate`): a row still inside its prompt takes the prompt's token
        instead of a sample (``forced``), and each step draws among its level's codes (``choices``).
        """
        if len(conds) == 0:
            raise ValueError("conds is empty: give the conditioning tokens of at least one utterance")
        conds = [self.check_cond(c, f"conds[{i}]") for i, c in enumerate(conds)]
        prompts = [None] * len(conds) if prompts is None else list(prompts)
        n_frames = [c.shape[1] for c in conds] if n_frames is None else [int(n) for n in n_frames]
        if len(prompts) != len(conds) or len(n_frames) != len(conds):
            raise ValueError(f"need one prompt and one n_frames per cond: got {len(prompts)}, {len(n_frames)}, {len(conds)}")
        Q, N = self.n_levels, self.codebook_size
        seqs = []
        for i, (p, n) in enumerate(zip(prompts, n_frames)):
            if p is None:
                seqs.append(torch.tensor([BOS]))
                continue
            p = self.check_codes(p, f"prompts[{i}]")
            if p.shape[1] == 0:
                raise ValueError(f"prompts[{i}] is empty: give at least one frame of codes, or None for no acoustic prompt")
            if p.shape[1] > n:
                raise ValueError(f"prompts[{i}] has {p.shape[1]} frames, more than the {n} to generate")
            seqs.append(self.tokens(p))
        if min(n_frames) < 1 or 1 + max(n_frames) * Q > self.model.cfg.max_len:
            raise ValueError(f"n_frames must be in 1..{(self.model.cfg.max_len - 1) // Q} (this stage's window), "
                             f"got {min(n_frames)}..{max(n_frames)}: generate shorter utterances")
        B, L = len(conds), 1 + max(n_frames) * Q
        tokens = torch.full((B, L), PAD)
        known = torch.zeros(B, L, dtype=torch.bool)
        extra = {k: torch.zeros(B, L, dtype=torch.long) for k in self.cond_ids(conds[0], 1)}
        for i, (s, c) in enumerate(zip(seqs, conds)):
            tokens[i, : len(s)], known[i, : len(s)] = s, True
            for k, v in self.cond_ids(c, L).items():
                extra[k][i] = v

        def level_codes(pos: int) -> tuple[int, int]:  # the ids of this position's level: its codes only
            lo = N_SPECIAL + ((pos - 1) % Q) * N
            return lo, lo + N

        start = min(len(s) for s in seqs)
        gen = torch.Generator().manual_seed(seed)
        tokens = self.model.generate(tokens[:, :start], L - start, temperature, top_k, gen, extra=extra,
                                     forced=(tokens, known), choices=level_codes)  # (B, L)
        return [unflatten_levels(tokens[i, 1 : 1 + n * Q] - N_SPECIAL, Q, N) for i, n in enumerate(n_frames)]


def make_stage(levels: tuple[int, int], codebook_size: int, cond_sizes: tuple[int, ...],
               config: StageConfig = StageConfig()) -> AcousticStage:
    """An untrained acoustic stage for codec ``levels`` (``(lo, hi)``), conditioned on streams of ``cond_sizes``."""
    lo, hi = levels
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi):
        raise ValueError(f"levels must be (lo, hi) with 0 <= lo < hi, got {levels!r}")
    if not cond_sizes or min(cond_sizes) < 1:
        raise ValueError(f"cond_sizes must name at least one conditioning stream of size >= 1, got {cond_sizes!r}")
    torch.manual_seed(config.seed)
    extra = tuple((f"c{s}_{k}", size + 1) for s, size in enumerate(cond_sizes) for k in range(config.lookahead + 1))
    model = LM(LMConfig(vocab_size=N_SPECIAL + (hi - lo) * codebook_size, d_model=config.d_model,
                        n_layers=config.n_layers, n_heads=config.n_heads, max_len=1 + config.max_frames * (hi - lo),
                        dropout=config.dropout, extra_embeddings=extra))
    return AcousticStage(model, (lo, hi), codebook_size, tuple(cond_sizes), config)


def collate(stage: AcousticStage, codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor]) -> dict:
    """Padded batch of whole utterances: ``tokens``/``targets`` ``(B, L)`` and ``extra`` ids."""
    seqs = [stage.tokens(c) for c in codes]
    L = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), L), PAD)
    targets = torch.full((len(seqs), L), IGNORE)
    extra: dict[str, torch.Tensor] = {}
    for i, (s, c) in enumerate(zip(seqs, conds)):
        tokens[i, : len(s)] = s
        targets[i, : len(s) - 1] = s[1:]
        for k, v in stage.cond_ids(c, L).items():
            extra.setdefault(k, torch.zeros(len(seqs), L, dtype=torch.long))[i] = v
    return {"tokens": tokens, "targets": targets, "extra": extra}


# ---------------------------------------------------------------------------------------------
# Semantic frames and their durations
# ---------------------------------------------------------------------------------------------


def frame_tokens(tokenizer: SpeechTokenizer, wav: torch.Tensor | np.ndarray, sr: int = audio.SR) -> torch.Tensor:
    """One unit per 20 ms frame, ``(T_sem,)``: the tokenizer's de-duplicated units, each repeated for its duration."""
    tokens = tokenizer.encode(wav, sr)
    if tokens.durations is None or tokens.ids.ndim != 1:
        raise ValueError(f"{tokenizer!r} does not give de-duplicated units with durations: use SSL or normalised units")
    return expand(tokens.ids, tokens.durations)


MAX_DURATION = 25  # frames (0.5 s): longer runs of one unit are counted as this long


def duration_counts(semantic: Sequence[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """How often each unit's runs last 1, 2, ... frames: ``(vocab_size, MAX_DURATION)`` counts.

    Row ``u``, column ``d - 1`` counts runs of ``d`` frames of unit ``u`` in frame-level sequences
    (the durations that :func:`slm_course.speech_tokens.deduplicate` returns). The semantic stage
    draws each new unit's duration from its row: a duration model with no context.
    """
    counts = torch.zeros(vocab_size, MAX_DURATION)
    for s in semantic:
        units, durs = deduplicate(s)
        counts.index_put_((units, durs.clamp(max=MAX_DURATION) - 1), torch.ones(len(units)), accumulate=True)
    return counts


# ---------------------------------------------------------------------------------------------
# The whole model: semantic -> coarse -> fine -> codec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioLMConfig:
    """The notebook-06 recipe: which codec levels each stage models, and each stage's budget."""

    coarse_levels: int = 2  # Q': codec levels of the coarse stage (AudioLM: 4 of 12)
    fine_levels: int = 0  # codec levels of the fine stage after the coarse ones (0 = coarse only, for the CPU budget: see the module docstring)
    voice_copies: int = 0  # extra training copies with perturbed voices (off in the recipe)
    semantic_units: str = "norm"  # the semantic tokens: notebook 05's speaker-normalised units ("norm") or SSL units ("ssl")
    semantic: UlmConfig | None = None  # notebook 05's unit LM over those units (None: its recipe, the same cached model)
    coarse: StageConfig = StageConfig()  # p(coarse | semantic)
    fine: StageConfig = StageConfig(n_layers=2, steps=500, lookahead=1)  # p(fine | coarse)

    def __post_init__(self) -> None:
        if isinstance(self.coarse_levels, bool) or not isinstance(self.coarse_levels, int) or self.coarse_levels < 1:
            raise ValueError(f"coarse_levels must be an int >= 1, got {self.coarse_levels!r}")
        if isinstance(self.fine_levels, bool) or not isinstance(self.fine_levels, int) or self.fine_levels < 0:
            raise ValueError(f"fine_levels must be an int >= 0 (0 = coarse only), got {self.fine_levels!r}")
        if isinstance(self.voice_copies, bool) or not isinstance(self.voice_copies, int) or self.voice_copies < 0:
            raise ValueError(f"voice_copies must be an int >= 0 (0 = the corpus' voices only), got {self.voice_copies!r}")
        if self.semantic_units not in ("norm", "ssl"):
            raise ValueError(f"semantic_units must be 'norm' (speaker-normalised units) or 'ssl', got {self.semantic_units!r}")

    @property
    def n_levels(self) -> int:
        return self.coarse_levels + self.fine_levels

    def key(self) -> str:
        """A short hash of the fields the acoustic stages depend on.

        Not ``semantic`` (the unit LM is cached by ulm) nor ``semantic_units`` (the cache names hold the tokenizer's key).
        """
        return digest({k: v for k, v in asdict(self).items() if k not in ("semantic", "semantic_units")})


class AudioLM:
    """The three stages and the two tokenizers behind one object (see the module docstring)."""

    def __init__(self, tokenizer: SpeechTokenizer, codec: Codec, semantic: UnitLM, coarse: AcousticStage,
                 fine: AcousticStage | None, durations: torch.Tensor, config: AudioLMConfig) -> None:
        if config.n_levels > codec.n_levels:
            raise ValueError(f"the recipe models {config.n_levels} codec levels; the codec has {codec.n_levels}")
        if tokenizer.frame_rate != SEMANTIC_RATE:
            raise ValueError(f"the semantic tokenizer gives {tokenizer.frame_rate:g} frames/s; "
                             f"the stages are aligned for {SEMANTIC_RATE:g}")
        self.tokenizer, self.codec, self.semantic = tokenizer, codec, semantic  # tokenizer: the semantic tokens'
        self.coarse, self.fine = coarse, fine
        self.durations, self.config = durations, config  # durations: (K, MAX_DURATION) counts, duration_counts
        self.data: dict | None = None  # the cached tokens of the corpus (audiolm_recipe.build_data), set by load_audiolm

    @property
    def n_levels(self) -> int:
        """Codec levels the model generates (coarse + fine)."""
        return self.coarse.n_levels + (self.fine.n_levels if self.fine is not None else 0)

    # -- tokenizers ---------------------------------------------------------------------------
    def semantic_frames(self, wav: torch.Tensor | np.ndarray, sr: int = audio.SR) -> torch.Tensor:
        """Frame-level semantic units of a 16 kHz waveform, not de-duplicated: ``(T_sem,)`` at 50 Hz."""
        return frame_tokens(self.tokenizer, wav, sr)

    def acoustic_codes(self, wav: torch.Tensor | np.ndarray, sr: int = audio.SR) -> torch.Tensor:
        """Codec codes of the levels this model generates: ``(n_levels, T_ac)`` at 62.5 frames/s."""
        return self.codec.encode(wav, sr).ids[: self.n_levels]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """A waveform from ``(k, T_ac)`` codec codes, ``k <= n_levels``."""
        return self.codec.decode(check_ids(codes, self.codec.vocab_size, 2, what="codes", shape="(n_levels, T_ac)"))

    # -- stage 1 ------------------------------------------------------------------------------
    def continue_semantic(self, prompt: torch.Tensor, n_frames: int, temperature: float = 1.0,
                          top_k: int | None = None, seed: int = 0) -> torch.Tensor:
        """Frame-level semantic units ``(n_frames,)``: the prompt's ``(P,)`` frames, then the unit LM's continuation.

        The unit LM reads and writes de-duplicated units; each new unit lasts a duration drawn from
        that unit's durations in the training data (:func:`duration_counts`). ``<eos>`` is never
        sampled: the continuation runs to ``n_frames``, as AudioLM's semantic stage generates a fixed
        length (the toy unit LM, trained on short utterances, would otherwise end most prompts within
        a few units and leave silence). When the LM's context is full, it continues from its latest half.
        """
        prompt = check_ids(prompt, self.tokenizer.vocab_size, 1, what="prompt", shape="(T_sem,)")
        if prompt.numel() == 0:
            raise ValueError("the prompt is empty: give the semantic frames of at least the first few words")
        if n_frames < len(prompt):
            raise ValueError(f"n_frames ({n_frames}) must be at least the prompt's {len(prompt)} frames")
        if isinstance(n_frames, bool) or not isinstance(n_frames, int):
            raise TypeError(f"n_frames must be an int (frames at 50 Hz), got {type(n_frames).__name__}")
        units, _ = deduplicate(prompt)
        gen = torch.Generator().manual_seed(seed)
        frames = [prompt]
        have, attempt = len(prompt), 0
        while have < n_frames and attempt < 8:
            new = self.semantic.continue_units(units, max_new_units=n_frames - have, temperature=temperature,
                                               top_k=top_k, seed=seed * 97 + attempt, stop_at_eos=False)
            attempt += 1
            if new.numel() == 0:
                continue
            rows = self.durations[new] + torch.nn.functional.one_hot(torch.zeros_like(new), MAX_DURATION) * 1e-3
            part = expand(new, torch.multinomial(rows, 1, generator=gen)[:, 0] + 1)  # a unit never seen lasts 1 frame
            frames.append(part)
            units = torch.cat([units, new])[-(self.semantic.model.cfg.max_len // 2):]
            have += len(part)
        out = torch.cat(frames)
        if len(out) < n_frames:  # 8 rounds did not fill it (units that never occurred last 1 frame): pad
            out = torch.cat([out, out[-1:].repeat(n_frames - len(out))])
        return out[:n_frames]

    # -- stages 2 and 3 -----------------------------------------------------------------------
    def generate_acoustic(
        self, semantic: Sequence[torch.Tensor], prompts: Sequence[torch.Tensor | None] | None = None,
        temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
    ) -> list[torch.Tensor]:
        """Codec codes ``[(n_levels, T_ac)]`` for frame-level semantic units ``[(T_sem,)]``.

        ``prompts[i]``: the codec codes ``(>= n_levels, P)`` of the utterance's first ``P`` frames
        (the acoustic prompt), or ``None`` to generate from the semantic tokens alone.
        """
        if len(semantic) == 0:
            raise ValueError("semantic is empty: give the frame-level semantic units of at least one utterance")
        prompts = [None] * len(semantic) if prompts is None else list(prompts)
        if len(prompts) != len(semantic):
            raise ValueError(f"one prompt (or None) per utterance: got {len(prompts)} prompts for {len(semantic)}")
        sems = [check_ids(s, self.tokenizer.vocab_size, 1, what=f"semantic[{i}]", shape="(T_sem,)") for i, s in enumerate(semantic)]
        n_frames = []
        for i, s in enumerate(sems):
            if s.numel() == 0:
                raise ValueError(f"semantic[{i}] is empty: give at least one frame of semantic units")
            n_frames.append(n_acoustic_frames(len(s)))
        ps = []
        for i, p in enumerate(prompts):
            if p is None:
                ps.append(None)
                continue
            p = check_ids(p, self.codec.vocab_size, 2, what=f"prompts[{i}]", shape="(n_levels, P)")
            if p.shape[0] < self.n_levels:
                raise ValueError(f"prompts[{i}] has {p.shape[0]} levels; the model needs the first {self.n_levels}")
            if p.shape[1] == 0:
                raise ValueError(f"prompts[{i}] is empty: give at least one frame of codes, or None for no acoustic prompt")
            ps.append(p[: self.n_levels])
        conds = [align_frames(s, n)[None] for s, n in zip(sems, n_frames)]
        Qc = self.coarse.n_levels
        coarse = self.coarse.generate(conds, [None if p is None else p[:Qc] for p in ps], n_frames,
                                      temperature, top_k, seed)
        if self.fine is None:
            return coarse
        fine = self.fine.generate(coarse, [None if p is None else p[Qc:] for p in ps], n_frames,
                                  temperature, top_k, seed + 1)
        return [torch.cat([c, f]) for c, f in zip(coarse, fine)]

    def continue_speech(self, prompt_wav: torch.Tensor | np.ndarray, seconds: float = 2.0, sr: int = audio.SR,
                        acoustic_prompt: bool = True, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
        """The whole pipeline: a waveform that continues ``prompt_wav`` (prompt included) for ``seconds`` more."""
        x = audio.check_wav(prompt_wav, sr, expected_sr=audio.SR)
        if x.numel() < audio.SR // 10:
            raise ValueError(f"the prompt is {x.numel() / audio.SR:.3f} s long: give at least 0.1 s of speech")
        if not 0 < seconds <= 4:
            raise ValueError(f"seconds must be in (0, 4] (the acoustic stages' window), got {seconds}")
        sem = self.semantic_frames(x)
        total = len(sem) + round(seconds * SEMANTIC_RATE)
        if n_acoustic_frames(total) > self.coarse.config.max_frames:
            raise ValueError(f"prompt + continuation is {total / SEMANTIC_RATE:.1f} s; the acoustic stages read at "
                             f"most {self.coarse.config.max_frames / ACOUSTIC_RATE:.1f} s: shorten one of them")
        sem = self.continue_semantic(sem, total, temperature, seed=seed)
        codes = self.codec.encode(x).ids[: self.n_levels]
        codes = codes[:, : min(codes.shape[1], n_acoustic_frames(len(sem)) - 1)]
        out = self.generate_acoustic([sem], [codes if acoustic_prompt else None], temperature, seed=seed)[0]
        return self.decode(out)
