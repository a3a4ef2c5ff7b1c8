"""The synthetic corpus: grammar, voices, plan, build determinism, storage checks, alignments."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from slm_course.audio import log_mel
from slm_course.corpus import EVAL_SETS, SPEAKERS, STYLES, Corpus, CorpusError, Grammar, grammar, load_corpus
from slm_course.corpus.builder import plan
from slm_course.corpus.grammar import NUMBERS, TOPICS, words_of
from slm_course.corpus.voices import espeak_settings

# --- grammar ---------------------------------------------------------------------------------


def test_vocabulary_is_a_few_hundred_words_and_nonwords_are_not_words():
    g = Grammar()
    vocab = set(g.vocabulary())
    assert 150 <= len(vocab) <= 400
    rng = random.Random(0)
    n_pairs = 0
    for w in g.content_words():
        for nw in g.nonwords(w, rng):
            n_pairs += 1
            assert nw not in vocab and nw != w
            assert nw not in grammar._UNSUITABLE
            assert nw[-2:] == w[-2:]  # the rime is kept: only the onset changes
            # Wuggy-like: the onset keeps its shape (one consonant for one, a cluster for a cluster)
            (onset_nw, rime_nw), (onset_w, rime_w) = grammar.split_onset(nw), grammar.split_onset(w)
            assert rime_nw == rime_w and grammar.onset_sounds(onset_nw) == grammar.onset_sounds(onset_w) > 0
    assert n_pairs >= 250  # almost every content word gets two non-words


def test_onset_sounds_counts_sounds_not_letters():
    assert [grammar.onset_sounds(o) for o in ("", "b", "sh", "kn", "wr", "bl", "st", "thr")] == [0, 1, 1, 1, 1, 2, 2, 2]
    assert grammar.onset_sounds("q") == 0  # "qu" words are not swapped
    g = Grammar()
    assert g.nonwords("old", random.Random(0)) == []  # no onset, nothing to swap
    assert all(grammar.onset_sounds(nw[:2]) == 2 for nw in g.nonwords("black", random.Random(0)))


def test_statements_agree_in_number():
    g = Grammar()
    singular = {v[0] for t in TOPICS.values() for v in t["verbs"]}
    plural = {v[1] for t in TOPICS.values() for v in t["verbs"]}
    agents_pl = {a[1] for t in TOPICS.values() for a in t["agents"]}
    rng = random.Random(1)
    for _ in range(200):
        w = words_of(g.statement(rng)[0])
        subject_plural = w[1] in agents_pl if w[0] == "the" else False
        verb = w[2] if w[0] == "the" else w[1]
        assert verb in (plural if subject_plural else singular), w


def test_sample_text_is_reproducible_and_arithmetic_is_right():
    g = Grammar()
    assert g.sample_text(50, seed=4) == g.sample_text(50, seed=4)
    assert g.sample_text(50, seed=4) != g.sample_text(50, seed=5)
    rng = random.Random(0)
    for _ in range(100):
        text, _ = g.arithmetic(rng)
        w = words_of(text)
        if w[0] != "what":
            a, op, b, _, c = (NUMBERS.index(x) if x in NUMBERS else x for x in w)
            assert (a + b if op == "plus" else a - b) == c


def test_story_endings_often_name_the_first_sentences_object():
    # The story set's good endings and the training stories: about half of the endings name the first
    # sentence's object again ("lisa throws the crab. the crab is fast."), as the grammar's docstring says.
    g = Grammar()
    rng = random.Random(0)
    named = 0
    for _ in range(400):
        text, topic = g.story(rng)
        first, second = text.split(". ", 1)
        obj = words_of(first)[-1]  # a clause ends in its object
        ending = words_of(second)
        named += ending[:3] in (["the", obj, "is"], ["the", obj, "are"])
        assert topic is not None
    assert 0.35 <= named / 400 <= 0.65, named


def test_translate_maps_every_topic_slot_and_back():
    sea = "the sailors throw the wet ships. the captain pulls the rope?"
    kitchen = grammar.translate(sea, "sea", "kitchen")
    assert kitchen == "the bakers drop the hot cups. the cook washes the plate?"
    assert grammar.translate(kitchen, "kitchen", "sea") == sea
    assert grammar.translate("anna counts the red cows.", "farm", "park") == "anna paints the red trees."


def _topic_words(topic: str) -> set[str]:
    t = TOPICS[topic]
    return {w for key in ("agents", "objects", "verbs") for pair in t[key] for w in pair} | set(t["adjectives"])


def test_story_endings_differ_only_in_their_topic():
    # A story pair's unfitting ending is the fitting one told of another topic: the same form and word
    # count, its topic words all from the other topic, and a copy ending names an object the story never did.
    g = Grammar()
    rng = random.Random(1)
    copies = 0
    for _ in range(300):
        topic, other = rng.sample(g.topics, 2)
        first = g.clause(rng, topic) + "."
        good, bad = g.story_endings(rng, topic, other, first)
        assert good != bad and len(good.split()) == len(bad.split()) and good[-1] == bad[-1] == "."
        assert grammar.translate(good, topic, other) == bad
        assert not set(words_of(bad)) & _topic_words(topic) and not set(words_of(good)) & _topic_words(other)
        if words_of(good)[1] == words_of(first)[-1]:  # "the ship is wet." after "... the ship."
            copies += 1
            assert words_of(bad)[1] not in words_of(first)
    assert 0.3 <= copies / 300 <= 0.6, copies
    with pytest.raises(ValueError, match="another topic"):
        g.story_endings(rng, "sea", "sea", "the captain pulls the rope.")


# --- voices and plan -------------------------------------------------------------------------


def test_speakers_and_styles():
    assert len(SPEAKERS) >= 16 and len({s.voice for s in SPEAKERS}) == len(SPEAKERS)
    held = [s for s in SPEAKERS if s.held_out]
    assert len(held) >= 4 and {s.gender for s in held} == {"male", "female"}
    assert len(STYLES) >= 3
    for s in SPEAKERS:
        for st in STYLES:
            cfg = espeak_settings(s, st)
            assert 0 <= cfg["pitch"] <= 100 and 80 <= cfg["rate"] <= 450
    # gender is set by pitch: every female speaker is higher than every male one
    assert min(s.pitch for s in SPEAKERS if s.gender == "female") > max(s.pitch for s in SPEAKERS if s.gender == "male")


def test_plan_splits_and_pairs():
    items = plan(400, seed=0)
    held = {s.name for s in SPEAKERS if s.held_out}
    for it in items:
        if it["split"] in ("train", "valid"):
            assert it["speaker"] not in held
        else:
            assert all(p[1] in held for p in it["parts"]), it
    for name in EVAL_SETS:
        members = [it for it in items if it["split"] == f"eval_{name}"]
        pairs = {}
        for it in members:
            pairs.setdefault(it["pair"], []).append(it)
        assert len(pairs) >= 300
        for good, bad in (sorted(p, key=lambda it: not it["good"]) for p in pairs.values()):
            assert good["good"] and not bad["good"]
            if name == "acoustic":
                assert good["text"] == bad["text"] and good["parts"][0] == bad["parts"][0]
                assert good["parts"][1] != bad["parts"][1]  # the switch
                assert good["parts"][1][1:] == good["parts"][0][1:]  # the consistent one does not switch
            else:
                assert (good["speaker"], good["style"]) == (bad["speaker"], bad["style"])
                assert good["text"] != bad["text"]
            if name == "story":  # the same first sentence; endings of the same form (see story_endings)
                (g_first, g_end), (b_first, b_end) = (it["text"].split(". ", 1) for it in (good, bad))
                assert g_first == b_first and len(g_end.split()) == len(b_end.split())
    assert plan(400, seed=0) == plan(400, seed=0)
    with pytest.raises(ValueError, match="at least 10"):
        plan(3)


# --- the built corpus ------------------------------------------------------------------------


def test_small_corpus_fields(small_corpus: Corpus):
    c = small_corpus
    assert c.sr == 16000
    assert len(c.split("train")) + len(c.split("valid")) + len(c.split("test")) == 60
    for name in EVAL_SETS:
        assert len(c.pairs(name)) == 8
        assert c.pairs(f"eval_{name}") == c.pairs(name)  # the split's name works too
    with pytest.raises(ValueError, match="lexical, syntactic"):
        c.pairs("phonetic")
    for u in c.utterances:
        wav = c.wav(u)
        assert wav.dtype == torch.float32 and wav.numel() == u.length
        assert abs(u.duration - wav.numel() / c.sr) < 1e-3
        assert (wav == 0).float().mean() < 0.01, "the noise floor should leave no runs of exact zeros"
        assert u.question == u.text.endswith("?")
        assert u.gender == c.gender_of(u.speaker)
        if u.split != "eval_lexical":
            assert [s.label for s in u.word_spans] == list(u.words)
        starts = [s.start for s in u.word_spans]
        assert starts == sorted(starts)
        assert all(0 <= s.start < s.end <= u.duration + 1e-3 for s in u.word_spans + u.phone_spans)
        assert u.phonemes.split() == [p.label for p in u.phone_spans]
    with pytest.raises(ValueError, match="unknown split"):
        c.split("training")


def test_word_spans_cut_out_the_right_word(small_corpus: Corpus):
    """A word cut out at its span is closer (DTW on log-mel) to that word said alone than to other words."""
    from slm_course.corpus.voices import SPEAKER_BY_NAME, STYLE_BY_NAME
    from slm_course.tts import Espeak

    tts = Espeak()
    c = small_corpus

    def feats(wav, sr):
        m = log_mel(wav, sr, n_mels=40)
        return (m - m.mean(dim=1, keepdim=True)).T  # (frames, 40)

    def dtw(a, b):
        d = torch.cdist(a, b)
        acc = torch.full((len(a) + 1, len(b) + 1), float("inf"))
        acc[0, 0] = 0
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                acc[i, j] = d[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
        return float(acc[-1, -1]) / (len(a) + len(b))

    hits = trials = 0
    utts = [u for u in c.split("train") if len(u.words) >= 4][:4]
    for u in utts:
        wav = c.wav(u)
        settings = espeak_settings(SPEAKER_BY_NAME[u.speaker], STYLE_BY_NAME[u.style])
        candidates = sorted({w for w in u.words if len(w) > 3})
        refs = {}
        for w in candidates:
            syn = tts.synth(w, **settings)
            x = torch.from_numpy(syn.wav.astype(np.float32) / 32768)
            from slm_course.audio import add_noise_floor, resample

            refs[w] = feats(add_noise_floor(resample(x, syn.sr, 16000)), 16000)
        for span in u.word_spans:
            if span.label not in refs or len(candidates) < 2:
                continue
            cut = wav[int(span.start * c.sr) : int(span.end * c.sr)]
            f = feats(cut, c.sr)
            best = min(refs, key=lambda w: dtw(f, refs[w]))
            hits += best == span.label
            trials += 1
    assert trials >= 6
    assert hits / trials >= 0.8, f"only {hits}/{trials} word spans matched their word"


def test_corrupted_corpus_is_detected_and_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    c = load_corpus(n_utterances=12, pairs_per_set=1, progress=False)
    audio = c.root / "audio.npy"
    data = audio.read_bytes()
    audio.write_bytes(data[: len(data) // 2])  # truncated, as by an interrupted copy
    with pytest.raises(CorpusError, match="corrupted"):
        Corpus(c.root)
    c2 = load_corpus(n_utterances=12, pairs_per_set=1, progress=False)
    assert "damaged" in capsys.readouterr().out
    assert c2.manifest["sha256"] == c.manifest["sha256"]
    with pytest.raises(CorpusError, match="no manifest"):
        Corpus(tmp_path / "nowhere")


def test_build_is_deterministic_across_fresh_processes(tmp_path):
    outs = []
    for name in ("a", "b"):
        cmd = [sys.executable, "-m", "slm_course.cli", "corpus", "build", "--out", str(tmp_path / name),
               "--utterances", "20", "--pairs-per-set", "2", "--seed", "7", "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        outs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outs[0]["sha256"] == outs[1]["sha256"]
    for key in ("utterances", "speakers", "styles", "hours", "seconds", "sha256"):
        assert key in outs[0]
    assert outs[0]["utterances"] == 20 + 2 * 2 * len(EVAL_SETS)
    assert outs[0]["speakers"] >= 16 and outs[0]["styles"] >= 3


def test_every_voice_is_reproducible_in_a_fresh_process():
    """eSpeak variants with breath noise differ between processes; the corpus must use none of them."""
    code = (
        "import hashlib\nfrom slm_course.tts import Espeak\nfrom slm_course.corpus import SPEAKERS, STYLES\n"
        "from slm_course.corpus.voices import espeak_settings\nt = Espeak()\n"
        "print(hashlib.sha256(b''.join(t.synth('the cooks cut the heavy pot?', **espeak_settings(s, STYLES[1])).wav"
        ".tobytes() for s in SPEAKERS)).hexdigest())"
    )
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1
