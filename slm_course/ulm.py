"""Pure speech language models (notebook 04): GSLM's unit LM, zero-shot spoken evaluation, TWIST's warm start.

A unit LM is the course's one decoder-only LM core (:class:`slm_course.lm.LM`) over de-duplicated
speech units instead of characters: no text anywhere in training. Units are shifted by
:data:`N_SPECIAL` so that ids 0-2 stay ``<pad>``, ``<bos>`` and ``<eos>`` as in the text LM::

    tokenizer = units.load_mel_units()                       # any SpeechTokenizer with one stream
    seqs = encode_utterances(tokenizer, corpus, corpus.split("train"))
    ulm, history = train_unit_lm(seqs, tokenizer.vocab_size, UlmConfig())
    ulm.score([units_a, units_b])                           # summed log p and token counts

Zero-shot evaluation (:func:`pair_accuracy`) asks whether the model gives the good member of a pair
(a real word, a grammatical sentence, a fitting story ending) a higher log-likelihood than the bad
one, summed or divided by the number of tokens ("token-normalised"), as sWUGGY, sBLIMP and
StoryCloze do. :class:`NgramLM` gives the unigram/bigram baselines; :func:`warm_start` copies a
text LM's Transformer body into a unit LM (TWIST, Hassid et al. 2023).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from slm_course.corpus import corpus_version
from slm_course.lm import LM, LMConfig
from slm_course.runtime import digest, recipe_config
from slm_course.speech_tokens import check_ids, tokenizer_key
from slm_course.textlm import TextLMConfig
from slm_course.train import model_record, restore

__all__ = [
    "BOS",
    "EOS",
    "FSDD_ULM_CONFIG",
    "NORM_CONFIG",
    "N_SPECIAL",
    "PAD",
    "NgramLM",
    "TWIST_UNITS",
    "UNITS",
    "UlmConfig",
    "UnitLM",
    "ZERO_SHOT_SETS",
    "default_config",
    "encode_utterances",
    "extra_unit_data",
    "fsdd_unit_data",
    "load_fsdd_unit_lm",
    "load_tokenizer",
    "load_twist_comparison",
    "load_unit_lm",
    "mean_durations",
    "pair_accuracy",
    "reference_unit_data",
    "text_topline",
    "train_unit_lm",
    "unit_data",
    "warm_start",
    "zero_shot",
]

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3  # unit u is token u + 3


@dataclass(frozen=True)
class UlmConfig:
    """The unit LM's size and training budget (the notebook-04 recipe)."""

    d_model: int = 128  # the text LM's width, so that TWIST can copy its body
    n_layers: int = 2
    n_heads: int = 4
    context: int = 128  # tokens per training window (an utterance is ~40-120 units)
    batch_size: int = 32
    steps: int = 1200
    lr: float = 3e-3
    warmup_steps: int = 50
    dropout: float = 0.1  # units are few (about 140 k training tokens): some regularisation helps
    max_len: int = 512
    seed: int = 0
    extra_speech: int = 0  # > 0: add the training split of a second corpus draw of this size (seed 1): extra_unit_data

    def __post_init__(self) -> None:
        if isinstance(self.extra_speech, bool) or not isinstance(self.extra_speech, int) or self.extra_speech < 0:
            raise ValueError(f"extra_speech must be an int >= 0 (0 = the corpus' training split only), "
                             f"got {self.extra_speech!r}")
        if self.context < 2 or self.context > self.max_len:
            raise ValueError(f"context must be in 2..max_len ({self.max_len}), got {self.context}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")


def _check_units(seq: torch.Tensor | Sequence[int], vocab_size: int, what: str = "units") -> torch.Tensor:
    return check_ids(seq, vocab_size, 1, what=what, shape="(T,), one sequence of unit ids",
                     hint="pass raw unit ids, not LM tokens (the +3 offset is added here)")


def encode_utterances(tokenizer, corpus, utterances, progress: bool = False) -> list[torch.Tensor]:
    """De-duplicated unit ids ``(T,)`` of each utterance, with ``tokenizer.encode``."""
    from tqdm.auto import tqdm

    if getattr(tokenizer, "n_levels", 1) != 1:
        raise ValueError("a unit LM reads one stream of units; this tokenizer has several levels (a codec?)")
    out = []
    for u in tqdm(utterances, desc="units", disable=not progress, leave=False):
        out.append(tokenizer.encode(corpus.wav(u)).ids.long())
    return out


