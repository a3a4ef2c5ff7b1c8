"""How the course trains and evaluates its SpiRit-LM toy (notebook 07): data, mix, the cached models, tests.

The model is :mod:`slm_course.spiritlm`. This file holds:

- the data: every utterance's speaker-normalised units (notebook 05) cut at its true word
  boundaries (:func:`spirit_data`, cached), and the grammar's sentences as text; what the training
  mix draws from (:func:`training_speech`, :func:`training_texts`);
- :func:`mix_batches`, training windows drawn from text-only, speech-only and word-level
  interleaved sequences in the proportions of :data:`slm_course.spiritlm.MIXES`;
- :func:`train_spiritlm` on the course's one training loop, and one loader, :func:`load_spiritlm`
  (``SpiritConfig(mix="no_interleave")`` is the ablation, ``mix="speech_only"`` a speech LM);
- the evaluations, all on held-out speakers: story endings in four settings (:func:`story`),
  cross-modal next word (:func:`next_word`), lexical and syntactic pairs in speech
  (:func:`speech_pairs`), in-context ASR and TTS (:func:`few_shot_asr`, :func:`few_shot_tts`), and
  ``slm-course bench spiritlm``.

Every test is a pair: the model should give the true member a higher token-normalised log-likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from slm_course.corpus import corpus_version
from slm_course.runtime import digest, recipe_config
from slm_course.speech_tokens import tokenizer_key
from slm_course.spiritlm import (
    BOS,
    EOS,
    MIXES,
    SpiritConfig,
    SpiritLM,
    SpiritVocab,
    interleave,
    random_spans,
    warm_start_text,
    word_units,
)

__all__ = ["CONFIG", "RECIPE", "SETTINGS", "UNITS", "bench_spiritlm", "evaluate", "extra_spirit_data", "few_shot_asr",
           "few_shot_tts", "load_spiritlm", "mix_batches", "next_word", "pair_accuracy", "speech_pairs", "spirit_data",
           "story", "train_spiritlm", "training_speech", "training_texts"]

RECIPE = 1  # bump when the recipe changes in a way SpiritConfig does not show: cached models are rebuilt
DATA = 2  # the layout of spirit_data's cached dict (bump when it changes)
UNITS = "norm"  # the course's best units (notebook 05): speaker-normalised, K=100
CONFIG = SpiritConfig()
SETTINGS = ("s", "t", "t2s", "s2t")  # prompt modality -> continuation modality (s = speech, t = text)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def _aligned(tokenizer, corpus, utterances, progress: bool, which: str = "all") -> list[list[torch.Tensor]]:
    """Each utterance's units cut at its words, from the encoding the unit LMs read too (``corpus_tokens``)."""
    from slm_course.ulm_recipe import corpus_tokens

    enc = corpus_tokens(corpus, tokenizer, which, progress)
    return [word_units(enc["ids"][u.id], enc["durations"][u.id], u.word_spans, enc["frame_rate"]) for u in utterances]


def spirit_data(corpus, tokenizer, progress: bool = False) -> dict:
    """Each utterance's words, speaker and units cut at its words: ``train``, ``test`` and every pair set's members.

    Pair sets: ``{story,lexical,syntactic}_{good,bad}``. Cached per tokenizer.
    """
    from slm_course.runtime import cached

    def items(utts):
        return {"words": [list(u.words) for u in utts], "speakers": [u.speaker for u in utts],
                "units": _aligned(tokenizer, corpus, utts, progress)}

    def build() -> dict:
        data = {split: items(corpus.split(split)) for split in ("train", "test")}
        for name in ("story", "lexical", "syntactic"):
            pairs = corpus.pairs(name)
            data[f"{name}_good"] = items([g for g, _ in pairs])
            data[f"{name}_bad"] = items([b for _, b in pairs])
        return data

    name = f"spirit-data-r{RECIPE}-d{DATA}-c{corpus_version(corpus)}-{tokenizer.name}-{tokenizer_key(tokenizer)}"
    return cached(name, build)


