"""AudioLM (notebook 05): semantic tokens first, then acoustic tokens conditioned on them.

A unit LM (notebook 04) continues *what* is said, over units that should ignore *who* says it. A
codec (notebook 03) keeps the voice, but an LM over its tokens alone spends its capacity on acoustic
detail and babbles. AudioLM (Borsos et al., 2023) chains the two, each stage a decoder-only
Transformer (here each is the course's one core, :class:`slm_course.lm.LM`):

1. **semantic stage** ``p(semantic)``: notebook 04's unit LM over de-duplicated speaker-normalised
   units (50 Hz; :mod:`slm_course.normalizer`); it continues the prompt's content. Each generated
   unit gets a duration drawn from that unit's durations in the training data (:func:`duration_counts`);
2. **coarse acoustic stage** ``p(coarse | semantic)``: the first ``Q'`` RVQ levels of the codec
   (62.5 frames/s), flattened frame by frame with per-level offsets ``o_q = q * N`` (AudioLM's
   ``o_i = ((i - 1) mod Q') * N``), so that one vocabulary of ``Q' * N`` ids says code and level::

       codes (Q'=2, T) = [[a0, a1, ...],        tokens = [a0, N + b0, a1, N + b1, ...]
                          [b0, b1, ...]]

3. **fine acoustic stage** ``p(fine | coarse)``: the next levels, flattened the same way, given the
   coarse codes (optional: ``AudioLMConfig.fine_levels``; on this codec the fine levels are close to
   unpredictable and add nothing the speaker classifier or the ASR can hear, so the default
   recipe stops after the coarse stage: the codec's first 2 levels already keep the words legible
   to the ASR, ``slm-course bench codec``).

The codec decodes the levels back into a waveform. The **acoustic prompt** is the point: the
acoustic stages continue the codec tokens of the prompt's first second, so the generated voice is
the prompt's voice; given the semantic tokens alone they must guess a voice, and a held-out
speaker's is one they have never heard. :func:`speaker_continuation` measures it with a voice
classifier on the generated audio (AudioLM: 92.6% with an acoustic prompt, 3.2% without).

Two things differ from the paper, both because of the CPU budget:

- AudioLM puts the semantic tokens *before* the acoustic ones and lets attention find which
  semantic token goes with which acoustic frame, which takes a lot of data. Here each acoustic
  token gets the semantic unit at its own time (and ``lookahead`` frames after it) as an added
  embedding (``LMConfig.extra_embeddings``): the same conditioning, with the 50 Hz -> 62.5 Hz
  alignment given (:func:`align_frames`) instead of learned;
- the course's tiny HuBERT units are far from speaker-invariant (a bag of units names the held-out
  speaker nearly every time, :func:`slm_course.normalizer.speaker_probe`), where AudioLM's w2v-BERT
  tokens say little of the voice. With them as semantic tokens (``AudioLMConfig(semantic_units="ssl")``)
  the acoustic stage reads the voice from the semantic tokens, and the acoustic prompt hardly matters.
  The semantic tokens are therefore notebook 04's speaker-normalised units, which say much less of
  the voice: the voice of the continuation then comes from the acoustic prompt, the AudioLM pattern.
  The speaker test asks "which held-out speaker?" (:func:`speaker_continuation`); ``slm-course bench
  audiolm`` and ``slm-course bench audiolm-ssl`` report it for both kinds of semantic tokens.

::

    alm = load_audiolm()                                      # cached, or trained (a few minutes)
    sem = alm.semantic_frames(wav)                            # (T_sem,) normalised units at 50 Hz
    codes = alm.generate_acoustic([sem], prompts=[codes_1s])  # [(Q', T_ac)], prompt frames kept
    wav_out = alm.decode(codes[0])
    wav_more = alm.continue_speech(wav[:16000], seconds=2.0)  # the whole pipeline
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slm_course import audio
from slm_course.corpus import corpus_version
from slm_course.lm import IGNORE, LM, LMConfig, sample_next
from slm_course.runtime import artifact_record, digest, recipe_config
from slm_course.speech_tokens import check_ids, deduplicate, expand, tokenizer_key
from slm_course.train import model_record, restore
from slm_course.ulm import BOS, N_SPECIAL, PAD, UlmConfig, UnitLM

if TYPE_CHECKING:
    from slm_course.codec import Codec
    from slm_course.corpus import Corpus, Utterance
    from slm_course.speech_tokens import SpeechTokenizer

__all__ = [
    "AcousticStage",
    "AudioLM",
    "AudioLMConfig",
    "StageConfig",
    "align_frames",
    "bench_audiolm",
    "bench_audiolm_ssl",
    "build_data",
    "duration_counts",
    "flatten_levels",
    "frame_tokens",
    "load_audiolm",
    "load_stages",
    "n_acoustic_frames",
    "perturb_voice",
    "perturbed_data",
    "prompt_frames",
    "speaker_continuation",
    "train_stage",
    "unflatten_levels",
    "voice_features",
]

RECIPE = 1  # bump when the recipe changes in a way the configs do not show: cached models are rebuilt
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
                batch = _collate(self, codes[i : i + 32], conds[i : i + 32])
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
        level only. All rows run in lock step with one key/value cache; a row still inside its
        prompt takes the prompt's token instead of a sample.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
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
        gen = torch.Generator().manual_seed(seed)
        self.model.eval()
        caches: list[dict] = [{} for _ in self.model.blocks]
        start = min(len(s) for s in seqs)
        h = self.model.hidden(tokens[:, :start], {k: v[:, :start] for k, v in extra.items()}, caches)
        logits = self.model.heads[0](h[:, -1])  # (B, V)
        for pos in range(start, L):
            lo = N_SPECIAL + ((pos - 1) % Q) * N  # the level of this position's token
            nxt = sample_next(logits[:, lo : lo + N], temperature, top_k, gen)  # among this level's codes only
            tokens[:, pos] = torch.where(known[:, pos], tokens[:, pos], nxt + lo)
            if pos + 1 < L:
                h = self.model.hidden(tokens[:, pos : pos + 1], {k: v[:, pos : pos + 1] for k, v in extra.items()},
                                      caches, start=pos)
                logits = self.model.heads[0](h[:, -1])
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


def _collate(stage: AcousticStage, codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor]) -> dict:
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


class _StageBatches:
    """``batches(step)``: utterances of similar length (a random window of the length-sorted list), cropped to the window."""

    def __init__(self, stage: AcousticStage, codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor]) -> None:
        self.stage, self.codes, self.conds = stage, codes, conds
        self.order = sorted(range(len(codes)), key=lambda i: codes[i].shape[1])

    def __call__(self, step: int) -> dict:
        c = self.stage.config
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + step)
        first = int(torch.randint(0, max(len(self.order) - c.batch_size, 0) + 1, (), generator=g))
        codes, conds = [], []
        for i in self.order[first : first + c.batch_size]:
            T = self.codes[i].shape[1]
            s = int(torch.randint(0, T - c.max_frames + 1, (), generator=g)) if T > c.max_frames else 0
            codes.append(self.codes[i][:, s : s + c.max_frames])
            conds.append(self.conds[i][:, s : s + c.max_frames])
        return _collate(self.stage, codes, conds)


def train_stage(
    codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor], levels: tuple[int, int], codebook_size: int,
    cond_sizes: tuple[int, ...], config: StageConfig = StageConfig(), valid: tuple[Sequence, Sequence] | None = None,
    progress: bool = True, desc: str = "acoustic stage",
) -> tuple[AcousticStage, Any]:
    """Train an acoustic stage (one loop: :func:`slm_course.train.train`) on ``codes[i]`` ``(n_levels, T_i)``.

    ``codes[i]`` holds at least ``levels[1]`` levels; ``conds[i]`` is ``(C, T_i)``, aligned frame by
    frame. ``valid``: ``(codes, conds)`` of held-out utterances for ``metrics["val_loss"]``.
    """
    from slm_course.train import TrainConfig, train

    if len(codes) == 0 or len(codes) != len(conds):
        raise ValueError(f"need one cond per codes tensor, at least one: got {len(codes)} and {len(conds)}")
    stage = make_stage(levels, codebook_size, cond_sizes, config)
    lo, hi = levels
    for i, (c, k) in enumerate(zip(codes, conds)):
        if c.ndim != 2 or c.shape[0] < hi or k.ndim != 2 or k.shape[1] != c.shape[1]:
            raise ValueError(f"codes[{i}] {tuple(c.shape)} must be (>= {hi}, T) and conds[{i}] {tuple(k.shape)} (C, T)")
    codes = [stage.check_codes(c[lo:hi], f"codes[{i}]") for i, c in enumerate(codes)]
    conds = [stage.check_cond(k, f"conds[{i}]") for i, k in enumerate(conds)]
    t0 = time.perf_counter()
    history = train(stage.model, _StageBatches(stage, codes, conds),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc=desc))
    stage.model.eval()
    stage.metrics = {"train_seconds": round(time.perf_counter() - t0, 1), "params": stage.model.num_params(),
                     "train_loss": float(np.mean(history.loss[-50:]))}
    if valid is not None:
        stage.metrics["val_loss"] = stage.loss([c[lo:hi] for c in valid[0]], valid[1])
    return stage, history


# ---------------------------------------------------------------------------------------------
# The whole model: semantic -> coarse -> fine -> codec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioLMConfig:
    """The notebook-05 recipe: which codec levels each stage models, and each stage's budget."""

    coarse_levels: int = 2  # Q': codec levels of the coarse stage (AudioLM: 4 of 12)
    fine_levels: int = 0  # codec levels of the fine stage after the coarse ones (0 = coarse only: see bench_audiolm)
    voice_copies: int = 0  # extra training copies with perturbed voices (off: they do not raise speaker accuracy)
    semantic_units: str = "norm"  # the semantic tokens: notebook 04's speaker-normalised units ("norm") or SSL units ("ssl")
    semantic: UlmConfig | None = None  # notebook 04's unit LM over those units (None: its recipe, the same cached model)
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
        self.data: dict | None = None  # the cached tokens of the corpus (build_data), set by load_audiolm

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


