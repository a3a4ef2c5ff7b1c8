"""The cascade: it answers speech with speech, and its text loses what only the audio carries."""

from __future__ import annotations

import pytest
import torch

from slm_course.cascade import Cascade, text_probe_accuracy, what_text_loses
from slm_course.textlm import TextLMConfig, train_text_lm


class OracleAsr:
    """A perfect recogniser (the corpus' own words): the best case for the text route."""

    def __init__(self, corpus):
        self.by_len = {u.length: " ".join(u.words) for u in corpus.utterances}

    def transcribe(self, wavs, sr=16000):
        return [self.by_len[len(w)] for w in wavs]


def test_text_probe_reads_words():
    texts = ["the cow is old", "the cat is new"] * 10
    labels = ["farm", "home"] * 10
    assert text_probe_accuracy(texts, labels, texts, labels) == 1.0
    with pytest.raises(ValueError, match="single class"):
        text_probe_accuracy(texts, ["a"] * 20, texts, labels)


def test_even_a_perfect_transcript_loses_gender_and_intonation(small_corpus):
    out = what_text_loses(small_corpus, OracleAsr(small_corpus), n_train=200)
    assert out["gender_acc_audio"] >= 0.85
    assert out["gender_acc_audio"] - out["gender_acc_text"] >= 0.2
    for label in ("gender", "style"):
        assert 0 <= out[f"{label}_acc_text"] <= 1 and 0 < out[f"{label}_chance"] <= 1
    # the small corpus' held-out speakers say few statements: the question test reports NaN, not a crash
    assert out["question_test_utterances"] >= 0


def test_cascade_answers_with_speech(small_corpus):
    lm, _ = train_text_lm(TextLMConfig(n_train_sentences=300, n_val_sentences=20, context=48, batch_size=8,
                                       d_model=32, n_layers=1, n_heads=2, steps=40), progress=False)
    cascade = Cascade(OracleAsr(small_corpus), lm)
    u = small_corpus.split("train")[0]
    result = cascade(small_corpus.wav(u))
    assert result.transcript == " ".join(u.words)
    assert result.wav.ndim == 1 and result.wav.numel() > 1600  # at least 0.1 s of speech
    assert set(result.seconds) == {"asr", "lm", "tts", "first_audio"} and result.latency_s > 0
    with pytest.raises(ValueError, match="resample"):
        cascade(small_corpus.wav(u), sr=8000)
    with pytest.raises(ValueError, match="NaN"):
        cascade(torch.full((1000,), float("nan")))


def test_story_prompt_is_the_first_sentence(small_corpus):
    from slm_course.cascade import story_prompt

    story = next(u for u in small_corpus.utterances if u.kind == "story")
    wav = story_prompt(small_corpus, story)
    n_first = len(story.text.split(".")[0].split())
    assert wav.ndim == 1 and 0 < len(wav) < len(small_corpus.wav(story))
    assert abs(len(wav) / 16000 - story.word_spans[n_first].start) < 1e-3  # cut where the second sentence starts
    assert len(wav) / 16000 >= story.word_spans[n_first - 1].end - 1e-3  # the first sentence is whole
    other = next(u for u in small_corpus.utterances if u.kind != "story")
    with pytest.raises(ValueError, match="story"):
        story_prompt(small_corpus, other)


def test_cascade_asks_the_lm_for_what_follows(small_corpus):
    """The transcript has no punctuation: the cascade marks a word boundary so the LM continues, not ends."""

    class EndsUnlessToldToGoOn:  # like the trained LM after a complete sentence: <eos> at once, unless a space follows
        prompts: list[str] = []

        def complete(self, prompt, max_new_tokens=60):
            self.prompts.append(prompt)
            return " the pig is pink " if prompt.endswith(" ") else ""

    lm = EndsUnlessToldToGoOn()
    u = small_corpus.split("train")[0]
    result = Cascade(OracleAsr(small_corpus), lm)(small_corpus.wav(u))
    assert lm.prompts == [" ".join(u.words) + " "]
    assert result.reply == "the pig is pink"  # stripped: what eSpeak says
