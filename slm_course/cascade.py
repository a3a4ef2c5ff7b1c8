"""The cascade baseline: speech -> ASR -> text LM -> TTS -> speech, and what its text throws away (notebook 01).

The cascade is the strongest simple spoken-language system (the survey calls it "a strong baseline
approach"): each stage is a mature model. Its weakness is the narrow waist between them: plain
text. Whatever the words do not say (who spoke, in what style, whether it was asked as a
question) is gone before the LM sees it. `what_text_loses` measures that with two probes on the
same held-out utterances: one reads the cascade's transcript, one listens to the audio.

Usage::

    cascade = Cascade(load_asr(), load_text_lm())
    result = cascade(wav)            # transcript, reply text, reply audio, timings
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from slm_course.audio import SR, check_wav, resample
from slm_course.tts import Espeak


@dataclass
class CascadeResult:
    transcript: str  # what the ASR heard
    reply: str  # what the LM said next
    wav: torch.Tensor  # the reply, spoken by eSpeak, at 16 kHz
    seconds: dict = field(default_factory=dict)  # wall time of each stage, and time to first audio

    @property
    def latency_s(self) -> float:
        """Seconds from the end of the input speech to the first sample of the reply."""
        return self.seconds["first_audio"]


class Cascade:
    """ASR -> text LM -> TTS. `cascade(wav)` answers spoken input with spoken output."""

    def __init__(self, asr, text_lm, voice: str = "en-us+m3", pitch: int = 40, rate: int = 165) -> None:
        self.asr, self.text_lm = asr, text_lm
        self.tts = Espeak()
        self.voice, self.pitch, self.rate = voice, pitch, rate

    def __call__(self, wav: torch.Tensor, sr: int = SR, max_new_tokens: int = 60) -> CascadeResult:
        wav = check_wav(wav, sr, expected_sr=SR)
        t0 = time.perf_counter()
        transcript = self.asr.transcribe([wav], sr)[0]
        t1 = time.perf_counter()
        # The transcript has no punctuation, so the LM cannot tell whether a sentence has ended; after a
        # complete one it often predicts <eos> at once (an empty reply). The trailing space says that a
        # word follows: the LM continues the text, with a next sentence if the transcript was a whole one.
        reply = self.text_lm.complete(transcript.strip() + " ", max_new_tokens=max_new_tokens).strip() \
            if transcript.strip() else ""
        t2 = time.perf_counter()
        spoken = reply if reply.strip() else "sorry"
        syn = self.tts.synth(spoken, voice=self.voice, pitch=self.pitch, rate=self.rate)
        out = resample(torch.from_numpy(syn.wav.astype(np.float32) / 32768.0), syn.sr, SR)
        t3 = time.perf_counter()
        # eSpeak renders the whole reply at once here; a streaming TTS would start sooner, so the
        # time to first audio is bounded by ASR + LM + TTS of the full reply.
        return CascadeResult(transcript, reply, out, {"asr": t1 - t0, "lm": t2 - t1, "tts": t3 - t2,
                                                      "first_audio": t3 - t0})


def story_prompt(corpus, utt) -> torch.Tensor:
    """The first sentence of a two-sentence story utterance, cut where the second one starts: ``(T,)`` at 16 kHz.

    The first sentence leaves the LM a sentence to add on the same topic (the corpus' stories keep to
    one), so the cascade's latency includes a reply of a typical length.
    """
    if utt.kind != "story" or "." not in utt.text.rstrip(".?"):
        raise ValueError(f"need a two-sentence story utterance (kind 'story'), got kind {utt.kind!r}: {utt.text!r}")
    n_first = len(utt.text.split(".")[0].split())  # words of the first sentence
    cut = utt.word_spans[n_first].start  # seconds: where the second sentence's first word starts
    return corpus.wav(utt)[: int(cut * SR)]


def text_probe_accuracy(train_texts: list[str], y_train: list, test_texts: list[str], y_test: list) -> float:
    """A bag-of-words (unigrams + bigrams) logistic-regression probe on text."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(set(y_train)) < 2:
        raise ValueError("the training labels hold a single class; a probe needs at least two.")
    probe = make_pipeline(CountVectorizer(ngram_range=(1, 2), token_pattern=r"[a-z']+"),
                          LogisticRegression(max_iter=2000))
    probe.fit(train_texts, list(y_train))
    return float((probe.predict(test_texts) == np.asarray(y_test)).mean())