# ---------------------------------------------------------------------------------------------
# Data, training and the cache
# ---------------------------------------------------------------------------------------------


def frame_tokens(tokenizer: SpeechTokenizer, wav: torch.Tensor | np.ndarray, sr: int = audio.SR) -> torch.Tensor:
    """One unit per 20 ms frame, ``(T_sem,)``: the tokenizer's de-duplicated units, each repeated for its duration."""
    tokens = tokenizer.encode(wav, sr)
    if tokens.durations is None or tokens.ids.ndim != 1:
        raise ValueError(f"{tokenizer!r} does not give de-duplicated units with durations: use SSL or normalised units")
    return expand(tokens.ids, tokens.durations)


def _tokenizer_keys(tokenizer: SpeechTokenizer, codec: Codec) -> str:
    return f"{tokenizer_key(tokenizer)}-{codec.config.key()}"


def build_data(corpus: Corpus, tokenizer: SpeechTokenizer, codec: Codec, splits: Sequence[str] = ("train", "valid", "test"),
               progress: bool = False) -> dict[str, dict]:
    """Frame-level semantic units and codec codes of every utterance of ``splits`` (cached).

    ``data[split] = {"ids": [...], "semantic": [(T_sem,) int16], "codes": [(8, T_ac) uint8 -> long]}``.
    """
    from tqdm.auto import tqdm

    from slm_course.runtime import cached

    def build() -> dict:
        out = {}
        for split in splits:
            utts = corpus.split(split)
            sem, codes = [], []
            for u in tqdm(utts, desc=f"tokens {split}", disable=not progress, leave=False):
                wav = corpus.wav(u)
                sem.append(frame_tokens(tokenizer, wav).to(torch.int16))
                codes.append(codec.encode(wav).ids.to(torch.uint8 if codec.vocab_size <= 256 else torch.int16))
            out[split] = {"ids": [u.id for u in utts], "semantic": sem, "codes": codes}
        return out

    version = corpus_version(corpus)
    name = f"audiolm-data-r{RECIPE}-c{version}-{_tokenizer_keys(tokenizer, codec)}-{'-'.join(splits)}"
    data = cached(name, build)
    for split in data.values():
        split["semantic"] = [s.long() for s in split["semantic"]]
        split["codes"] = [c.long() for c in split["codes"]]
    return data