def extra_spirit_data(tokenizer, n_utterances: int, progress: bool = False) -> dict:
    """More training speech: the ``train`` split of notebook 05's second corpus draw, cut at its words (cached)."""
    from slm_course.corpus import load_corpus
    from slm_course.runtime import cached
    from slm_course.ulm_recipe import EXTRA_SEED

    if isinstance(n_utterances, bool) or not isinstance(n_utterances, int) or n_utterances < 100:
        raise ValueError(f"n_utterances must be an int >= 100, got {n_utterances!r}")
    extra = load_corpus(n_utterances=n_utterances, seed=EXTRA_SEED, pairs_per_set=1, progress=progress)
    utts = extra.split("train")
    name = (f"extra-spirit-data-r{RECIPE}-c{corpus_version(extra)}-n{n_utterances}-s{EXTRA_SEED}-{tokenizer.name}-"
            f"{tokenizer_key(tokenizer)}")
    return cached(name, lambda: {"words": [list(u.words) for u in utts],
                                 "units": _aligned(tokenizer, extra, utts, progress, "train")})


def training_texts() -> list[str]:
    """The text the mix draws its text-only sequences from: the text LM's own training sentences (notebook 01)."""
    from slm_course.textlm import TextLMConfig, text_corpus

    recipe = TextLMConfig()
    return text_corpus(recipe.n_train_sentences, seed=recipe.seed)


def training_speech(corpus, tokenizer, config: SpiritConfig = CONFIG, progress: bool = False) -> dict:
    """The speech the mix draws from: the corpus' training split cut at its words, and ``config.extra_speech``
    utterances of the second corpus draw (:func:`extra_spirit_data`) when that is > 0."""
    speech = dict(spirit_data(corpus, tokenizer, progress)["train"])
    if config.extra_speech:
        extra = extra_spirit_data(tokenizer, config.extra_speech, progress)
        speech = {k: speech[k] + extra[k] for k in ("words", "units")}
    return speech


def mix_batches(texts: Sequence[str], speech: dict, vocab: SpiritVocab, encode_text, config: SpiritConfig):
    """``step -> {"tokens": (B, context)}``: each row packs whole sequences, each one text-only, speech-only or
    interleaved with the probabilities of ``MIXES[config.mix]``, then keeps the first ``context`` tokens."""
    p = np.array(MIXES[config.mix])
    words, units = speech["words"], speech["units"]
    if not texts and p[0] > 0 or not words and p[1:].sum() > 0:
        raise ValueError("the mix needs text and speech to draw from; got none of one of them")

    def sequence(rng: np.random.Generator) -> list[int]:
        kind = rng.choice(3, p=p)
        if kind == 0:
            return [BOS, vocab.text_marker, *encode_text(texts[rng.integers(len(texts))]), EOS]
        i = int(rng.integers(len(words)))
        n = len(words[i])
        spans = [("speech", n)] if kind == 1 else random_spans(n, rng, config.span_words)
        return interleave(words[i], units[i], spans, vocab, encode_text).tolist()

    def batch(step: int) -> dict:
        rng = np.random.default_rng([config.seed, step])
        rows = []
        for _ in range(config.batch_size):
            row: list[int] = []
            while len(row) < config.context:
                row += sequence(rng)
            rows.append(row[: config.context])
        return {"tokens": torch.tensor(rows, dtype=torch.long)}

    return batch


# ---------------------------------------------------------------------------------------------
# Training and the one loader
# ---------------------------------------------------------------------------------------------

