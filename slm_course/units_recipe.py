"""How the course builds its units (notebook 02): k-means, the tiny HuBERT, the unit vocoder, the cache, the benchmark.

The models are in :mod:`slm_course.units` (tokenizers, vocoder) and :mod:`slm_course.hubert`. Each
loader follows the course's one signature: it loads from the cache, or builds with the same recipe
and seed and caches. :func:`evaluate_units` gathers every number of notebook 02
(:mod:`slm_course.unit_metrics`), and ``slm-course bench units`` reports them on held-out speakers.

>>> units = load_ssl_units()                               # doctest: +SKIP
>>> units.vocoder = load_unit_vocoder(units)               # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from slm_course import audio
from slm_course.corpus import corpus_version
from slm_course.hubert import HubertConfig, TinyHubert
from slm_course.runtime import cached, digest, recipe_config, seed_everything
from slm_course.speech_tokens import deduplicate
from slm_course.train import History, TrainConfig, model_record, restore, train
from slm_course.unit_metrics import AbxItem, abx, abx_items, frame_phones, unit_quality
from slm_course.units import (
    N_MELS,
    FeatureNorm,
    KMeansUnits,
    MelUnits,
    SslUnits,
    UnitVocoder,
    VocoderConfig,
    fit_kmeans,
    kmeans_assign,
    log_magnitude,
    mel_features,
    mel_frames,
    per_utterance_normalise,
    ssl_frames,
)

if TYPE_CHECKING:
    from slm_course.corpus import Corpus, Utterance

__all__ = [
    "RECIPE",
    "VOCODER_CONFIG",
    "bench_units",
    "evaluate_units",
    "fsdd_units",
    "load_hubert",
    "load_mel_units",
    "load_ssl_units",
    "load_unit_vocoder",
    "resynthesis_cer",
    "train_hubert",
    "train_mel_units",
    "train_unit_vocoder",
]

SPREAD_SEEDS = (0, 1, 2)  # the seeds of bench_units' spread
RECIPE = 1  # bump when the recipe changes in a way the configs do not show: cached models are rebuilt
VOCODER_CONFIG = VocoderConfig()  # the course's unit vocoder


# ---------------------------------------------------------------------------------------------
# The unit vocoder's training
# ---------------------------------------------------------------------------------------------


def train_unit_vocoder(
    tokenizer: KMeansUnits, utterances_wavs: Sequence[torch.Tensor], config: VocoderConfig = VOCODER_CONFIG,
    progress: bool = True,
) -> tuple[UnitVocoder, History]:
    """Train a :class:`UnitVocoder` to turn ``tokenizer`` 's frame-level units back into log spectrograms."""
    pairs = []
    for wav in utterances_wavs:
        units = tokenizer.frame_units(wav)  # (T,)
        target = log_magnitude(audio.check_wav(wav))  # (~2T, 257)
        n = min(len(units), target.shape[0] // 2)
        if n >= 10:
            pairs.append((units[:n], target[: 2 * n]))
    if not pairs:
        raise ValueError("no utterances long enough (0.2 s) to train the vocoder on")
    c = config
    gen = torch.Generator().manual_seed(c.seed)

    def batch(step: int) -> dict[str, torch.Tensor]:
        units, targets = [], []
        for k in torch.randint(len(pairs), (c.batch_size,), generator=gen).tolist():
            u, t = pairs[k]
            start = int(torch.randint(max(1, len(u) - c.crop + 1), (1,), generator=gen))
            u = u[start : start + c.crop]
            t = t[2 * start : 2 * (start + len(u))]
            pad = c.crop - len(u)
            units.append(F.pad(u, (0, pad)))
            targets.append(F.pad(t, (0, 0, 0, 2 * pad), value=math.log(1e-5)))
        return {"units": torch.stack(units), "target": torch.stack(targets)}

    seed_everything(c.seed)
    model = UnitVocoder(tokenizer.vocab_size, c)
    history = train(model, batch, TrainConfig(steps=c.steps, lr=c.lr, warmup_steps=50, eval_every=0, seed=c.seed,
                                              progress=progress, desc="vocoder"))
    return model.eval(), history


# ---------------------------------------------------------------------------------------------
# Recipes and the cache
# ---------------------------------------------------------------------------------------------


def _corpus_tag(corpus: Corpus | None) -> str:
    """Cache-name suffix: empty for the default corpus, a hash of its content for another one."""
    return "" if corpus is None else f"-{corpus.manifest['sha256'][:10]}"


def train_mel_units(
    corpus: Corpus, k: int = 100, seed: int = 0, per_utterance: bool = False
) -> MelUnits:
    """Log-mel units: normalisation statistics over the training split, then k-means with K=``k``.

    ``per_utterance=True`` normalises every utterance by its own statistics instead (for the
    comparison in notebook 02); the tokenizer it returns still applies the corpus statistics.
    """
    feats = [mel_features(corpus.wav(u)) for u in corpus.split("train")]
    norm = FeatureNorm.fit(feats)
    normed = [per_utterance_normalise(f) for f in feats] if per_utterance else [norm(f) for f in feats]
    return MelUnits(norm, fit_kmeans(torch.cat(normed), k, seed))


def load_mel_units(k: int = 100, seed: int = 0, *, corpus: Corpus | None = None, rebuild: bool = False,
                   progress: bool = True) -> MelUnits:
    """The course's log-mel units (K=``k``), from the cache or built (k-means, no training run) with the same recipe and seed."""

    def build() -> dict:
        from slm_course.corpus import load_corpus

        units = train_mel_units(corpus or load_corpus(progress=progress), k, seed)
        return {"mean": units.norm.mean, "std": units.norm.std, "centroids": units.centroids}

    art = cached(f"units-mel-r{RECIPE}-c{corpus_version(corpus)}-k{k}-s{seed}{_corpus_tag(corpus)}", build, rebuild=rebuild)
    return MelUnits(FeatureNorm(art["mean"], art["std"]), art["centroids"])


def train_hubert(
    corpus: Corpus, targets: MelUnits, config: HubertConfig | None = None, progress: bool = True
) -> tuple[TinyHubert, History]:
    """Train a :class:`TinyHubert` on the corpus' training split to predict ``targets`` ' units (default config: the recipe's)."""
    config = recipe_config(config, HubertConfig())
    if targets.vocab_size != config.n_targets:
        raise ValueError(f"config.n_targets={config.n_targets} but the target units have K={targets.vocab_size}")
    M = config.n_mels
    norm = FeatureNorm(targets.norm.mean[M : 2 * M], targets.norm.std[M : 2 * M])  # the centre frame's statistics
    feats, labels = [], []
    for u in corpus.split("train"):
        wav = corpus.wav(u)
        feats.append(norm(mel_frames(wav)))
        labels.append(targets.frame_units(wav))
    stream, label_stream = torch.cat(feats), torch.cat(labels)  # (N, M), (N,)
    gen = torch.Generator().manual_seed(config.seed)
    N, L = len(stream), config.crop

    def batch(step: int) -> dict[str, torch.Tensor]:
        starts = torch.randint(N - L, (config.batch_size,), generator=gen)
        idx = starts[:, None] + torch.arange(L)[None, :]  # (B, L)
        return {"feats": stream[idx], "labels": label_stream[idx]}

    seed_everything(config.seed)
    model = TinyHubert(config)
    history = train(model, batch, TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps,
                                              eval_every=0, seed=config.seed, progress=progress, desc="hubert"))
    return model.eval(), history