PERTURB_RATES = (12800, 13600, 14400, 17600, 18400, 19200)  # resample to this rate, play at 16 kHz: pitch x 1.25 .. 0.83


def perturb_voice(wav: torch.Tensor, rate: int, sr: int = audio.SR) -> torch.Tensor:
    """A new voice: resample ``wav`` to ``rate`` Hz and play it at ``sr``.

    Pitch and formants (the vocal tract's resonances) both scale by ``sr / rate``, the duration by
    ``rate / sr``: ``rate=12800`` makes a voice 1.25 times higher and 20% faster.
    """
    import torchaudio

    x = audio.check_wav(wav, sr, expected_sr=audio.SR)
    if isinstance(rate, bool) or not isinstance(rate, int) or not sr // 2 <= rate <= 2 * sr:
        raise ValueError(f"rate must be an int in {sr // 2}..{2 * sr} Hz, got {rate!r}")
    return torchaudio.functional.resample(x, sr, rate)


def perturbed_data(corpus: Corpus, tokenizer: SpeechTokenizer, codec: Codec, copies: int, seed: int = 0,
                   progress: bool = False) -> dict:
    """Tokens of ``copies`` voice-perturbed copies of the training split (cached).

    Each utterance of each copy is resampled at a random rate of :data:`PERTURB_RATES`
    (:func:`perturb_voice`). With 16 training speakers an acoustic stage can learn the 16 voices
    by heart instead of learning to *continue* the voice of its prompt; a continuum of voices
    leaves it only the second way. ``{"semantic": [...], "codes": [...], "rates": [...]}``.
    """
    from tqdm.auto import tqdm

    from slm_course.runtime import cached

    def build() -> dict:
        g = torch.Generator().manual_seed(seed)
        out: dict[str, list] = {"semantic": [], "codes": [], "rates": []}
        for copy in range(copies):
            for u in tqdm(corpus.split("train"), desc=f"voices {copy + 1}/{copies}", disable=not progress, leave=False):
                rate = PERTURB_RATES[int(torch.randint(len(PERTURB_RATES), (), generator=g))]
                wav = perturb_voice(corpus.wav(u), rate)
                out["semantic"].append(frame_tokens(tokenizer, wav).to(torch.int16))
                out["codes"].append(codec.encode(wav).ids.to(torch.uint8 if codec.vocab_size <= 256 else torch.int16))
                out["rates"].append(rate)
        return out

    version = corpus_version(corpus)
    data = cached(f"audiolm-voices-r{RECIPE}-c{version}-{_tokenizer_keys(tokenizer, codec)}-x{copies}-s{seed}", build)
    return {"semantic": [s.long() for s in data["semantic"]], "codes": [c.long() for c in data["codes"]],
            "rates": data["rates"]}


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