def what_text_loses(corpus, asr, n_train: int = 1200, seed: int = 0, progress: bool = False) -> dict:
    """Predict gender, style and statement-vs-question from the cascade's text and from the audio.

    Probes train on training speakers and are tested on held-out speakers; the audio probe sees each
    utterance's features and their deviation from the speaker's mean (`probes.speaker_normalise`). The question test uses
    only statements and the same statements said as questions (`declarative_question`), so the
    words cannot give it away; wh- and yes/no questions would. Returns accuracies and chance levels
    (NaN for a label whose test set is empty or whose training labels hold one class).
    """
    from slm_course.probes import features_of, probe_accuracy, speaker_normalise

    rng = np.random.default_rng(seed)
    train_all = corpus.split("train")
    train = [train_all[i] for i in sorted(rng.choice(len(train_all), min(n_train, len(train_all)), replace=False))]
    test = corpus.split("test")
    wav_train, wav_test = [corpus.wav(u) for u in train], [corpus.wav(u) for u in test]
    text_train, text_test = asr.transcribe(wav_train), asr.transcribe(wav_test)
    x_train = speaker_normalise(features_of(wav_train, progress=progress), [u.speaker for u in train])
    x_test = speaker_normalise(features_of(wav_test, progress=progress), [u.speaker for u in test])
    out: dict = {}
    for label in ("gender", "style", "question"):
        if label == "question":
            keep_tr = [i for i, u in enumerate(train) if u.kind in ("statement", "declarative_question")]
            keep_te = [i for i, u in enumerate(test) if u.kind in ("statement", "declarative_question")]
        else:
            keep_tr, keep_te = list(range(len(train))), list(range(len(test)))
        y_tr = [getattr(train[i], label) for i in keep_tr]
        y_te = [getattr(test[i], label) for i in keep_te]
        out[f"{label}_test_utterances"] = len(keep_te)
        if not y_te or len(set(y_tr)) < 2:  # a corpus too small for this test: say so with NaN
            out[f"{label}_acc_text"] = out[f"{label}_acc_audio"] = out[f"{label}_chance"] = float("nan")
            continue
        out[f"{label}_acc_text"] = text_probe_accuracy([text_train[i] for i in keep_tr], y_tr,
                                                       [text_test[i] for i in keep_te], y_te)
        out[f"{label}_acc_audio"] = probe_accuracy(x_train[keep_tr], y_tr, x_test[keep_te], y_te)
        values, counts = np.unique(np.asarray(y_te, dtype=str), return_counts=True)
        out[f"{label}_chance"] = float(counts.max() / counts.sum())  # always guessing the commonest label
    return out


def bench_cascade() -> dict:
    """The cascade of notebook 01: text-vs-audio probes on held-out speakers, and latency."""
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.textlm import load_text_lm

    corpus = load_corpus(progress=False)
    asr, lm = load_asr(progress=False), load_text_lm(progress=False)
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in what_text_loses(corpus, asr).items()}
    cascade = Cascade(asr, lm)
    prompts = [story_prompt(corpus, u) for u in corpus.split("test") if u.kind == "story"][:20]
    cascade(prompts[0])  # warm-up
    runs = [cascade(wav) for wav in prompts]
    result["latency_s"] = round(float(np.median([r.latency_s for r in runs])), 3)
    result["replied"] = round(float(np.mean([bool(r.reply.strip()) for r in runs])), 3)  # the LM said something
    return result
