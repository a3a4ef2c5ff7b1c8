"""How the course fits, trains and measures its expressive SpiRit-LM toy (notebook 07).

The tokens and the vocoder are :mod:`slm_course.expressive`; the LM is the chapter's
:class:`~slm_course.spiritlm.SpiritLM`, trained by :func:`slm_course.spiritlm_recipe.load_spiritlm`
with ``expressive=True`` on the same mix, its "units" now the merged unit + pitch + style stream. This
file holds:

- :func:`load_expressive_tokens`: pitch bins and style clusters fitted on the training speech (cached);
- :func:`expressive_vocoder`: the source-filter vocoder (the unit vocoder + the pitch tokens);
- :func:`style_probe`: a linear probe that names an utterance's speaking style from its prosody
  alone (pitch level, spread, melody, ending and speaking rate; no spectrum, so that a vocoder's
  timbre does not decide it), trained on the training speakers' real audio;
- :func:`style_kept`: STSP-like style preservation. Held-out prompts in each style are continued in
  speech; the probe names the style of the continuation's *audio*, and the score is how often it
  is the prompt's. For the expressive LM, the base LM and the cascade of notebook 01.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from slm_course.corpus import corpus_version
from slm_course.expressive import ExpressiveTokens, ExpressiveVocoder
from slm_course.speech_tokens import tokenizer_key

__all__ = ["N_BINS", "N_STYLE", "PROSODY", "RECIPE", "load_expressive_tokens", "style_prompts", "style_table",
           "expressive_vocoder", "second_half", "style_kept", "style_probe"]

RECIPE = 1  # bump when the recipe changes in a way the cache names do not show
N_BINS, N_STYLE = 16, 8  # pitch bins and style clusters (SpiRit-LM: 64 and 100, for far more speech)
N_FIT = 1200  # training utterances the bins and clusters are fitted on
PROSODY = list(range(80, 95))  # probes.utterance_features: pitch and rate (no spectrum, flux or length)


def load_expressive_tokens(*, corpus=None, rebuild: bool = False, progress: bool = True) -> ExpressiveTokens:
    """The notebook-07 expressive tokenizer: notebook 05's normalised units + 16 pitch bins + 8 styles (cached;
    fitted in about 20 s)."""
    from slm_course.runtime import cached
    from slm_course.ulm_recipe import load_tokenizer

    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    units = load_tokenizer("norm")

    def build() -> dict:
        wavs = [corpus.wav(u) for u in corpus.split("train")[:N_FIT]]
        t = ExpressiveTokens.fit(units, wavs, N_BINS, N_STYLE)
        return {"pitch_edges": t.pitch_edges, "style_mean": t.style_mean, "style_std": t.style_std,
                "style_centroids": t.style_centroids}

    name = f"expressive-tokens-r{RECIPE}-c{corpus_version(corpus)}-{tokenizer_key(units)}-p{N_BINS}-s{N_STYLE}"
    r = cached(name, build, rebuild=rebuild)
    return ExpressiveTokens(units, r["pitch_edges"], r["style_mean"], r["style_std"], r["style_centroids"])


def expressive_vocoder(tokens: ExpressiveTokens | None = None, corpus=None) -> ExpressiveVocoder:
    """The source-filter vocoder of the expressive tokens: the normalised units' unit vocoder (notebook 02, cached)
    for the filter, the pitch tokens for the source. Nothing more is trained."""
    from slm_course.units_recipe import load_unit_vocoder

    tokens = tokens or load_expressive_tokens(corpus=corpus)
    return ExpressiveVocoder(load_unit_vocoder(tokens.units.ssl, progress=False), tokens)


def style_table(tokens: ExpressiveTokens, corpus=None, n: int = 600) -> torch.Tensor:
    """The duration model of the expressive tokens (:func:`~slm_course.expressive.style_durations`), from ``n``
    training utterances (cached)."""
    from slm_course.expressive import style_durations
    from slm_course.runtime import cached

    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    utts = corpus.split("train")[:n]
    name = f"expressive-durations-r{RECIPE}-c{corpus_version(corpus)}-{tokens.cache_key}-n{n}"
    return cached(name, lambda: {"table": style_durations([tokens.encode(corpus.wav(u)) for u in utts], tokens)})[
        "table"]


def second_half(corpus, utt) -> torch.Tensor:
    """The audio of ``utt`` after its first ``len(words) // 2`` words: what a continuation of that prompt replaces."""
    from slm_course.audio import SR

    return corpus.wav(utt)[int(utt.word_spans[len(utt.words) // 2 - 1].end * SR) :]


def style_probe(corpus, n: int = 900, min_words: int = 4):
    """A linear probe naming the speaking style from prosody alone (:data:`PROSODY`), speaker-normalised as in
    notebook 00 (:func:`~slm_course.probes.speaker_normalise`: a style is heard against a voice's usual pitch
    and pace), trained on the second halves (:func:`second_half`) of ``n`` training utterances of ``min_words``
    words or more, the part a continuation stands for (a sentence's end is lower than its whole).
    Their features are cached."""
    from slm_course.probes import features_of, make_probe, speaker_normalise
    from slm_course.runtime import cached

    train = [u for u in corpus.split("train") if len(u.words) >= min_words]
    idx = np.random.default_rng(0).choice(len(train), min(n, len(train)), replace=False)
    name = f"style-probe-halves-r{RECIPE}-c{corpus_version(corpus)}-n{n}-w{min_words}"
    X = cached(name, lambda: {"X": torch.from_numpy(features_of([second_half(corpus, train[i]) for i in idx]))})["X"]
    X = speaker_normalise(X.numpy()[:, PROSODY], [train[i].speaker for i in idx])
    return make_probe().fit(X, [train[i].style for i in idx])


def style_prompts(corpus, per_cell: int = 5, min_words: int = 4) -> list[int]:
    """Indices into the test split: for each held-out speaker and style, its first ``per_cell`` utterances of
    ``min_words`` words or more (so that every speaker's mean, which the probe subtracts, mixes all styles alike)."""
    from slm_course.corpus.voices import STYLES

    test = corpus.split("test")
    out = []
    for speaker in sorted({u.speaker for u in test}):
        for style in STYLES:
            cell = [i for i, u in enumerate(test) if u.speaker == speaker and u.style == style.name
                    and len(u.words) >= min_words][:per_cell]
            if len(cell) < per_cell:
                raise ValueError(f"{speaker} has {len(cell)} {style.name} test utterances of {min_words}+ words; "
                                 f"ask for per_cell <= {len(cell)}")
            out += cell
    return out


def style_kept(expressive_lm, expressive_data: dict, base_lm, base_data: dict, corpus, per_cell: int = 5,
               samples: int = 1, max_new: int = 60, temperature: float = 0.8, seed: int = 0,
               progress: bool = False) -> dict:
    """STSP-like style preservation on held-out speakers, for three systems that continue the same speech prompts.

    Each prompt is the first half of the words of a held-out utterance (``per_cell`` per held-out speaker
    and style: :func:`style_prompts`). ``expressive``: ``expressive_lm`` (on :func:`load_expressive_tokens`; ``expressive_data`` is
    :func:`~slm_course.spiritlm_recipe.spirit_data` of those tokens) writes ``max_new`` more tokens,
    which the source-filter vocoder speaks; ``base``: ``base_lm`` (on the units of ``base_data``) writes
    ``max_new`` units, which the unit vocoder speaks (each LM samples ``samples`` continuations per prompt at
    ``temperature``); ``cascade``: notebook 01's ASR -> text LM -> TTS. :func:`style_probe` names the
    style of each continuation's audio, its features normalised per prompt speaker within each system (a
    system's voice is heard against its own average, as a speaker's is): the score is how often it is
    the prompt's (chance 1/3).
    ``real``: the probe on the speaker's own continuation (the utterance's second half), the topline;
    ``resynthesis``: the same part of the utterance's own tokens through the source-filter vocoder
    (what the tokens and the vocoder can carry at best). ``carried``: the control for what the prompt
    alone passes on: the expressive continuation's units without its own pitch and style tokens, so
    that the prompt's last pitch and style hold to the end.
    """
    from tqdm.auto import tqdm

    from slm_course.asr_recipe import load_asr
    from slm_course.audio import SR
    from slm_course.cascade import Cascade
    from slm_course.expressive import with_durations
    from slm_course.speech_tokens import SpeechTokens
    from slm_course.textlm import load_text_lm
    from slm_course.ulm_recipe import mean_durations
    from slm_course.units_recipe import load_unit_vocoder

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1 (continuations per prompt), got {samples!r}")
    probe = style_probe(corpus)
    test = corpus.split("test")
    which = style_prompts(corpus, per_cell)
    speakers = [test[i].speaker for i in which]
    labels = np.array([test[i].style for i in which])
    tokens = load_expressive_tokens(corpus=corpus)
    voc = expressive_vocoder(tokens, corpus)
    table = style_table(tokens, corpus)
    units = tokens.units
    if base_lm.vocab.n_units != units.vocab_size or expressive_lm.vocab.n_units != tokens.vocab_size:
        raise ValueError("expressive_lm must read the expressive tokens (load_spiritlm(expressive=True)) and base_lm "
                         "their units (load_spiritlm())")
    unit_voc = load_unit_vocoder(units.ssl, progress=False)
    durations = mean_durations(units, [corpus.wav(u) for u in corpus.split("train")[:200]])
    rounds = {"expressive": samples, "base": samples, "cascade": 1, "resynthesis": 1, "real": 1, "carried": samples}
    wavs: dict[str, list] = {k: [[] for _ in range(n)] for k, n in rounds.items()}  # per round, one per prompt
    systems = {"expressive": (expressive_lm, expressive_data), "base": (base_lm, base_data)}
    cascade = Cascade(load_asr(progress=False), load_text_lm(progress=False))
    for j, i in enumerate(tqdm(which, desc="style kept", disable=not progress)):
        u = test[i]
        half = len(u.words) // 2
        for (name, (lm, data)), k in itertools.product(systems.items(), range(samples)):
            prompt = torch.cat([torch.as_tensor(w).long() for w in data["test"]["units"][i][:half]])
            made = lm.continue_units(lm.speech(prompt), max_new_units=max_new, temperature=temperature,
                                     seed=seed + samples * j + k)
            # Speak prompt + continuation, then keep the continuation: it goes on at the prompt's last pitch
            # and style (and the vocoder hears its context), as the continuation of a recording would
            if name == "expressive":
                for key, cont in (("expressive", made), ("carried", made[made < tokens.n_units])):
                    spoken = with_durations(torch.cat([prompt, cont]), table, tokens)
                    start = int(spoken.durations[: len(prompt)].sum()) * SR // int(units.frame_rate)
                    wavs[key][k].append(voc.synthesize(spoken)[start:])
            else:
                both = torch.cat([prompt, made])
                spoken = SpeechTokens(both, units.frame_rate, durations[both])
                start = int(spoken.durations[: len(prompt)].sum()) * SR // int(units.frame_rate)
                wavs[name][k].append(unit_voc.synthesize(spoken)[start:])
        wav, cut = corpus.wav(u), int(u.word_spans[half - 1].end * SR)
        wavs["cascade"][0].append(cascade(wav[:cut]).wav)
        wavs["resynthesis"][0].append(voc.synthesize(tokens.encode(wav))[cut:])
        wavs["real"][0].append(wav[cut:])
    return {name: round(float(np.mean([(_predict_styles(probe, r, speakers) == labels).mean() for r in runs])), 3)
            for name, runs in wavs.items()}


def _predict_styles(probe, wavs, speakers) -> np.ndarray:
    """The probe's style for each waveform, its features normalised per speaker; "" (never right) for a
    continuation under 0.25 s, which says too little to be heard."""
    from slm_course.audio import SR
    from slm_course.probes import features_of, speaker_normalise

    ok = [k for k, w in enumerate(wavs) if len(w) >= SR // 4]
    out = np.full(len(wavs), "", dtype=object)
    if ok:
        X = speaker_normalise(features_of([wavs[k] for k in ok])[:, PROSODY], [speakers[k] for k in ok])
        out[ok] = probe.predict(X)
    return out