def _stage_inputs(split: dict, config: AudioLMConfig, stage: str) -> tuple[list, list]:
    codes, conds = [], []
    for s, c in zip(split["semantic"], split["codes"]):
        codes.append(c)
        if stage == "coarse":
            conds.append(align_frames(s, c.shape[1])[None])
        else:
            conds.append(c[: config.coarse_levels])
    return codes, conds


def load_stages(config: AudioLMConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False,
                progress: bool = True) -> dict:
    """AudioLM's acoustic stages (coarse, and fine if any), from the cache or trained now on the training split.

    Returns ``{"coarse": ..., "fine": ...}`` model records (:func:`slm_course.train.model_record`), the
    ``config``, and the ``data``
    (:func:`build_data`), ``tokenizer`` and ``codec`` they were trained on. They need the semantic
    *tokens*, not the semantic LM: ``slm-course prepare`` trains them beside it.
    """
    from slm_course.codec import load_codec
    from slm_course.runtime import cached
    from slm_course.ulm import load_tokenizer

    config = recipe_config(config, AudioLMConfig())
    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    tokenizer = load_tokenizer(config.semantic_units)
    codec = load_codec(progress=progress)
    data = build_data(corpus, tokenizer, codec, progress=progress)
    Qc, Qf, N = config.coarse_levels, config.fine_levels, codec.vocab_size

    def build() -> dict:
        train_data = data["train"]
        if config.voice_copies:
            voices = perturbed_data(corpus, tokenizer, codec, config.voice_copies, progress=progress)
            train_data = {k: train_data[k] + voices[k] for k in ("semantic", "codes")}
        out: dict[str, Any] = {}
        coarse, hist = train_stage(*_stage_inputs(train_data, config, "coarse"), (0, Qc), N, (tokenizer.vocab_size,),
                                   config.coarse, valid=_stage_inputs(data["valid"], config, "coarse"),
                                   progress=progress, desc="coarse")
        out["coarse"] = model_record(coarse.model, config.coarse, hist, coarse.metrics)
        if Qf:
            fine, hist = train_stage(*_stage_inputs(train_data, config, "fine"), (Qc, Qc + Qf), N, (N,) * Qc,
                                     config.fine, valid=_stage_inputs(data["valid"], config, "fine"),
                                     progress=progress, desc="fine")
            out["fine"] = model_record(fine.model, config.fine, hist, fine.metrics)
        return out

    name = f"audiolm-r{RECIPE}-c{corpus_version(corpus)}-{_tokenizer_keys(tokenizer, codec)}-{config.key()}"
    return {**cached(name, build, rebuild=rebuild), "data": data, "tokenizer": tokenizer, "codec": codec,
            "config": config}