def train_spiritlm(speech: dict, tokenizer, n_units: int, config: SpiritConfig = CONFIG, text_model=None,
                   progress: bool = True) -> tuple[SpiritLM, object]:
    """Train the speech + text LM on ``speech`` (:func:`spirit_data`'s ``train``) and the grammar's sentences.

    ``text_model``: the text LM to start from when ``config.warm`` (its tokenizer is ``tokenizer``).
    """
    from slm_course.lm import LM
    from slm_course.train import TrainConfig, train

    if config.warm and text_model is None:
        raise ValueError("config.warm needs the text LM to start from: pass text_model=load_text_lm().model")
    vocab = SpiritVocab(tokenizer.vocab_size, n_units)
    torch.manual_seed(config.seed)
    model = LM(config.lm_config(vocab))
    if config.warm:
        warm_start_text(model, text_model)
    history = train(model, mix_batches(training_texts(), speech, vocab, tokenizer.encode, config),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc=f"SpiRit-LM ({config.mix})"))
    model.eval()
    metrics = {"train_loss": history.final_loss(), "params": model.num_params(), "train_seconds": history.seconds}
    return SpiritLM(model, vocab, tokenizer, config, metrics), history


def load_spiritlm(config: SpiritConfig | None = None, *, expressive: bool = False, corpus=None,
                  rebuild: bool = False, progress: bool = True) -> SpiritLM:
    """The notebook-07 model from the cache, or trained now with the same recipe and seed.

    ``config``: default ``None``, the course's recipe (:data:`CONFIG`); ``SpiritConfig(mix="no_interleave")``
    and ``SpiritConfig(mix="speech_only")`` are the chapter's two comparisons. ``expressive=True``: the
    same recipe on the expressive tokens (units, pitch and style merged by time,
    :func:`slm_course.expressive_recipe.load_expressive_tokens`) in place of the units.
    """
    config = recipe_config(config, CONFIG)
    from slm_course.lm import LM
    from slm_course.runtime import cached
    from slm_course.text import CharTokenizer
    from slm_course.textlm import load_text_lm
    from slm_course.train import model_record, restore
    from slm_course.ulm_recipe import load_tokenizer

    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    if expressive:
        from slm_course.expressive_recipe import load_expressive_tokens

        units = load_expressive_tokens(corpus=corpus)
    else:
        units = load_tokenizer(UNITS)
    text_lm = load_text_lm(progress=progress)

    def build() -> dict:
        speech = training_speech(corpus, units, config, progress)
        lm, history = train_spiritlm(speech, text_lm.tokenizer, units.vocab_size, config, text_model=text_lm.model,
                                     progress=progress)
        return model_record(lm.model, lm.model.cfg, history, lm.metrics, chars=text_lm.tokenizer.state()["chars"],
                            n_units=units.vocab_size)

    name = f"spiritlm-r{RECIPE}-c{corpus_version(corpus)}-{tokenizer_key(units)}-{digest(config)}"
    record = cached(name, build, rebuild=rebuild)
    model = restore(LM(record["config"]), record)
    tokenizer = CharTokenizer(record["chars"])
    lm = SpiritLM(model, SpiritVocab(tokenizer.vocab_size, int(record["n_units"])), tokenizer, config,
                  dict(model.metrics))
    lm.history = model.history
    return lm


# ---------------------------------------------------------------------------------------------
# Evaluations
# ---------------------------------------------------------------------------------------------

def pair_accuracy(lm: SpiritLM, prompts: Sequence, good: Sequence, bad: Sequence) -> float:
    """Share of pairs in which ``good`` (given its prompt) has the higher token-normalised log p; ties count half.

    ``prompts``: one prompt per pair, or a pair of prompts (one for each member).
    """
    if not len(good) == len(bad) == len(prompts) or not good:
        raise ValueError(f"need one prompt, one good and one bad continuation per pair; got {len(prompts)}, "
                         f"{len(good)} and {len(bad)}")
    for i, p in enumerate(prompts):
        if isinstance(p, tuple) and not (len(p) == 2 and all(isinstance(x, list | torch.Tensor) for x in p)):
            raise ValueError(f"prompts[{i}] is a tuple of {len(p)}: a prompt is a list of ids, and a pair of prompts "
                             "a tuple (good_prompt, bad_prompt) of two such lists; pass list(...) for one prompt")
    pg = [p[0] if isinstance(p, tuple) else p for p in prompts]
    pb = [p[1] if isinstance(p, tuple) else p for p in prompts]
    sg, ng = lm.score(pg, good)
    sb, nb = lm.score(pb, bad)
    a, b = sg / ng, sb / nb
    return float(((a > b).float() + 0.5 * (a == b).float()).mean())