def load_hubert(
    config: HubertConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False, progress: bool = True
) -> TinyHubert:
    """The tiny HuBERT (:mod:`slm_course.hubert`), from the cache or trained (a short run) on log-mel units."""
    config = recipe_config(config, HubertConfig())

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        targets = load_mel_units(config.n_targets, config.seed, corpus=corpus)
        model, history = train_hubert(data, targets, config, progress=progress)
        return model_record(model, config, history)

    name = f"hubert-r{RECIPE}-c{corpus_version(corpus)}-{digest(config)}{_corpus_tag(corpus)}"
    record = cached(name, build, rebuild=rebuild)
    return restore(TinyHubert(record["config"]), record)


def load_ssl_units(
    layer: int | None = None, k: int = 100, seed: int = 0, *, config: HubertConfig | None = None,
    corpus: Corpus | None = None, rebuild: bool = False, progress: bool = True,
) -> SslUnits:
    """Self-supervised units: k-means (K=``k``, seeded by ``seed``) on one layer of :func:`load_hubert` (default:
    ``unit_layer``) trained with ``config`` (default: the course's); cached."""

    config = recipe_config(config, HubertConfig())
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= config.n_layers):
        raise ValueError(f"layer must be an int in 0..{config.n_layers} (0 = the input stage), got {layer!r}")
    layer = config.unit_layer if layer is None else layer
    model = load_hubert(config, progress=progress, corpus=corpus)
    mel = load_mel_units(config.n_targets, config.seed, corpus=corpus)
    norm = FeatureNorm(mel.norm.mean[N_MELS : 2 * N_MELS], mel.norm.std[N_MELS : 2 * N_MELS])  # the centre frame

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        feats = torch.cat([ssl_frames(model, norm, data.wav(u), layer) for u in data.split("train")[::4]])
        return {"centroids": fit_kmeans(feats, k, seed)}

    name = f"units-ssl-r{RECIPE}-c{corpus_version(corpus)}-{digest(config)}-l{layer}-k{k}-s{seed}{_corpus_tag(corpus)}"
    art = cached(name, build, rebuild=rebuild)
    return SslUnits(model, norm, layer, art["centroids"])