def load_audiolm(config: AudioLMConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False,
                 progress: bool = True) -> AudioLM:
    """The notebook-05 AudioLM, from the cache or trained now with the same recipe and seed.

    The semantic stage is notebook 04's unit LM over ``config.semantic_units`` (:func:`slm_course.ulm.load_unit_lm`);
    the coarse and fine stages are trained on the training split (:func:`load_stages`).
    """
    from slm_course.corpus import load_corpus
    from slm_course.ulm import load_unit_lm

    if corpus is None:
        corpus = load_corpus(progress=False)  # once, for both stages
    saved = load_stages(config, corpus=corpus, rebuild=rebuild, progress=progress)  # checks config
    config = saved["config"]
    tokenizer, codec, data = saved["tokenizer"], saved["codec"], saved["data"]
    semantic = load_unit_lm(config.semantic_units, config.semantic, progress=progress, corpus=corpus)
    Qc, Qf, N = config.coarse_levels, config.fine_levels, codec.vocab_size
    coarse = make_stage((0, Qc), N, (tokenizer.vocab_size,), config.coarse)
    restore(coarse.model, saved["coarse"])
    coarse.metrics, coarse.history = coarse.model.metrics, coarse.model.history
    fine = None
    if Qf:
        fine = make_stage((Qc, Qc + Qf), N, (N,) * Qc, config.fine)
        restore(fine.model, saved["fine"])
        fine.metrics, fine.history = fine.model.metrics, fine.model.history
    durations = duration_counts(data["train"]["semantic"], tokenizer.vocab_size)
    alm = AudioLM(tokenizer, codec, semantic, coarse, fine, durations, config)
    alm.data = data
    return alm