def _prompt(lm: SpiritLM, words: Sequence[str], units: Sequence[torch.Tensor], src: str, dst: str) -> list[int]:
    """The prompt in modality ``src``, with its marker, and the marker of ``dst`` when the modality switches."""
    ids = lm.text(" ".join(words)) if src == "t" else lm.speech(_cat(units))
    if dst != src:
        ids.append(lm.vocab.text_marker if dst == "t" else lm.vocab.speech_marker)
    return ids


def _ending(lm: SpiritLM, words: Sequence[str], units: Sequence[torch.Tensor], src: str, dst: str) -> list[int]:
    """The scored continuation, without a marker: characters (after a space when the text goes on) or units."""
    if dst == "t":
        return lm.tokenizer.encode((" " if src == "t" else "") + " ".join(words))
    return lm.vocab.units(_cat(units)).tolist()


def _cat(units: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([u.long() for u in units]) if len(units) else torch.zeros(0, dtype=torch.long)


def _items(data: dict, key: str) -> dict:
    if not isinstance(data, dict) or key not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data must be spirit_data(corpus, units)'s dict, with {key!r}; got {have}")
    return data[key]


def _check_setting(setting: str) -> tuple[str, str]:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS} (prompt -> continuation modality), got {setting!r}")
    return (setting[0], setting[-1])


def story(lm: SpiritLM, data: dict, setting: str = "s") -> float:
    """tStoryCloze-like pairs in one ``setting``: the shared beginning as the prompt, the two endings as continuations.

    Only the ending (and ``<eos>``) is scored; a switch's marker belongs to the prompt. In S each member
    is its own recording, whole; a spoken prompt before written endings is the fitting member's recording.
    """
    src, dst = _check_setting(setting)
    good, bad = _items(data, "story_good"), _items(data, "story_bad")
    prompts, gs, bs = [], [], []
    for wg, ug, wb, ub in zip(good["words"], good["units"], bad["words"], bad["units"]):
        k = 0
        while k < min(len(wg), len(wb)) and wg[k] == wb[k]:
            k += 1
        shared = _prompt(lm, wg[:k], ug[:k], src, dst)
        prompts.append((shared, _prompt(lm, wb[:k], ub[:k], src, dst)) if setting == "s" else shared)
        gs.append(_ending(lm, wg[k:], ug[k:], src, dst) + [EOS])
        bs.append(_ending(lm, wb[k:], ub[k:], src, dst) + [EOS])
    return pair_accuracy(lm, prompts, gs, bs)


def next_word(lm: SpiritLM, data: dict, setting: str = "t2s", min_words: int = 3) -> float:
    """Next word on the held-out speakers' test sentences: all words but the last in one modality, then the true
    last word vs another sentence's last word, said by the same speaker, in the other (or the same) modality."""
    src, dst = _check_setting(setting)
    test = _items(data, "test")
    idx = [i for i, w in enumerate(test["words"]) if len(w) >= min_words]
    prompts, gs, bs = [], [], []
    for n, i in enumerate(idx):
        w, u = test["words"][i], test["units"][i]
        others = (idx[(n + s) % len(idx)] for s in range(1, len(idx)))
        j = next((j for j in others if test["speakers"][j] == test["speakers"][i] and test["words"][j][-1] != w[-1]),
                 None)
        if j is None:
            continue
        prompts.append(_prompt(lm, w[:-1], u[:-1], src, dst))
        gs.append(_ending(lm, w[-1:], u[-1:], src, dst))
        bs.append(_ending(lm, test["words"][j][-1:], test["units"][j][-1:], src, dst))
    return pair_accuracy(lm, prompts, gs, bs)