def mean_durations(tokenizer, wavs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean duration (frames) of each unit over ``wavs``: ``(vocab_size,)``, 1 for a unit never seen.

    A unit LM generates de-duplicated units without durations; giving each unit its mean duration is
    the simplest duration model (GSLM trains one), enough to hear a continuation.
    """
    total = torch.zeros(tokenizer.vocab_size)
    count = torch.zeros(tokenizer.vocab_size)
    for wav in wavs:
        t = tokenizer.encode(wav)
        if t.durations is None:
            raise ValueError("this tokenizer does not de-duplicate, so its units have no durations")
        total.index_add_(0, t.ids.long(), t.durations.float())
        count.index_add_(0, t.ids.long(), torch.ones(len(t.ids)))
    return torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total)).round().clamp_min(1).long()


def pack(seqs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``<bos> u+3 ... <eos> <bos> ...``: one long stream of LM tokens."""
    parts = []
    for s in seqs:
        parts += [torch.tensor([BOS]), s.long() + N_SPECIAL, torch.tensor([EOS])]
    return torch.cat(parts)


def _crops(stream: torch.Tensor, context: int, batch_size: int, seed: int) -> Callable[[int], dict]:
    """``step -> batch``: windows of ``context`` tokens that start at an utterance's ``<bos>``, reproducible per step.

    As fairseq's samples that "break at eos" (GSLM's unit LM): every window reads its first utterance
    from the start, so the model learns how an utterance begins and what its end owes to its beginning.
    """
    if len(stream) <= context:
        raise ValueError(f"the unit stream ({len(stream)} tokens) must be longer than the context ({context})")
    starts = torch.nonzero(stream[: len(stream) - context] == BOS).flatten()  # never empty: the stream starts so

    def batch(step: int) -> dict:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        picks = starts[torch.randint(0, len(starts), (batch_size,), generator=g)].tolist()
        return {"tokens": torch.stack([stream[s : s + context] for s in picks])}

    return batch


@dataclass
class UnitLM:
    """A trained unit LM: the model, the number of units it reads, its recipe and its metrics."""

    model: LM
    n_units: int
    config: UlmConfig
    metrics: dict

    def tokens(self, units: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """LM tokens of one unit sequence: ``<bos> u+3 ... <eos>``."""
        x = _check_units(units, self.n_units)
        return torch.cat([torch.tensor([BOS]), x + N_SPECIAL, torch.tensor([EOS])])

    @torch.no_grad()
    def score(self, seqs: Sequence[torch.Tensor], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed ``log p`` of each unit sequence (its units and ``<eos>``, given ``<bos>``) and the token counts."""
        if len(seqs) == 0:
            raise ValueError("score() needs at least one unit sequence")
        self.model.eval()
        toks = [self.tokens(s)[: self.model.cfg.max_len] for s in seqs]
        sums, counts = torch.zeros(len(toks)), torch.zeros(len(toks), dtype=torch.long)
        order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            T = max(len(toks[i]) for i in chunk)
            batch = torch.full((len(chunk), T), PAD)
            for row, i in enumerate(chunk):
                batch[row, : len(toks[i])] = toks[i]
            lengths = torch.tensor([len(toks[i]) for i in chunk])
            s, n = self.model.score(batch, lengths)
            sums[chunk], counts[chunk] = s, n
        return sums, counts

    @torch.no_grad()
    def loss(self, seqs: Sequence[torch.Tensor]) -> float:
        """Mean next-token loss (nats per token) over ``seqs``."""
        s, n = self.score(seqs)
        return float(-s.sum() / n.sum())

    @torch.no_grad()
    def continue_units(
        self, prompt: torch.Tensor | Sequence[int], max_new_units: int = 60, temperature: float = 1.0,
        top_k: int | None = None, seed: int = 0, stop_at_eos: bool = True,
    ) -> torch.Tensor:
        """Unit ids sampled after ``prompt`` (specials never come out as units).

        With ``stop_at_eos`` the LM may end the utterance (``<eos>``) before ``max_new_units``; without
        it, ``<eos>`` is never sampled and exactly ``max_new_units`` units come back (fewer only when
        the LM's context is full): a continuation of a fixed length, as AudioLM's semantic stage makes.
        """
        x = _check_units(prompt, self.n_units, "prompt")
        if x.numel() == 0:
            raise ValueError("the prompt is empty: give at least one unit (e.g. the first units of an utterance)")
        ids = torch.cat([torch.tensor([BOS]), x + N_SPECIAL])
        room = self.model.cfg.max_len - len(ids)
        if room < 1:
            raise ValueError(f"the prompt has {len(x)} units; this LM reads at most {self.model.cfg.max_len - 2}")
        out = self.model.generate(ids, min(max_new_units, room), temperature=temperature, top_k=top_k,
                                  generator=torch.Generator().manual_seed(seed), stop_token=EOS,
                                  banned=None if stop_at_eos else (PAD, BOS, EOS))
        new = out[len(ids) :]
        keep = []
        for t in new.tolist():
            if t == EOS:
                break
            if t >= N_SPECIAL:  # <pad>/<bos> are never trained as targets; skip them if sampled
                keep.append(t - N_SPECIAL)
        return torch.tensor(keep, dtype=torch.long)


def make_unit_lm(n_units: int, config: UlmConfig = UlmConfig()) -> LM:
    """An untrained unit LM of the recipe's size for ``n_units`` units."""
    torch.manual_seed(config.seed)
    return LM(LMConfig(vocab_size=n_units + N_SPECIAL, d_model=config.d_model, n_layers=config.n_layers,
                       n_heads=config.n_heads, max_len=config.max_len, dropout=config.dropout))


def warm_start(unit_model: LM, text_model: LM, shrink: float = 1.0, noise: float = 0.01) -> LM:
    """TWIST: copy the text LM's Transformer body (blocks, final norm, positions) into ``unit_model``.

    The token embeddings and the output head stay new (the vocabularies differ): only what the text
    LM learned about sequences is reused. The two must have the same width, depth and heads.

    ``shrink < 1`` scales the copied blocks' weight matrices by ``shrink`` and adds Gaussian noise of
    std ``noise`` ("shrink and perturb", Ash & Adams 2020): the copied structure stays, at a scale
    the new, random unit embeddings can still move. ``shrink=1`` (default) is TWIST's plain copy.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1] (1 = a plain copy), got {shrink!r}")
    a, b = unit_model.cfg, text_model.cfg
    if (a.d_model, a.n_layers, a.n_heads) != (b.d_model, b.n_layers, b.n_heads):
        raise ValueError(
            f"the unit LM (d_model {a.d_model}, {a.n_layers} layers, {a.n_heads} heads) and the text LM "
            f"(d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads) must have the same body to copy it"
        )
    unit_model.blocks.load_state_dict(text_model.blocks.state_dict())
    unit_model.ln_f.load_state_dict(text_model.ln_f.state_dict())
    n = min(a.max_len, b.max_len)
    with torch.no_grad():
        unit_model.pos_emb.weight[:n] = text_model.pos_emb.weight[:n]
        if shrink < 1:
            for p in unit_model.blocks.parameters():
                if p.ndim >= 2:  # weight matrices; norms and biases keep their values
                    p.mul_(shrink).add_(noise * torch.randn_like(p))
    return unit_model


def train_unit_lm(
    train_seqs: Sequence[torch.Tensor], n_units: int, config: UlmConfig = UlmConfig(),
    valid_seqs: Sequence[torch.Tensor] | None = None, init: LM | None = None, progress: bool = True,
    shrink: float = 1.0,
) -> tuple[UnitLM, object]:
    """Train a unit LM on de-duplicated unit sequences (one training loop: :func:`slm_course.train.train`).

    ``init``: a text LM whose body is copied in first (TWIST), its weight matrices scaled by ``shrink``
    (see :func:`warm_start`). Returns the :class:`UnitLM` (with
    ``metrics["val_loss"]`` when ``valid_seqs`` are given) and the training history.
    """
    from slm_course.train import TrainConfig, train

    if len(train_seqs) == 0:
        raise ValueError("no training sequences: encode some utterances first (encode_utterances)")
    seqs = [_check_units(s, n_units, f"train_seqs[{i}]") for i, s in enumerate(train_seqs)]
    model = make_unit_lm(n_units, config)
    if init is not None:
        warm_start(model, init, shrink=shrink)
    stream = pack(seqs)
    t0 = time.perf_counter()
    history = train(model, _crops(stream, config.context, config.batch_size, config.seed),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc="unit LM"))
    ulm = UnitLM(model.eval(), n_units, config, {"train_seconds": round(time.perf_counter() - t0, 1),
                                                   "params": model.num_params(), "train_tokens": len(stream),
                                                   "warm_start": init is not None})
    ulm.metrics["train_loss"] = float(np.mean(history.loss[-50:]))
    if valid_seqs is not None:
        ulm.metrics["val_loss"] = ulm.loss(valid_seqs)
    return ulm, history


class NgramLM:
    """Unigram or bigram unit LM with add-``alpha`` smoothing: the baselines of the zero-shot tests.

    >>> lm = NgramLM(order=2, n_units=3).fit([torch.tensor([0, 1, 2, 1])])
    >>> round(float(lm.score([torch.tensor([0, 1])])[0][0]), 3) < 0
    True
    """

    def __init__(self, order: int, n_units: int, alpha: float = 0.1) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
        self.order, self.n_units, self.alpha = order, n_units, alpha
        self.V = n_units + N_SPECIAL
        self.logp: torch.Tensor | None = None

    def fit(self, seqs: Sequence[torch.Tensor]) -> NgramLM:
        counts = torch.zeros(self.V, self.V) if self.order == 2 else torch.zeros(self.V)
        for s in seqs:
            t = torch.cat([torch.tensor([BOS]), _check_units(s, self.n_units) + N_SPECIAL, torch.tensor([EOS])])
            if self.order == 2:
                counts.index_put_((t[:-1], t[1:]), torch.ones(len(t) - 1), accumulate=True)
            else:
                counts.index_add_(0, t[1:], torch.ones(len(t) - 1))
        counts = counts + self.alpha
        self.logp = (counts / counts.sum(-1, keepdim=True)).log()
        return self

    def score(self, seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log p of each sequence (units and ``<eos>``) and the token counts, like :meth:`UnitLM.score`."""
        if self.logp is None:
            raise RuntimeError("fit() the n-gram model first")
        sums, counts = [], []
        for s in seqs:
            t = torch.cat([torch.tensor([BOS]), _check_units(s, self.n_units) + N_SPECIAL, torch.tensor([EOS])])
            lp = self.logp[t[:-1], t[1:]] if self.order == 2 else self.logp[t[1:]]
            sums.append(float(lp.sum()))
            counts.append(len(t) - 1)
        return torch.tensor(sums), torch.tensor(counts)


def pair_accuracy(
    scorer: Callable[[Sequence], tuple[torch.Tensor, torch.Tensor]], good: Sequence, bad: Sequence,
) -> dict[str, float]:
    """Share of pairs whose good member scores higher: summed and token-normalised log-likelihood.

    ``scorer(items) -> (summed log p, token counts)``; ties count half.
    """
    if len(good) != len(bad) or len(good) == 0:
        raise ValueError(f"need as many good as bad items, at least one: got {len(good)} and {len(bad)}")
    sg, ng = scorer(good)
    sb, nb = scorer(bad)

    def acc(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a > b).float() + 0.5 * (a == b).float()).mean())

    return {"summed": acc(sg, sb), "normalised": acc(sg / ng, sb / nb)}


# ---------------------------------------------------------------------------------------------
# Data, cache and the zero-shot tests
# ---------------------------------------------------------------------------------------------

ZERO_SHOT_SETS = ("lexical", "syntactic", "story")  # sWUGGY-, sBLIMP- and StoryCloze-style pairs
RECIPE = 2  # bump when the recipe changes in a way UlmConfig does not show: cached models are rebuilt


UNITS = "ssl"  # the units of notebook 04's unit LM, as in GSLM: self-supervised (tiny HuBERT), K=100
NORM_CONFIG = UlmConfig(d_model=256, steps=1800, extra_speech=9000)
# The unit LM on speaker-normalised units (section 3.1; the benchmark's headline, AudioLM's semantic stage) reads
# 4x the training speech (the corpus' training split and that of a larger second draw), at twice the width, for
# 1,800 steps: the longest step of `slm-course prepare`. On the story pairs, more speech, more width and more steps
# each help over UlmConfig(); 1,800 steps is where the CPU budget stops, not where the accuracy stops rising.
EXTRA_SEED = 1  # the second corpus draw's seed (the course corpus is seed 0)


def default_config(kind: str) -> UlmConfig:
    """Notebook 04's recipe for a unit LM over ``kind`` units: :data:`NORM_CONFIG` for ``"norm"``, else ``UlmConfig()``."""
    return NORM_CONFIG if kind == "norm" else UlmConfig()


def load_tokenizer(kind: str = UNITS):
    """The units a unit LM reads: ``"ssl"`` (tiny HuBERT, K=100) or ``"mel"`` (log-mel k-means, K=100) of notebook
    02, or ``"norm"``: the SSL units mapped to one reference voice by the speech normaliser (notebook 04, section 3.1)."""
    from slm_course import units

    if kind == "mel":
        return units.load_mel_units()
    if kind == "ssl":
        return units.load_ssl_units(progress=False)
    if kind == "norm":
        from slm_course.normalizer import load_normalized_units

        return load_normalized_units(progress=False)
    raise ValueError(f"kind must be 'mel', 'ssl' or 'norm', got {kind!r}")


def unit_data(corpus, tokenizer, progress: bool = False) -> dict[str, list[torch.Tensor]]:
    """De-duplicated units of the corpus: ``train``, ``valid``, ``test`` and each pair set's ``good``/``bad``.

    Cached per tokenizer (encoding every utterance of the corpus is slow only the first time).
    """
    from slm_course.runtime import cached

    def build() -> dict:
        data = {split: encode_utterances(tokenizer, corpus, corpus.split(split), progress)
                for split in ("train", "valid", "test")}
        for name in ZERO_SHOT_SETS:
            pairs = corpus.pairs(name)
            data[f"{name}_good"] = encode_utterances(tokenizer, corpus, [g for g, _ in pairs], progress)
            data[f"{name}_bad"] = encode_utterances(tokenizer, corpus, [b for _, b in pairs], progress)
        return data

    version = corpus_version(corpus)
    return cached(f"unit-data-r{RECIPE}-c{version}-{tokenizer.name}-{tokenizer_key(tokenizer)}", build)


def extra_unit_data(tokenizer, n_utterances: int, progress: bool = False) -> list[torch.Tensor]:
    """More training speech: the ``train`` split of a second corpus draw (``n_utterances``, seed 1) as units.

    The same grammar, voices and splits as the course corpus (the held-out speakers are never in a
    training split), other sentences; one pair per evaluation set (they are not used). Cached: building
    and encoding 9,000 utterances takes a few minutes the first time.
    """
    from slm_course.corpus import load_corpus
    from slm_course.runtime import cached

    if isinstance(n_utterances, bool) or not isinstance(n_utterances, int) or n_utterances < 100:
        raise ValueError(f"n_utterances must be an int >= 100, got {n_utterances!r}")
    extra = load_corpus(n_utterances=n_utterances, seed=EXTRA_SEED, pairs_per_set=1, progress=progress)
    version = corpus_version(extra)
    name = f"extra-units-r{RECIPE}-c{version}-n{n_utterances}-s{EXTRA_SEED}-{tokenizer.name}-{tokenizer_key(tokenizer)}"
    return cached(name, lambda: encode_utterances(tokenizer, extra, extra.split("train"), progress))


def load_unit_lm(
    kind: str = UNITS, config: UlmConfig | None = None, *, warm: bool = False, corpus=None, rebuild: bool = False,
    progress: bool = True,
) -> UnitLM:
    """The notebook-04 unit LM over ``kind`` units, from the cache or trained now (same recipe and seed).

    ``config``: default ``None``, the notebook's recipe for those units (:func:`default_config`).
    ``warm=True`` starts from the notebook-01 text LM's body (TWIST).
    """
    if config is None:
        config = default_config(kind)
    if not isinstance(config, UlmConfig):
        raise TypeError(f"config must be a UlmConfig (or None for the notebook's recipe), got {type(config).__name__}")

    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    tokenizer = load_tokenizer(kind)
    data = unit_data(corpus, tokenizer, progress)

    def text_body():
        from slm_course.textlm import load_text_lm

        return load_text_lm(progress=progress).model

    train = list(data["train"])
    if config.extra_speech:
        train += extra_unit_data(tokenizer, config.extra_speech, progress)
    version = corpus_version(corpus)
    name = (f"unit-lm-r{RECIPE}-c{version}-{kind}-{tokenizer_key(tokenizer)}-{'warm' if warm else 'cold'}-"
            f"{digest(config)}")
    return _cached_unit_lm(name, train, data["valid"], tokenizer.vocab_size, config,
                           text_body if warm else None, rebuild, progress)


def _cached_unit_lm(name: str, train_seqs, valid_seqs, n_units: int, config: UlmConfig, init: Callable | None,
                    rebuild: bool, progress: bool) -> UnitLM:
    """Train a unit LM once and cache it under ``name`` (``init()`` gives a text LM to warm-start from)."""
    from slm_course.runtime import cached

    def build() -> dict:
        ulm, history = train_unit_lm(train_seqs, n_units, config, valid_seqs=valid_seqs,
                                     init=init() if init is not None else None, progress=progress)
        return model_record(ulm.model, ulm.model.cfg, history, ulm.metrics)

    record = cached(name, build, rebuild=rebuild)
    model = restore(LM(record["config"]), record)
    ulm = UnitLM(model, n_units, config, dict(model.metrics))
    ulm.history = model.history
    return ulm


def zero_shot(scorer: Callable, data: dict[str, list[torch.Tensor]], sets: Sequence[str] = ZERO_SHOT_SETS) -> dict:
    """``{set: {"summed": acc, "normalised": acc}}`` for a scorer over unit sequences (see :func:`pair_accuracy`)."""
    return {name: pair_accuracy(scorer, data[f"{name}_good"], data[f"{name}_bad"]) for name in sets}


def text_topline(corpus, asr, text_lm, sets: Sequence[str] = ZERO_SHOT_SETS) -> dict:
    """The same pairs scored by the text LM on the ASR's transcripts: the cascade's topline."""

    def scorer(utts):
        transcripts = asr.transcribe([corpus.wav(u) for u in utts])
        tok = text_lm.tokenizer
        known = ["".join(c for c in t if c in tok.stoi) for t in transcripts]  # drop characters the LM never saw
        seqs = [torch.tensor(tok.encode(t or " ", bos=True, eos=True)) for t in known]
        T = max(len(s) for s in seqs)
        batch = torch.full((len(seqs), T), tok.pad_id)
        for i, s in enumerate(seqs):
            batch[i, : len(s)] = s
        with torch.no_grad():
            return text_lm.model.score(batch, torch.tensor([len(s) for s in seqs]))

    return {name: pair_accuracy(scorer, *zip(*corpus.pairs(name))) for name in sets}


def bench_ulm() -> dict:
    """GSLM on the corpus (notebook-04 recipes): zero-shot pair accuracies beside bigram and text baselines.

    The headline keys are the unit LM on speaker-normalised units (section 3.1, :data:`NORM_CONFIG`);
    ``*_hubert``: the GSLM unit LM on the HuBERT units of all the voices (sections 1-3), with its own
    bigram; ``speaker_probe_*``: how often a bag of units names which of the 4 held-out speakers said a
    test utterance (chance 0.25).
    """
    from slm_course.asr import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.normalizer import speaker_probe
    from slm_course.textlm import load_text_lm

    corpus = load_corpus(progress=False)
    text = text_topline(corpus, load_asr(progress=False), load_text_lm(progress=False))
    names = {"lexical": "swuggy", "syntactic": "sblimp", "story": "storycloze"}
    out: dict = {}
    probes = {}
    for kind, suffix in (("norm", ""), (UNITS, "_hubert")):
        tokenizer = load_tokenizer(kind)
        data = unit_data(corpus, tokenizer)
        ulm = load_unit_lm(kind, progress=False, corpus=corpus)
        ours = zero_shot(ulm.score, data)
        bigram = zero_shot(NgramLM(2, tokenizer.vocab_size).fit(data["train"]).score, data)
        unigram = zero_shot(NgramLM(1, tokenizer.vocab_size).fit(data["train"]).score, data)
        for name, short in names.items():
            out[f"{short}{suffix}"] = round(ours[name]["normalised"], 3)
            out[f"{short}{suffix}_summed"] = round(ours[name]["summed"], 3)
            out[f"{short}{suffix}_bigram"] = round(bigram[name]["normalised"], 3)
            out[f"{short}{suffix}_unigram"] = round(unigram[name]["normalised"], 3)
            if not suffix:
                out[f"{short}_text"] = round(text[name]["normalised"], 3)
        out[f"val_loss{suffix}"] = round(ulm.metrics["val_loss"], 3)
        out[f"params{suffix}"] = ulm.metrics["params"]
        out[f"train_seconds{suffix}"] = ulm.metrics["train_seconds"]
        probes[kind] = round(speaker_probe(tokenizer, corpus, data["test"]), 3)
    out["speaker_probe_ssl"], out["speaker_probe_norm"] = probes[UNITS], probes["norm"]
    out.update(_fsdd_reversal(load_tokenizer(UNITS)))
    return out


def _fsdd_reversal(tokenizer) -> dict:
    """Notebook 04's real-speech test: FSDD held-out takes vs the same takes backwards (empty without FSDD)."""
    from slm_course.fsdd import FsddMissing, load_fsdd

    try:
        fsdd = load_fsdd()
    except FsddMissing:
        return {}
    data = fsdd_unit_data(tokenizer, fsdd)
    lm = load_fsdd_unit_lm(UNITS, fsdd=fsdd, progress=False)
    scorers = {"": lm.score, "_bigram": NgramLM(2, tokenizer.vocab_size).fit(data["train"]).score,
               "_unigram": NgramLM(1, tokenizer.vocab_size).fit(data["train"]).score}
    return {f"fsdd_reversal{k}": round(pair_accuracy(f, data["test"], data["test_reversed"])["normalised"], 3)
            for k, f in scorers.items()}


# ---------------------------------------------------------------------------------------------
# Real speech: a unit LM on FSDD digits
# ---------------------------------------------------------------------------------------------

# FSDD takes are single words (~25 units each): short windows, and fewer steps than the corpus needs.
FSDD_ULM_CONFIG = UlmConfig(context=64, steps=400)


def fsdd_unit_data(tokenizer, fsdd=None, progress: bool = False) -> dict[str, list]:
    """De-duplicated units of FSDD: ``train`` (takes 5-49), ``test`` (takes 0-4), their ``*_words``.

    ``test_reversed`` holds the units of each test take played backwards: the same samples, so the
    same speaker and length, in reverse order: a sound-alike non-word (its units are not the word's
    units reversed, since a unit depends on its context and reversed sounds are other sounds).
    A word-vs-reversed pair test asks whether the LM learned the order of sounds in real words.

    Cached per tokenizer and FSDD copy. Raises :class:`slm_course.fsdd.FsddMissing` (saying how to
    get FSDD) when no copy is found.
    """
    from slm_course.audio import SR
    from slm_course.runtime import cached

    if fsdd is None:
        from slm_course.fsdd import load_fsdd

        fsdd = load_fsdd()
    names = digest("\n".join(sorted(r.path.name for r in fsdd.recordings)))

    def build() -> dict:
        from tqdm.auto import tqdm

        data: dict = {}
        for split in ("train", "test"):
            recs = fsdd.split(split)
            data[split] = [tokenizer.encode(fsdd.wav(r, sr=SR)).ids.long()
                           for r in tqdm(recs, desc=f"FSDD {split} units", disable=not progress, leave=False)]
            data[f"{split}_words"] = [r.word for r in recs]
        data["test_reversed"] = [tokenizer.encode(fsdd.wav(r, sr=SR).flip(0)).ids.long() for r in fsdd.split("test")]
        return data

    return cached(f"fsdd-units-r{RECIPE}-{tokenizer.name}-{tokenizer_key(tokenizer)}-{names}", build)


def load_fsdd_unit_lm(
    kind: str = UNITS, config: UlmConfig | None = None, *, fsdd=None, rebuild: bool = False, progress: bool = True,
) -> UnitLM:
    """A unit LM trained on FSDD's training takes (real voices saying digits), from the cache or trained now.

    ``config``: default ``None``, :data:`FSDD_ULM_CONFIG` (short windows: FSDD takes are single words).
    """
    config = recipe_config(config, FSDD_ULM_CONFIG)
    tokenizer = load_tokenizer(kind)
    data = fsdd_unit_data(tokenizer, fsdd, progress)
    name = f"fsdd-unit-lm-r{RECIPE}-{kind}-{tokenizer_key(tokenizer)}-{digest(config)}-{len(data['train'])}"
    return _cached_unit_lm(name, data["train"], data["test"], tokenizer.vocab_size, config, None, rebuild, progress)


TWIST_UNITS = "reference"  # TWIST's headline comparison: one voice's units (reference_unit_data); "ssl" beside it
TWIST_CONFIG = UlmConfig(steps=300)  # the warm-vs-cold comparison: a short budget, where a warm start matters most
TWIST_SEEDS = (0, 1, 2)
TWIST_SHRINK = 0.5  # "shrink and perturb" the copied matrices (see warm_start)
# At this budget a half-shrunk copy reaches a lower validation loss than a plain copy, a stronger or a weaker
# shrink, or a cold start; notebook 04 compares them.
# TWIST copies notebook 01's text LM. It reads 128-character windows, the unit LM's window, so every position
# embedding the unit LM uses was trained: a text LM with 64-character windows leaves positions 64-127 untrained,
# and its warm start helps less.


def twist_comparison(
    data: dict[str, list[torch.Tensor]], n_units: int, text_model: LM, config: UlmConfig = TWIST_CONFIG,
    seeds: Sequence[int] = TWIST_SEEDS, progress: bool = True, shrink: float = TWIST_SHRINK,
) -> dict:
    """Cold start vs TWIST warm start (the text LM's body, see :func:`warm_start` for ``shrink``) at equal steps.

    Returns the validation losses per seed (``cold``, ``warm``), their means, and the training-loss
    curves of the first seed (``cold_curve``, ``warm_curve``).
    """
    from dataclasses import replace

    out: dict = {"cold": [], "warm": [], "seeds": list(seeds), "steps": config.steps, "shrink": shrink}
    for i, seed in enumerate(seeds):
        for kind, init in (("cold", None), ("warm", text_model)):
            ulm, history = train_unit_lm(data["train"], n_units, replace(config, seed=seed), valid_seqs=data["valid"],
                                         init=init, progress=progress, shrink=shrink)
            out[kind].append(ulm.metrics["val_loss"])
            if i == 0:
                out[f"{kind}_curve"] = list(history.loss)
    out["cold_loss"], out["warm_loss"] = float(np.mean(out["cold"])), float(np.mean(out["warm"]))
    return out


def reference_unit_data(corpus, progress: bool = False) -> dict[str, list[torch.Tensor]]:
    """Units of one voice: the reference voice (section 3.1) saying the corpus' ``train`` and ``valid`` texts.

    eSpeak's voice m00 says every utterance's words at its own, neutral speed; the tiny HuBERT's K=100
    units of that, repeats merged (:func:`slm_course.normalizer.reference_units` with ``match_speed=False``).
    Units of one voice at one speed carry the words and little else: no speaker, no style, no speed.
    Cached (eSpeak and HuBERT on every ``train`` and ``valid`` utterance: slow only the first time).
    """
    from slm_course.normalizer import NormalizerConfig, reference_units
    from slm_course.runtime import cached

    ssl = load_tokenizer("ssl")
    voice = NormalizerConfig().reference  # the normaliser's reference voice, m00

    def build() -> dict:
        return {split: [u.long() for u in reference_units(corpus, ssl, corpus.split(split), voice, match_speed=False,
                                                           progress=progress)]
                for split in ("train", "valid")}

    version = corpus_version(corpus)
    return cached(f"reference-units-r{RECIPE}-c{version}-{voice}-{tokenizer_key(ssl)}", build)


def load_twist_comparison(kind: str = TWIST_UNITS, config: UlmConfig | None = None, *,
                          seeds: Sequence[int] = TWIST_SEEDS, shrink: float = TWIST_SHRINK,
                          text_config: TextLMConfig | None = None, corpus=None, rebuild: bool = False,
                          progress: bool = True) -> dict:
    """:func:`twist_comparison` on the corpus's ``kind`` units, from the cache or run now.

    ``kind``: ``"reference"`` (default), one voice's units (:func:`reference_unit_data`), or the units
    of a tokenizer over all the voices (``"ssl"``, ``"norm"``, ``"mel"``: :func:`load_tokenizer`).
    The text LM is :func:`slm_course.textlm.load_text_lm` with ``text_config`` (default ``None``: notebook
    01's LM, whose 128-character window is the unit LM's). Six short trainings (cold and warm, three
    seeds): a few minutes the first time, then instant.
    """
    from slm_course.runtime import cached
    from slm_course.textlm import load_text_lm

    if kind not in ("reference", "ssl", "norm", "mel"):
        raise ValueError(f"kind must be 'reference' (one voice's units) or a tokenizer kind ('ssl', 'norm', 'mel'), "
                         f"got {kind!r}")
    config = recipe_config(config, TWIST_CONFIG)
    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    tokenizer = load_tokenizer("ssl" if kind == "reference" else kind)
    text_lm = load_text_lm(text_config or TextLMConfig(), progress=progress)

    def build() -> dict:
        data = reference_unit_data(corpus, progress) if kind == "reference" else unit_data(corpus, tokenizer, progress)
        return twist_comparison(data, tokenizer.vocab_size, text_lm.model, config, seeds, progress, shrink)

    text_key = digest(*text_lm.model.state_dict().values())  # another text LM gets its own comparison
    name = (f"twist-r{RECIPE}-{kind}-{tokenizer_key(tokenizer)}-{digest(config)}-"
            f"s{'-'.join(map(str, seeds))}-shrink{shrink:g}-text{text_key}")
    return cached(name, build, rebuild=rebuild)


def bench_twist() -> dict:
    """TWIST (notebook-04 recipe): unit LM validation loss from a text-LM warm start vs a cold start.

    The headline keys are on one voice's units (:data:`TWIST_UNITS`); ``*_hubert``: the same on the HuBERT
    units of all the voices, the units of the notebook's unit LM.
    """
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    out: dict = {"units": TWIST_UNITS}
    for kind, suffix in ((TWIST_UNITS, ""), (UNITS, "_hubert")):
        result = load_twist_comparison(kind, progress=False, corpus=corpus)  # cached, or run now
        out.update({
            f"warm_loss{suffix}": round(result["warm_loss"], 4), f"cold_loss{suffix}": round(result["cold_loss"], 4),
            f"ratio{suffix}": round(result["warm_loss"] / result["cold_loss"], 4),
            f"warm_losses{suffix}": [round(x, 4) for x in result["warm"]],
            f"cold_losses{suffix}": [round(x, 4) for x in result["cold"]],
        })
        out["seeds"], out["steps"] = result["seeds"], result["steps"]
    return out