# ---------------------------------------------------------------------------------------------
# Evaluation: does the continuation keep the prompt's speaker?
# ---------------------------------------------------------------------------------------------


def prompt_frames(utt: Utterance, seconds: float = 1.0) -> int:
    """Acoustic frames of a prompt of about ``seconds`` that ends at a word boundary of ``utt``.

    The cut is the start of the first word that begins at or after ``seconds`` (eSpeak's word
    events), rounded down to a frame, so that the continuation starts with a whole word and its text
    is known (rounding to the nearest frame could put up to 8 ms of that word in the prompt, and
    drop the word from the continuation's reference text).
    """
    if not utt.word_spans:
        raise ValueError(f"utterance {utt.id} has no word spans: it cannot be cut at a word boundary")
    starts = [s.start for s in utt.word_spans[1:] if s.start >= seconds]
    if not starts:
        raise ValueError(f"utterance {utt.id} ({utt.duration:.2f} s) has no word starting after {seconds} s: "
                         "choose a longer utterance or a shorter prompt")
    return max(1, math.floor(starts[0] * ACOUSTIC_RATE + 1e-6))


def _continuation_text(utt: Utterance, frames: int) -> str:
    t = frames / ACOUSTIC_RATE
    return " ".join(s.label for s in utt.word_spans if s.start >= t - 1e-3)


def _prompt_utterances(corpus: Corpus, n_per_speaker: int, max_seconds: float, min_seconds: float = 2.2,
                       prompt_seconds: float = 1.0) -> list:
    by_speaker: dict[str, list] = {}
    for u in corpus.split("test"):
        if not min_seconds <= u.duration <= max_seconds:
            continue
        try:
            cut = prompt_frames(u, prompt_seconds)
        except ValueError:
            continue
        if u.duration - cut / ACOUSTIC_RATE >= 0.8:  # at least 0.8 s to continue
            by_speaker.setdefault(u.speaker, []).append(u)
    return [u for spk in sorted(by_speaker) for u in by_speaker[spk][:n_per_speaker]]


VOICE_FEATURES = slice(0, 2 * 40 + 4)  # of probes.utterance_features: log-mel mean and std, pitch level and spread


def voice_features(wavs: Sequence[torch.Tensor]) -> np.ndarray:
    """What a voice classifier hears: :func:`slm_course.probes.utterance_features` without timing. ``(N, 84)``.

    The log-mel mean and spread (vocal tract, voice quality) and the pitch level and range; not the
    melody, the speaking rate or the duration, which the semantic tokens carry (they set the timing).
    """
    from slm_course.probes import N_MELS, features_of

    assert VOICE_FEATURES.stop == 2 * N_MELS + 4, "probes.utterance_features changed its layout"
    if len(wavs) == 0:
        raise ValueError("wavs is empty: give at least one waveform")
    return features_of(list(wavs))[:, VOICE_FEATURES]