def speech_pairs(lm: SpiritLM, data: dict, name: str = "lexical") -> float:
    """sWUGGY- (``"lexical"``) or sBLIMP-like (``"syntactic"``) pairs, whole utterances in speech."""
    if name not in ("lexical", "syntactic", "story"):
        raise ValueError(f"name must be 'lexical', 'syntactic' or 'story', got {name!r}")
    good, bad = _items(data, f"{name}_good"), _items(data, f"{name}_bad")
    gs = [_ending(lm, w, u, "s", "s") + [EOS] for w, u in zip(good["words"], good["units"])]
    bs = [_ending(lm, w, u, "s", "s") + [EOS] for w, u in zip(bad["words"], bad["units"])]
    return pair_accuracy(lm, [[lm.vocab.speech_marker]] * len(gs), gs, bs)


def _examples(rng: np.random.Generator, pool: Sequence[int], k: int, example) -> list[int]:
    """In-context examples: ``k`` items drawn from ``pool``, each ``example(i)`` then ``<eos> <bos>``."""
    ids: list[int] = []
    for i in rng.choice(pool, size=k, replace=False).tolist():
        ids += [*example(i), EOS, BOS]
    return ids


def few_shot_asr(lm: SpiritLM, data: dict, shots: Sequence[int] = (0, 1, 2, 4), n_words: int = 1, n: int = 50,
                 seed: int = 0) -> dict[int, float]:
    """Character error rate of the text the model writes after held-out utterances of ``n_words`` words, given
    ``k`` examples ``[SPEECH] units [TEXT] transcript`` from the training voices first (in-context ASR), for
    each ``k`` in ``shots``. The examples have as many words as the query, and everything fits the trained
    window."""
    from slm_course.metrics import cer

    train, test = _items(data, "train"), _items(data, "test")
    pool = [i for i, w in enumerate(train["words"]) if len(w) == n_words]
    queries = [i for i, w in enumerate(test["words"]) if len(w) == n_words][:n]
    if not pool or not queries or max(shots) > len(pool):
        raise ValueError(f"no room for {max(shots)} examples of {n_words} words: there are {len(pool)} such training "
                         f"utterances and {len(queries)} test ones; try n_words=1 or fewer shots")
    out = {}
    for k in shots:
        rng = np.random.default_rng([seed, k])
        refs, hyps = [], []
        for q in queries:
            prompt = _examples(rng, pool, k, lambda i: [*lm.speech(_cat(train["units"][i])),
                                                        *lm.text(" ".join(train["words"][i]))])
            prompt += lm.speech(_cat(test["units"][q]))
            room = lm.config.context - len(prompt) - 2
            if room < 4 * n_words:
                raise ValueError(f"{k} examples of {n_words} words leave no room in the {lm.config.context}-token "
                                 "window for the answer: use fewer shots or shorter utterances")
            refs.append(" ".join(test["words"][q]))
            hyps.append(lm.continue_text(prompt, max_new_tokens=min(room, 8 * n_words + 4)))
        out[k] = round(cer(refs, hyps), 3)
    return out


def few_shot_tts(lm: SpiritLM, data: dict, corpus, shots: Sequence[int] = (0, 1, 2, 4), n: int = 50,
                 seed: int = 0) -> dict[int, float]:
    """In-context TTS: after ``k`` examples ``[TEXT] word [SPEECH] units`` from the training voices, the model
    writes units for a held-out single word; the course's unit vocoder (notebook 02; each unit at its mean
    duration) speaks them and the course's ASR (notebook 01) transcribes them. CER per ``k`` in ``shots``."""
    from slm_course.asr_recipe import load_asr
    from slm_course.metrics import cer
    from slm_course.speech_tokens import SpeechTokens
    from slm_course.ulm_recipe import load_tokenizer, mean_durations
    from slm_course.units_recipe import load_unit_vocoder

    train, test = _items(data, "train"), _items(data, "test")
    pool = [i for i, w in enumerate(train["words"]) if len(w) == 1]
    queries = [i for i, w in enumerate(test["words"]) if len(w) == 1][:n]
    if not queries or max(shots) > len(pool):
        raise ValueError(f"need single-word utterances: {len(pool)} training and {len(queries)} test ones, "
                         f"for up to {max(shots)} examples")
    units = load_tokenizer(UNITS)
    vocoder = load_unit_vocoder(units.ssl, progress=False)  # normalised units are the reference voice's SSL units
    durations = mean_durations(units, [corpus.wav(u) for u in corpus.split("train")[:200]])
    asr = load_asr(progress=False)
    out = {}
    for k in shots:
        rng = np.random.default_rng([seed, k])
        refs, wavs = [], []
        for q in queries:
            prompt = _examples(rng, pool, k, lambda i: [*lm.text(train["words"][i][0]),
                                                        *lm.speech(_cat(train["units"][i]))])
            prompt += lm.text(test["words"][q][0])
            room = lm.config.context - len(prompt) - 2
            made = lm.continue_units(prompt, max_new_units=max(1, min(room, 30)))
            wavs.append(vocoder.synthesize(SpeechTokens(made, units.frame_rate, durations[made])))
            refs.append(test["words"][q][0])
        out[k] = round(cer(refs, asr.transcribe(wavs)), 3)
    return out


