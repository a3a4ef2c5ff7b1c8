"""How the course trains and evaluates its unit LMs (notebooks 04 and 05): data, the cached models, zero-shot tests, FSDD.

The model is :mod:`slm_course.ulm` (the LM core over units). This file holds the data (the corpus'
utterances as de-duplicated units, cached per tokenizer; :func:`extra_unit_data` for more speech),
the training (:func:`train_unit_lm` on :func:`crops` of the packed stream, with the course's one
loop), the loaders (:func:`load_unit_lm`, :func:`load_fsdd_unit_lm`), the zero-shot evaluation
(:func:`pair_accuracy`, :func:`zero_shot`, the cascade's :func:`text_topline`) and ``slm-course bench
ulm``. Zero-shot evaluation asks whether the model gives the good member of a pair (a real word, a
grammatical sentence, a fitting story ending) a higher log-likelihood than the bad one, summed or
divided by the number of tokens ("token-normalised"), as sWUGGY, sBLIMP and tStoryCloze do::

    tokenizer = load_tokenizer("mel")                        # any SpeechTokenizer with one stream
    seqs = encode_utterances(tokenizer, corpus, corpus.split("train"))
    ulm, history = train_unit_lm(seqs, tokenizer.vocab_size, UlmConfig())
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from slm_course.corpus import corpus_version
from slm_course.lm import LM
from slm_course.runtime import digest, recipe_config
from slm_course.speech_tokens import tokenizer_key
from slm_course.train import model_record, restore
from slm_course.ulm import BOS, NgramLM, UlmConfig, UnitLM, check_units, make_unit_lm, pack, warm_start

__all__ = [
    "EXTRA_SEED",
    "FSDD_ULM_CONFIG",
    "NORM_CONFIG",
    "RECIPE",
    "UNITS",
    "ZERO_SHOT_SETS",
    "cached_unit_lm",
    "corpus_tokens",
    "crops",
    "default_config",
    "encode_utterances",
    "extra_unit_data",
    "fsdd_unit_data",
    "load_fsdd_unit_lm",
    "load_tokenizer",
    "load_unit_lm",
    "mean_durations",
    "pair_accuracy",
    "text_topline",
    "train_unit_lm",
    "unit_data",
    "zero_shot",
]


def corpus_tokens(corpus, tokenizer, which: str = "all", progress: bool = False) -> dict:
    """``tokenizer.encode`` of every utterance a unit LM reads: ``which="all"``, the corpus' splits and pair sets;
    ``"train"``, its training split. ``{"ids": {utterance id: (T,)}, "durations": {id: (T,)}, "frame_rate": Hz}``,
    de-duplicated units and each one's frames.

    Cached per corpus and tokenizer: :func:`unit_data` and SpiRit-LM's data (cut at words,
    :func:`slm_course.spiritlm_recipe.spirit_data`) read the same encoding, so each corpus is encoded once. A
    tokenizer built on another's units (``tokenizer.units``, with ``tokenizer.merge(wav, units)``: the expressive
    tokens) reads that tokenizer's encoding, cached, instead of encoding the units again.
    """
    from tqdm.auto import tqdm

    from slm_course.runtime import cached

    if which not in ("all", "train"):
        raise ValueError(f"which must be 'all' (every split and pair set) or 'train', got {which!r}")
    if getattr(tokenizer, "n_levels", 1) != 1:
        raise ValueError("a unit LM reads one stream of units; this tokenizer has several levels (a codec?)")
    utts = list(corpus.split("train"))
    if which == "all":
        utts += [*corpus.split("valid"), *corpus.split("test")]
        for name in ZERO_SHOT_SETS:
            utts += [u for pair in corpus.pairs(name) for u in pair]

    from slm_course.speech_tokens import SpeechTokens

    def build() -> dict:
        ids, durations, rate = {}, {}, None
        # a tokenizer built on another's units that merges them with more (notebook 07's expressive tokens: pitch
        # and style) reuses the units' own encoding, cached
        on_units = callable(getattr(tokenizer, "merge", None)) and hasattr(tokenizer, "units")
        given = corpus_tokens(corpus, tokenizer.units, which) if on_units else None
        for u in tqdm(utts, desc="units", disable=not progress, leave=False):
            if given is None:
                t = tokenizer.encode(corpus.wav(u))
            else:
                t = tokenizer.merge(corpus.wav(u), SpeechTokens(given["ids"][u.id].long(), given["frame_rate"],
                                                                given["durations"][u.id].long()))
            ids[u.id], durations[u.id], rate = t.ids.to(torch.int16), t.durations.to(torch.int16), float(t.frame_rate)
        return {"ids": ids, "durations": durations, "frame_rate": rate}

    m = corpus.manifest  # which draw of the corpus: the course's, or the second draw of notebook 05's extra speech
    draw = f"n{m.get('n_utterances')}-s{m.get('seed')}-p{m.get('pairs_per_set')}"
    name = f"corpus-tokens-r{RECIPE}-c{corpus_version(corpus)}-{draw}-{which}-{tokenizer.name}-{tokenizer_key(tokenizer)}"
    return cached(name, build)


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


def crops(stream: torch.Tensor, context: int, batch_size: int, seed: int) -> Callable[[int], dict]:
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


def train_unit_lm(
    train_seqs: Sequence[torch.Tensor], n_units: int, config: UlmConfig | None = None,
    valid_seqs: Sequence[torch.Tensor] | None = None, init: LM | None = None, progress: bool = True,
    shrink: float = 1.0,
) -> tuple[UnitLM, object]:
    """Train a unit LM on de-duplicated unit sequences (one training loop: :func:`slm_course.train.train`).

    ``init``: a text LM whose body is copied in first (TWIST), its weight matrices scaled by ``shrink``
    (see :func:`warm_start`). Returns the :class:`UnitLM` (with
    ``metrics["val_loss"]`` when ``valid_seqs`` are given) and the training history.
    """
    from slm_course.train import TrainConfig, train

    config = UlmConfig() if config is None else config
    if len(train_seqs) == 0:
        raise ValueError("no training sequences: encode some utterances first (encode_utterances)")
    seqs = [check_units(s, n_units, f"train_seqs[{i}]") for i, s in enumerate(train_seqs)]
    model = make_unit_lm(n_units, config)
    if init is not None:
        warm_start(model, init, shrink=shrink)
    stream = pack(seqs)
    t0 = time.perf_counter()
    history = train(model, crops(stream, config.context, config.batch_size, config.seed),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc="unit LM"))
    ulm = UnitLM(model.eval(), n_units, config, {"train_seconds": round(time.perf_counter() - t0, 1),
                                                   "params": model.num_params(), "train_tokens": len(stream),
                                                   "warm_start": init is not None})
    ulm.metrics["train_loss"] = float(np.mean(history.loss[-50:]))
    if valid_seqs is not None:
        ulm.metrics["val_loss"] = ulm.loss(valid_seqs)
    return ulm, history


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

ZERO_SHOT_SETS = ("lexical", "syntactic", "story")  # sWUGGY-, sBLIMP- and tStoryCloze-like pairs
RECIPE = 2  # bump when the recipe changes in a way UlmConfig does not show: cached models are rebuilt


UNITS = "ssl"  # the units of notebook 04's unit LM, as in GSLM: self-supervised (tiny HuBERT), K=100
NORM_CONFIG = UlmConfig(d_model=256, steps=1800, extra_speech=9000)
# The unit LM on speaker-normalised units (notebook 05; the benchmark's headline, AudioLM's semantic stage) reads
# 4x the training speech (the corpus' training split and that of a larger second draw), at twice the width, for
# 1,800 steps: the longest step of `slm-course prepare`. On the story pairs, more speech, more width and more steps
# each help over UlmConfig(); 1,800 steps is where the CPU budget stops, not where the accuracy stops rising.
EXTRA_SEED = 1  # the second corpus draw's seed (the course corpus is seed 0)


def default_config(kind: str) -> UlmConfig:
    """The course's recipe for a unit LM over ``kind`` units: :data:`NORM_CONFIG` for ``"norm"``, else ``UlmConfig()``."""
    return NORM_CONFIG if kind == "norm" else UlmConfig()