def speaker_continuation(
    alm: AudioLM, corpus: Corpus, n_per_speaker: int = 10, prompt_seconds: float = 1.0, temperature: float = 0.8,
    seed: int = 0, asr: Any = None, semantic_stage: bool = True, n_classifier_per_speaker: int = 20,
) -> dict:
    """Speaker accuracy of continuations with and without an acoustic prompt, on the held-out speakers.

    Prompts are ``n_per_speaker`` utterances of each held-out (test) speaker, cut at the first word
    boundary after ``prompt_seconds``. A voice classifier (:func:`slm_course.probes.make_probe` on
    :func:`voice_features`) is trained on ``n_classifier_per_speaker`` *other* utterances of each
    held-out speaker, passed through the codec at the model's levels (so that it compares voices,
    not codec artefacts), and applied to the generated audio after the cut. It answers "which of
    the held-out speakers is this?" (chance 0.25 with the corpus' 4): a continuation that keeps its
    prompt's voice is recognised; one whose voice was guessed is right by chance.
    ``*_all_speakers`` asks among all 20 speakers (chance 0.05), as AudioLM's classifier does among
    291 LibriSpeech speakers (its 40 test speakers and 251 training ones). That is a harder test for
    a toy: the classifier itself often errs on the real codec tokens, and a small acoustic stage
    drifts from a voice it never heard towards the training voices it knows.

    - ``acoustic_prompt``: semantic tokens + the prompt's codec tokens -> continuation;
    - ``semantic_only``: the same semantic tokens, no acoustic prompt.

    With ``semantic_stage=True`` the semantic tokens after the cut come from the unit LM (the whole
    pipeline); the ``*_gt_semantic`` numbers use the utterance's real semantic tokens (AudioLM's
    acoustic-stage setting), and then the continuation's words are known: with ``asr``, its CER
    against them is reported (``continuation_cer``), beside that of the real codec tokens.
    """
    from slm_course.metrics import cer
    from slm_course.probes import make_probe

    max_seconds = alm.coarse.config.max_frames / ACOUSTIC_RATE
    prompts = _prompt_utterances(corpus, n_per_speaker, max_seconds, prompt_seconds=prompt_seconds)
    if not prompts:
        raise ValueError("no test utterance is long enough to cut a prompt and continue it")
    prompt_ids = {u.id for u in prompts}
    held_out = sorted({u.speaker for u in prompts})
    k = alm.n_levels
    index = {}
    for split in ("train", "test"):
        if alm.data is not None and split in alm.data:
            index.update({uid: (split, i) for i, uid in enumerate(alm.data[split]["ids"])})

    def tokens_of(u) -> tuple[torch.Tensor, torch.Tensor]:
        if u.id in index:
            split, i = index[u.id]
            return alm.data[split]["semantic"][i], alm.data[split]["codes"][i]
        wav = corpus.wav(u)
        return alm.semantic_frames(wav), alm.codec.encode(wav).ids

    # the voice classifier: other utterances of every speaker, through the codec
    per_speaker: dict[str, list] = {}
    for u in corpus.split("train") + corpus.split("test"):
        if u.id not in prompt_ids and u.duration >= 1.0:
            rows = per_speaker.setdefault(u.speaker, [])
            if len(rows) < n_classifier_per_speaker:
                rows.append(u)
    others = [u for spk in sorted(per_speaker) for u in per_speaker[spk]]
    X = voice_features([alm.decode(tokens_of(u)[1][:k]) for u in others])
    y = np.array([u.speaker for u in others])
    probe = make_probe().fit(X, y)
    held = np.isin(y, held_out)
    probe_held_out = make_probe().fit(X[held], y[held])

    cuts = [prompt_frames(u, prompt_seconds) for u in prompts]
    sem_true, codes_true = zip(*[tokens_of(u) for u in prompts])
    speakers = np.array([u.speaker for u in prompts])
    out: dict[str, Any] = {"prompts": len(prompts), "classifier_utterances": len(others),
                           "speakers": len(per_speaker), "chance": 1 / len(held_out),
                           "chance_all_speakers": 1 / len(per_speaker)}
    wavs_of: dict[str, list] = {}

    def score(name: str, codes: Sequence[torch.Tensor]) -> None:
        wavs = [alm.decode(c)[cut * alm.codec.config.hop :] for c, cut in zip(codes, cuts)]
        x = voice_features(wavs)
        out[f"speaker_acc_{name}"] = float((probe_held_out.predict(x) == speakers).mean())
        out[f"speaker_acc_{name}_all_speakers"] = float((probe.predict(x) == speakers).mean())
        wavs_of[name] = wavs

    score("real_codes", [c[:k] for c in codes_true])
    sem_cut = [round(cut * SEMANTIC_RATE / ACOUSTIC_RATE) for cut in cuts]
    acoustic_prompts = [c[:k, :cut] for c, cut in zip(codes_true, cuts)]
    settings = {"_gt_semantic": list(sem_true)}
    if semantic_stage:
        settings[""] = [alm.continue_semantic(s[:n], len(s), temperature, seed=seed + i)
                        for i, (s, n) in enumerate(zip(sem_true, sem_cut))]
    for suffix, sems in settings.items():
        score(f"acoustic_prompt{suffix}", alm.generate_acoustic(sems, acoustic_prompts, temperature, seed=seed))
        score(f"semantic_only{suffix}", alm.generate_acoustic(sems, None, temperature, seed=seed))
    if asr is not None:
        texts = [_continuation_text(u, cut) for u, cut in zip(prompts, cuts)]
        out["continuation_cer"] = cer(texts, asr.transcribe(wavs_of["acoustic_prompt_gt_semantic"]))
        out["continuation_cer_semantic_only"] = cer(texts, asr.transcribe(wavs_of["semantic_only_gt_semantic"]))
        out["continuation_cer_real_codes"] = cer(texts, asr.transcribe(wavs_of["real_codes"]))
        out["continuation_cer_original"] = cer(texts, asr.transcribe(
            [corpus.wav(u)[cut * alm.codec.config.hop :] for u, cut in zip(prompts, cuts)]))
    out["wavs"] = wavs_of
    out["utterances"] = [u.id for u in prompts]
    return out