def evaluate(lm: SpiritLM, data: dict) -> dict:
    """Every test of the chapter on one model: ``storycloze_*``, ``nextword_*``, ``swuggy``, ``sblimp``."""
    out = {f"storycloze_{s}": story(lm, data, s) for s in SETTINGS}
    out |= {f"nextword_{s}": next_word(lm, data, s) for s in SETTINGS}
    out |= {"swuggy": speech_pairs(lm, data, "lexical"), "sblimp": speech_pairs(lm, data, "syntactic")}
    return {k: round(v, 3) for k, v in out.items()}


def bench_spiritlm(seed: int = 0) -> dict:
    """The interleaved model, its no-interleaving ablation and a speech-only model (cached, or trained), every test,
    and the interleaved model's in-context ASR and TTS; what the warm start buys: the interleaved recipe from a
    random start (``_cold``; trained here if missing); and the expressive model (``_expressive``), with the
    style that continuations keep (``style_kept_*``, :func:`slm_course.expressive_recipe.style_kept`).

    ``seed`` > 0 retrains the models of the headline rows from that seed (the interleaved, no-interleaving
    and expressive models; the tokens, the text LM and the vocoders keep seed 0) and measures only them:
    no speech-only, cold-start or few-shot keys.
    """
    from slm_course.corpus import load_corpus
    from slm_course.ulm_recipe import load_tokenizer

    corpus = load_corpus(progress=False)
    data = spirit_data(corpus, load_tokenizer(UNITS))
    out: dict = {}
    runs = (("interleaved", True, ""), ("no_interleave", True, "_no_interleave"),
            ("speech_only", True, "_speech_only"), ("interleaved", False, "_cold"))
    for mix, warm, suffix in runs if not seed else runs[:2]:
        lm = load_spiritlm(SpiritConfig(mix=mix, warm=warm, seed=seed), corpus=corpus, progress=False)
        out |= {f"{k}{suffix}": v for k, v in evaluate(lm, data).items()}
        if not suffix:
            base = lm
            out |= {"params": lm.metrics["params"], "train_seconds": round(lm.metrics["train_seconds"], 1),
                    "steps": lm.config.steps}
            if not seed:
                out |= {"asr_cer_fewshot": few_shot_asr(lm, data), "tts_cer_fewshot": few_shot_tts(lm, data, corpus),
                        "shots": [0, 1, 2, 4]}
    # The expressive variant: the interleaved recipe on units + pitch + style, and the style its speech keeps
    from slm_course.expressive_recipe import load_expressive_tokens, style_kept

    expressive = load_spiritlm(replace(CONFIG, seed=seed), expressive=True, corpus=corpus, progress=False)
    expressive_data = spirit_data(corpus, load_expressive_tokens(corpus=corpus))
    out |= {f"{k}_expressive": v for k, v in evaluate(expressive, expressive_data).items()}
    kept = style_kept(expressive, expressive_data, base, data, corpus, samples=3)
    out |= {f"style_kept_{k}": v for k, v in kept.items() if k != "real"}
    out |= {"style_probe_real": kept["real"], "style_samples": 3}
    return out