def load_tokenizer(kind: str = UNITS):
    """The units a unit LM reads: ``"ssl"`` (tiny HuBERT, K=100) or ``"mel"`` (log-mel k-means, K=100) of notebook
    02, or ``"norm"``: the SSL units mapped to one reference voice by the speech normaliser (notebook 05)."""
    from slm_course import units_recipe

    if kind == "mel":
        return units_recipe.load_mel_units()
    if kind == "ssl":
        return units_recipe.load_ssl_units(progress=False)
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
        ids = corpus_tokens(corpus, tokenizer, "all", progress)["ids"]

        def units(utts) -> list[torch.Tensor]:
            return [ids[u.id].long() for u in utts]

        data = {split: units(corpus.split(split)) for split in ("train", "valid", "test")}
        for name in ZERO_SHOT_SETS:
            pairs = corpus.pairs(name)
            data[f"{name}_good"], data[f"{name}_bad"] = units([g for g, _ in pairs]), units([b for _, b in pairs])
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

    def build() -> list[torch.Tensor]:
        ids = corpus_tokens(extra, tokenizer, "train", progress)["ids"]
        return [ids[u.id].long() for u in extra.split("train")]

    return cached(name, build)


def load_unit_lm(
    kind: str = UNITS, config: UlmConfig | None = None, *, warm: bool = False, corpus=None, rebuild: bool = False,
    progress: bool = True,
) -> UnitLM:
    """The unit LM of notebooks 04 and 05 over ``kind`` units, from the cache or trained now (same recipe and seed).

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
    return cached_unit_lm(name, train, data["valid"], tokenizer.vocab_size, config,
                           text_body if warm else None, rebuild, progress)


def cached_unit_lm(name: str, train_seqs, valid_seqs, n_units: int, config: UlmConfig, init: Callable | None,
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
    """GSLM on the corpus (the recipes of notebooks 04 and 05): zero-shot pair accuracies beside bigram and text baselines.

    The headline keys are the unit LM on speaker-normalised units (notebook 05, :data:`NORM_CONFIG`);
    ``*_hubert``: the GSLM unit LM on the HuBERT units of all the voices (sections 1-3), with its own
    bigram; ``speaker_probe_*``: how often a bag of units names which of the 4 held-out speakers said a
    test utterance (chance 0.25).
    """
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.probes import speaker_probe
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

# FSDD takes are single words: short windows, and fewer steps than the corpus needs.
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
    return cached_unit_lm(name, data["train"], data["test"], tokenizer.vocab_size, config, None, rebuild, progress)