def bench_audiolm(n_per_speaker: int = 15, semantic_units: str = "norm") -> dict:
    """AudioLM (notebook-05 recipe): does the continuation keep a held-out speaker's voice?

    ``speaker_acc_acoustic_prompt`` / ``speaker_acc_semantic_only``: the whole pipeline (semantic
    continuation by the unit LM, then the acoustic stages) with and without the prompt's codec
    tokens, scored by a voice classifier over the 4 held-out speakers (chance 0.25); ``*_gt_semantic``:
    the acoustic stages given the utterance's real semantic tokens; ``*_all_speakers``: a classifier
    over all 20 speakers (chance 0.05). ``continuation_cer``: the course ASR on the continuation
    generated from the real semantic tokens with the acoustic prompt, against the words after the
    cut (the unit LM's own continuation has no reference text); ``continuation_cer_real_codes`` and
    ``continuation_cer_original`` are the same words through the codec and as recorded.
    ``semantic_units="ssl"`` (:func:`bench_audiolm_ssl`): the same recipe with HuBERT units as semantic tokens.
    """
    from slm_course.asr import load_asr
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    t0 = time.perf_counter()
    alm = load_audiolm(AudioLMConfig(semantic_units=semantic_units), progress=False, corpus=corpus)
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = speaker_continuation(alm, corpus, n_per_speaker=n_per_speaker, asr=load_asr(progress=False))
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items() if k not in ("wavs", "utterances")}
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_or_train_seconds"] = round(load_seconds, 1)
    out["semantic_units"] = alm.config.semantic_units
    out["coarse_levels"], out["fine_levels"] = alm.config.coarse_levels, alm.config.fine_levels
    out["voice_copies"] = alm.config.voice_copies
    out["coarse_val_loss"] = round(alm.coarse.metrics["val_loss"], 4)
    out["coarse_steps"] = alm.coarse.config.steps
    out["coarse_train_seconds"] = alm.coarse.metrics["train_seconds"]
    if alm.fine is not None:
        out["fine_val_loss"] = round(alm.fine.metrics["val_loss"], 4)
        out["fine_train_seconds"] = alm.fine.metrics["train_seconds"]
    out["semantic_val_loss"] = round(alm.semantic.metrics["val_loss"], 4)
    out["semantic_train_seconds"] = alm.semantic.metrics.get("train_seconds")
    out["params"] = alm.coarse.metrics["params"] + (alm.fine.metrics["params"] if alm.fine is not None else 0)
    return out


def bench_audiolm_ssl() -> dict:
    """:func:`bench_audiolm` with notebook 02's HuBERT units as semantic tokens: they carry the voice (notebook 05, section 5)."""
    return bench_audiolm(semantic_units="ssl")