def load_unit_vocoder(
    tokenizer: KMeansUnits, config: VocoderConfig | None = None, *, corpus: Corpus | None = None,
    rebuild: bool = False, progress: bool = True,
) -> UnitVocoder:
    """A :class:`UnitVocoder` for ``tokenizer`` 's units, from the cache or trained (a short run).

    The cache name holds a hash of the tokenizer's centroids, so each tokenizer gets its own vocoder.
    """
    if not isinstance(tokenizer, KMeansUnits):
        raise TypeError(f"tokenizer must be MelUnits or SslUnits, got {type(tokenizer).__name__}")
    config = recipe_config(config, VOCODER_CONFIG)

    def build() -> dict:
        from slm_course.corpus import load_corpus

        data = corpus or load_corpus(progress=False)
        wavs = [data.wav(u) for u in data.split("train")]
        model, history = train_unit_vocoder(tokenizer, wavs, config, progress=progress)
        return model_record(model, config, history)

    units_key = digest(tokenizer.centroids.numpy().round(4))
    name = f"vocoder-r{RECIPE}-{tokenizer.name}-{units_key}-{digest(config)}{_corpus_tag(corpus)}"
    record = cached(name, build, rebuild=rebuild)
    return restore(UnitVocoder(tokenizer.vocab_size, record["config"]), record)


# ---------------------------------------------------------------------------------------------
# Evaluation and the benchmark
# ---------------------------------------------------------------------------------------------


