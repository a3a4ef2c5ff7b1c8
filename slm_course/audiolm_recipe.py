"""How the course trains, caches and evaluates AudioLM (notebook 06).

The model is :mod:`slm_course.audiolm`: the semantic stage is notebook 05's unit LM
(:func:`slm_course.ulm_recipe.load_unit_lm`), and this file trains the acoustic stages on the corpus'
semantic units and codec codes (:func:`build_data`, :func:`train_stage`, :func:`load_stages`),
assembles the whole model (:func:`load_audiolm`), and measures whether a continuation keeps the
prompt's voice (:func:`speaker_continuation`): ``slm-course bench audiolm`` and ``bench audiolm-ssl``.

>>> alm = load_audiolm()                                          # doctest: +SKIP
>>> wav_more = alm.continue_speech(wav[:16000], seconds=2.0)      # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slm_course import audio
from slm_course.audiolm import (
    ACOUSTIC_RATE,
    SEMANTIC_RATE,
    AcousticStage,
    AudioLM,
    AudioLMConfig,
    StageConfig,
    align_frames,
    collate,
    duration_counts,
    frame_tokens,
    make_stage,
)
from slm_course.corpus import corpus_version
from slm_course.runtime import recipe_config
from slm_course.speech_tokens import tokenizer_key
from slm_course.train import model_record, restore

if TYPE_CHECKING:
    from slm_course.codec import Codec
    from slm_course.corpus import Corpus, Utterance
    from slm_course.speech_tokens import SpeechTokenizer

__all__ = [
    "CONFIG",
    "RECIPE",
    "StageBatches",
    "bench_audiolm",
    "bench_audiolm_ssl",
    "build_data",
    "continuation_text",
    "load_audiolm",
    "load_stages",
    "perturb_voice",
    "perturbed_data",
    "prompt_frames",
    "speaker_continuation",
    "train_stage",
    "voice_features",
]

RECIPE = 1  # bump when the recipe changes in a way the configs do not show: cached models are rebuilt
CONFIG = AudioLMConfig()  # the course's AudioLM


# ---------------------------------------------------------------------------------------------
# Training an acoustic stage
# ---------------------------------------------------------------------------------------------


class StageBatches:
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
        return collate(self.stage, codes, conds)


def train_stage(
    codes: Sequence[torch.Tensor], conds: Sequence[torch.Tensor], levels: tuple[int, int], codebook_size: int,
    cond_sizes: tuple[int, ...], config: StageConfig | None = None, valid: tuple[Sequence, Sequence] | None = None,
    progress: bool = True, desc: str = "acoustic stage",
) -> tuple[AcousticStage, Any]:
    """Train an acoustic stage (one loop: :func:`slm_course.train.train`) on ``codes[i]`` ``(n_levels, T_i)``.

    ``codes[i]`` holds at least ``levels[1]`` levels; ``conds[i]`` is ``(C, T_i)``, aligned frame by
    frame. ``valid``: ``(codes, conds)`` of held-out utterances for ``metrics["val_loss"]``.
    """
    from slm_course.train import TrainConfig, train

    config = StageConfig() if config is None else config
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
    history = train(stage.model, StageBatches(stage, codes, conds),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc=desc))
    stage.model.eval()
    stage.metrics = {"train_seconds": round(time.perf_counter() - t0, 1), "params": stage.model.num_params(),
                     "train_loss": float(np.mean(history.loss[-50:]))}
    if valid is not None:
        stage.metrics["val_loss"] = stage.loss([c[lo:hi] for c in valid[0]], valid[1])
    return stage, history


# ---------------------------------------------------------------------------------------------
# Data, training and the cache
# ---------------------------------------------------------------------------------------------


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
        from slm_course.speech_tokens import expand
        from slm_course.ulm_recipe import corpus_tokens

        # the corpus' units, encoded once for the unit LMs and SpiRit-LM (cached), are these semantic tokens
        given = corpus_tokens(corpus, tokenizer) if set(splits) <= {"train", "valid", "test"} else None
        out = {}
        for split in splits:
            utts = corpus.split(split)
            sem, codes = [], []
            for u in tqdm(utts, desc=f"tokens {split}", disable=not progress, leave=False):
                wav = corpus.wav(u)
                sem.append((frame_tokens(tokenizer, wav) if given is None else
                            expand(given["ids"][u.id].long(), given["durations"][u.id].long())).to(torch.int16))
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
    from slm_course.codec_recipe import load_codec
    from slm_course.runtime import cached
    from slm_course.ulm_recipe import load_tokenizer

    config = recipe_config(config, CONFIG)
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
    """The notebook-06 AudioLM, from the cache or trained now with the same recipe and seed.

    The semantic stage is notebook 05's unit LM over ``config.semantic_units`` (:func:`slm_course.ulm_recipe.load_unit_lm`);
    the coarse and fine stages are trained on the training split (:func:`load_stages`).
    """
    from slm_course.corpus import load_corpus
    from slm_course.ulm_recipe import load_unit_lm

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


def continuation_text(utt: Utterance, frames: int) -> str:
    """The words said after the first ``frames`` acoustic frames (a prompt's cut, :func:`prompt_frames`)."""
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
    291 LibriSpeech speakers (most likely test-clean's 40 and train-clean-100's 251). That is a harder test for
    a toy: the classifier itself often errs on the real codec tokens, and a small acoustic stage
    drifts from a voice it never heard towards the training voices it knows: ``training_voice_share_*`` is the
    share of continuations that the classifier over all 20 speakers names as one of the 16 training voices.

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
        named = probe.predict(x)
        out[f"speaker_acc_{name}_all_speakers"] = float((named == speakers).mean())
        out[f"training_voice_share_{name}"] = float((~np.isin(named, held_out)).mean())
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
        texts = [continuation_text(u, cut) for u, cut in zip(prompts, cuts)]
        out["continuation_cer"] = cer(texts, asr.transcribe(wavs_of["acoustic_prompt_gt_semantic"]))
        out["continuation_cer_semantic_only"] = cer(texts, asr.transcribe(wavs_of["semantic_only_gt_semantic"]))
        out["continuation_cer_real_codes"] = cer(texts, asr.transcribe(wavs_of["real_codes"]))
        out["continuation_cer_original"] = cer(texts, asr.transcribe(
            [corpus.wav(u)[cut * alm.codec.config.hop :] for u, cut in zip(prompts, cuts)]))
    out["wavs"] = wavs_of
    out["utterances"] = [u.id for u in prompts]
    return out


def bench_audiolm(n_per_speaker: int = 15, semantic_units: str = "norm") -> dict:
    """AudioLM (notebook-06 recipe): does the continuation keep a held-out speaker's voice?

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
    from slm_course.asr_recipe import load_asr
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
    """:func:`bench_audiolm` with notebook 02's HuBERT units as semantic tokens: they carry the voice (notebook 06)."""
    return bench_audiolm(semantic_units="ssl")