def evaluate_units(
    tokenizer: KMeansUnits, utterances: Sequence[Utterance], wavs: Sequence[torch.Tensor],
    items: Sequence[AbxItem] | None = None,
) -> dict[str, float]:
    """Unit quality of ``tokenizer`` on ``utterances`` (their waveforms ``wavs``), every number of notebook 02.

    ``pnmi``, ``phone_purity``, ``cluster_purity`` (frame-level units against phones); ABX within and
    across speakers on three views of the same frames: ``abx_*`` on the units (each frame replaced by
    its unit's centroid: what the unit id carries), ``abx_*_onehot`` on one-hot units (every two
    different units equally far apart) and ``abx_*_dense`` on the frames before quantisation; and
    ``bitrate_bps`` of the de-duplicated units.
    """
    phones, units, bits = [], [], [0, 0]
    views: dict[str, dict[str, torch.Tensor]] = {"": {}, "_onehot": {}, "_dense": {}}
    for u, wav in zip(utterances, wavs):
        dense = tokenizer.features(wav)  # (T, D)
        fu = kmeans_assign(dense, tokenizer.centroids)  # (T,)
        phones += frame_phones(u, len(fu))
        units.append(fu)
        views[""][u.id] = tokenizer.centroids[fu]
        views["_onehot"][u.id] = F.one_hot(fu, tokenizer.vocab_size).float()
        views["_dense"][u.id] = dense
        bits[0] += len(deduplicate(fu)[0])
        bits[1] += len(fu)
    out = unit_quality(phones, torch.cat(units))
    items = abx_items(utterances) if items is None else items
    for suffix, frames in views.items():
        out[f"abx_within{suffix}"] = abx(items, frames, across=False)
        out[f"abx_across{suffix}"] = abx(items, frames, across=True)
    out["bitrate_bps"] = bits[0] * math.log2(tokenizer.vocab_size) / (bits[1] / tokenizer.frame_rate)
    return out


def fsdd_units(tokenizer: KMeansUnits, fsdd: Any = None, takes: int = 10, trials: int = 600,
               seed: int = 0) -> dict[str, float]:
    """Units on human voices: FSDD's first ``takes`` takes of each digit by each speaker (none of them trained on).

    ``digit_abx_across``: :func:`~slm_course.unit_metrics.word_abx` on whole digits, each frame as its
    unit's centroid (chance 0.5); ``speaker_probe``: how well a bag of units names which of FSDD's
    speakers said a digit (5-fold; chance one over the number of speakers). Raises
    :class:`slm_course.fsdd.FsddMissing` (which says how to get FSDD) when it is not here.
    """
    from slm_course.fsdd import load_fsdd
    from slm_course.probes import bag_probe
    from slm_course.unit_metrics import word_abx

    fsdd = fsdd or load_fsdd()
    recs = [r for r in fsdd.recordings if r.take < takes]
    units = [kmeans_assign(tokenizer.features(fsdd.wav(r)), tokenizer.centroids) for r in recs]
    speakers = [r.speaker for r in recs]
    return {
        "digit_abx_across": word_abx([tokenizer.centroids[u] for u in units], [r.digit for r in recs], speakers,
                                     trials=trials, seed=seed),
        "speaker_probe": bag_probe(units, speakers, tokenizer.vocab_size),
    }


def resynthesis_cer(tokenizer: KMeansUnits, vocoder: UnitVocoder, utterances: Sequence[Utterance],
                    wavs: Sequence[torch.Tensor], asr: Any) -> tuple[float, float]:
    """ASR CER of resynthesised speech (units -> vocoder -> ASR) and of the original speech."""
    from slm_course.metrics import cer

    refs = [u.text for u in utterances]
    resynth = [vocoder.synthesize(tokenizer.encode(w)) for w in wavs]
    return cer(refs, asr.transcribe(resynth)), cer(refs, asr.transcribe(list(wavs)))


def bench_units(n_test: int = 120, seed: int = 0) -> dict:
    """Log-mel and self-supervised units (K=100) on 120 utterances of the held-out speakers (as notebook 02).

    ``abx_*`` are on the units (each frame as its unit's centroid); ``abx_across_onehot_*`` and
    ``abx_across_dense_*`` are the one-hot and pre-quantisation views; ``resynth_cer`` is the ASR CER of
    the SSL units resynthesised by their :class:`UnitVocoder` (60 utterances), ``original_cer`` that of
    the originals. Models come from the cache, or are trained with the notebook's recipe and seed.
    ``seed`` redraws the whole pipeline: the log-mel k-means (HuBERT's targets), HuBERT, its k-means and
    the vocoder; the recogniser that scores the resynthesis keeps seed 0.
    ``speaker_probe_*``: how well a bag of units names which held-out speaker talks (chance 0.25).
    ``abx_across_{ssl,mel}_seeds`` (with the default ``seed``): ABX across speakers on units for seeds
    ``SPREAD_SEEDS``, each the whole pipeline from that seed (HuBERT and the k-means trained here if missing),
    on every test utterance (``abx_seeds_utterances``): on 120 the sampling of ABX trials alone moves the
    error by about 0.02, as much as a seed does. ``fsdd_*`` (where FSDD is here): :func:`fsdd_units` on human
    voices, for both tokenizers, and the digit ABX over the seeds.
    """
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.probes import speaker_probe

    corpus = load_corpus(progress=False)
    test = corpus.split("test")[:n_test]
    wavs = [corpus.wav(u) for u in test]
    items = abx_items(test)
    mel = load_mel_units(seed=seed)
    ssl = load_ssl_units(seed=seed, config=replace(HubertConfig(), seed=seed), progress=False)
    m = evaluate_units(mel, test, wavs, items)
    s = evaluate_units(ssl, test, wavs, items)
    vocoder = load_unit_vocoder(ssl, replace(VOCODER_CONFIG, seed=seed), progress=False)
    resynth, original = resynthesis_cer(ssl, vocoder, test[:60], wavs[:60], load_asr(progress=False))
    r = lambda x: round(float(x), 4)  # noqa: E731
    spread: dict = {}
    if not seed:
        every = corpus.split("test")
        every_wavs, every_items = [corpus.wav(u) for u in every], abx_items(every)

        def across(tok: KMeansUnits) -> float:
            return r(evaluate_units(tok, every, every_wavs, every_items)["abx_across"])

        spread["abx_across_ssl_seeds"] = [
            across(load_ssl_units(seed=k, config=replace(HubertConfig(), seed=k), progress=False)) for k in SPREAD_SEEDS]
        spread["abx_across_mel_seeds"] = [across(load_mel_units(seed=k)) for k in SPREAD_SEEDS]
        spread["abx_seeds_utterances"] = len(every)
    from slm_course.fsdd import FsddMissing, load_fsdd

    try:  # human voices, none of them trained on
        fsdd = load_fsdd()
        for name, tok in (("mel", mel), ("ssl", ssl)):
            spread |= {f"fsdd_{k}_{name}": r(v) for k, v in fsdd_units(tok, fsdd).items()}
        if not seed:
            spread["fsdd_digit_abx_across_ssl_seeds"] = [spread["fsdd_digit_abx_across_ssl"]] + [
                r(fsdd_units(load_ssl_units(seed=k, config=replace(HubertConfig(), seed=k), progress=False),
                             fsdd)["digit_abx_across"]) for k in SPREAD_SEEDS[1:]]
            spread["fsdd_digit_abx_across_mel_seeds"] = [spread["fsdd_digit_abx_across_mel"]] + [
                r(fsdd_units(load_mel_units(seed=k), fsdd)["digit_abx_across"]) for k in SPREAD_SEEDS[1:]]
    except FsddMissing:
        pass  # the FSDD keys are absent; the synthetic-corpus ones do not need it
    return {
        "pnmi_mel": r(m["pnmi"]), "pnmi_ssl": r(s["pnmi"]),
        "abx_within_mel": r(m["abx_within"]), "abx_within_ssl": r(s["abx_within"]),
        "abx_across_mel": r(m["abx_across"]), "abx_across_ssl": r(s["abx_across"]),
        "abx_across_onehot_mel": r(m["abx_across_onehot"]), "abx_across_onehot_ssl": r(s["abx_across_onehot"]),
        "abx_across_dense_mel": r(m["abx_across_dense"]), "abx_across_dense_ssl": r(s["abx_across_dense"]),
        "bitrate_bps": r(s["bitrate_bps"]), "bitrate_mel_bps": r(m["bitrate_bps"]),
        "resynth_cer": r(resynth), "original_cer": r(original),
        "speaker_probe_mel": r(speaker_probe(mel, corpus)), "speaker_probe_ssl": r(speaker_probe(ssl, corpus)),
        **spread,
    }
