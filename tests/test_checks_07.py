"""Notebook 07's exercise checks accept the solutions and name the usual mistakes."""

import numpy as np
import pytest
import torch

from slm_course import checks
from slm_course.checks.quiz import _check_one


def random_spans(n_words, rng, lengths=(1, 3), high=1, first="random", alternate=True, cut=True):
    lo, hi = lengths
    modality = ("text" if rng.random() < 0.5 else "speech") if first == "random" else first
    spans, left = [], n_words
    while left > 0:
        n = int(rng.integers(lo, hi + high))
        spans.append((modality, min(left, n) if cut else n))
        left -= n
        if alternate:
            modality = "speech" if modality == "text" else "text"
        else:
            modality = "text" if rng.random() < 0.5 else "speech"
    return spans


def next_word_margin(lm, prefix, true_units, other_units):
    def mean_logp(units):
        prompt = [1, lm.vocab.text_marker, *lm.tokenizer.encode(prefix), lm.vocab.speech_marker]
        ids = torch.tensor(prompt + (lm.vocab.unit_offset + units).tolist())
        with torch.no_grad():
            logp = lm.model.logits(ids[None])[0].log_softmax(-1)
        return float(logp[len(prompt) - 1 : -1].gather(-1, ids[len(prompt) :, None]).mean())

    return mean_logp(true_units) - mean_logp(other_units)


def merge_pitch_units(units, durations, pitch, pitch_times, n_units, frame_rate, pitch_first=True, shift=True,
                      starts_at_end=False, digits=9):
    ends = torch.cumsum(durations, 0).double() / frame_rate
    starts = ends if starts_at_end else ends - durations.double() / frame_rate
    timed = [(round(t, digits), 0 if pitch_first else 2, k, (n_units if shift else 0) + p)
             for k, (p, t) in enumerate(zip(pitch, pitch_times))]
    timed += [(round(t, digits), 1, k, int(u)) for k, (u, t) in enumerate(zip(units.tolist(), starts.tolist()))]
    return [i for *_, i in sorted(timed)]


def test_solutions_pass(capsys):
    from slm_course import spiritlm

    checks.check_random_spans(random_spans)
    checks.check_random_spans(spiritlm.random_spans)
    checks.check_next_word_margin(next_word_margin)
    checks.check_merge_pitch_units(merge_pitch_units)
    assert capsys.readouterr().out.count("✓") == 4


def merge_float32(units, durations, pitch, pitch_times, n_units, frame_rate, digits=9):
    starts = (torch.cumsum(durations, 0) - durations).float() / frame_rate
    timed = [(round(t, digits), 0, k, n_units + p) for k, (p, t) in enumerate(zip(pitch, pitch_times))]
    timed += [(round(t, digits), 1, k, int(u)) for k, (u, t) in enumerate(zip(units.tolist(), starts.tolist()))]
    return [i for *_, i in sorted(timed)]


def merge_in_frames(units, durations, pitch, pitch_times, n_units, frame_rate):
    return merge_pitch_units(units, durations, pitch, pitch_times, n_units, 1.0)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: merge_pitch_units(*a, pitch_first=False), "at equal times the pitch token comes first"),
    (lambda *a: merge_pitch_units(*a, starts_at_end=True), "a unit's time is its start, not its end"),
    (lambda *a: merge_pitch_units(*a, shift=False), "n_units \\+ p"),
    (lambda *a: merge_pitch_units(*a, digits=17), "rounded to the nanosecond"),
    (merge_float32, "float64"),
    (lambda *a: merge_float32(*a, digits=17), "float64"),
    (merge_in_frames, "divide the units' frames by frame_rate"),
    (lambda u, d, p, t, n, r: u.tolist() + [n + x for x in p], "not merged by time"),
    (lambda u, *a: [int(x) for x in u], "drops nothing"),
    (lambda *a: sorted(merge_pitch_units(*a)), "keep the units in their order"),
    (lambda *a: None, "returned None: end your function with return"),
    (lambda *a: [merge_pitch_units(*a)], "return one flat list of ids"),
])
def test_merge_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_merge_pitch_units(wrong)


def global_rng(n_words, rng, lengths=(1, 3)):
    return random_spans(n_words, np.random.default_rng(), lengths)


def fixed_lengths(n_words, rng, lengths=(1, 3)):
    return random_spans(n_words, rng, (1, 3))


@pytest.mark.parametrize("wrong, message", [
    (lambda n, rng, lengths=(1, 3): None, "returned None"),
    (lambda n, rng, lengths=(1, 3): "text", "return a list of \\(modality, n\\) pairs"),
    (lambda *a: [[m, n, 0] for m, n in random_spans(*a)], "one \\(modality, n\\) pair"),
    (lambda *a: [(m.upper(), n) for m, n in random_spans(*a)], "'text' or 'speech'"),
    (lambda *a: random_spans(*a, high=0), "excludes b; draw rng.integers\\(lo, hi \\+ 1\\)"),
    (lambda *a: random_spans(*a, first="text"), "always starts with text"),
    (lambda *a: random_spans(*a, alternate=False), "the modalities alternate"),
    (lambda *a: random_spans(*a, cut=False), "takes only the words left"),
    (lambda *a: random_spans(*a)[:-1], "keep drawing spans until every word is in one"),
    (global_rng, "draw from rng, the generator passed in"),
    (lambda n, rng, lengths=(1, 3): random_spans(n, np.random.default_rng(0), lengths), "for every one of 200 seeds"),
    (fixed_lengths, "use the argument, not fixed numbers"),
    (lambda n, rng, lengths=(1, 3): random_spans(n, rng, (lengths[0], lengths[0] + 1)), "no span but the last ever"),
    (lambda n, rng, lengths=(1, 3): [(m, 0) for m, _ in random_spans(n, rng, lengths)] + [("text", n)],
     "at least one word"),
])
def test_random_spans_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_random_spans(wrong)


def test_random_spans_lengths_drawn_unevenly_are_named():
    def mostly_short(n_words, rng, lengths=(1, 3)):
        lo, hi = lengths
        modality, spans, left = ("text" if rng.random() < 0.5 else "speech"), [], n_words
        while left:
            n = min(left, hi if lo < hi and rng.random() < 0.05 else lo + (lo < hi and rng.random() < 0.05))
            spans.append((modality, n))
            left -= n
            modality = "speech" if modality == "text" else "text"
        return spans

    with pytest.raises(AssertionError, match="with equal odds from 1 to 3"):
        checks.check_random_spans(mostly_short)


def test_margin_mistakes_are_named():
    with pytest.raises(AssertionError, match="wrong way round"):
        checks.check_next_word_margin(lambda lm, p, a, b: -next_word_margin(lm, p, a, b))

    def summed(lm, prefix, a, b):
        p = [*lm.text(prefix), lm.vocab.speech_marker]
        s, _ = lm.score([p, p], [lm.vocab.units(a).tolist(), lm.vocab.units(b).tolist()])
        return float(s[0] - s[1])

    with pytest.raises(AssertionError, match="summed scores"):
        checks.check_next_word_margin(summed)

    def with_marker(lm, prefix, a, b):
        p = lm.text(prefix)
        s, n = lm.score([p, p], [lm.speech(a), lm.speech(b)])
        return float(s[0] / n[0] - s[1] / n[1])

    with pytest.raises(AssertionError, match="marker scored"):
        checks.check_next_word_margin(with_marker)


def test_margin_eos_and_shift_mistakes_are_named():
    def scored(lm, prefix, a, b, eos=False, shift=1, bos=True, switch=True):
        def mean_logp(units):
            prompt = [1] * bos + [lm.vocab.text_marker, *lm.tokenizer.encode(prefix)] + [lm.vocab.speech_marker] * switch
            cont = (lm.vocab.unit_offset + units).tolist() + ([2] if eos else [])
            ids = torch.tensor(prompt + cont)
            with torch.no_grad():
                logp = lm.model.logits(ids[None])[0].log_softmax(-1)
            n = len(cont)
            return float(logp[len(ids) - n - shift : len(ids) - shift].gather(-1, ids[-n:, None]).mean())

        return mean_logp(a) - mean_logp(b)

    with pytest.raises(AssertionError, match="<eos> scored"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, eos=True))
    with pytest.raises(AssertionError, match="no <bos>"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, bos=False))
    with pytest.raises(AssertionError, match="no \\[SPEECH\\] marker"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, switch=False))
    with pytest.raises(AssertionError, match="one position before"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, shift=0))
    checks.check_next_word_margin(scored)


def test_margin_zero_softmax_and_none_are_named():
    with pytest.raises(AssertionError, match="your margin is 0"):
        checks.check_next_word_margin(lambda *a: 0.0)
    with pytest.raises(AssertionError, match="returned None"):
        checks.check_next_word_margin(lambda *a: None)

    def probabilities(lm, prefix, a, b):
        def mean_p(units):
            prompt = [1, *lm.text(prefix), lm.vocab.speech_marker]
            ids = torch.tensor(prompt + lm.vocab.units(units).tolist())
            with torch.no_grad():
                p = lm.model.logits(ids[None])[0].softmax(-1)
            return float(p[len(prompt) - 1 : -1].gather(-1, ids[len(prompt) :, None]).mean())

        return mean_p(a) - mean_p(b)

    with pytest.raises(AssertionError, match="you averaged probabilities \\(softmax\\)"):
        checks.check_next_word_margin(probabilities)


def test_prompt_length_answer():
    s2t = {1: 0.60, 2: 0.70, 3: 0.79, "all": 0.83}
    answer = ("With one spoken word the model is right on 0.60 of the pairs, and more words help: 0.83 with the "
              "whole sentence. The word before the last often decides the next one, and the corpus' sentences "
              "agree across several words, a subject with its verb and a topic with its objects.")
    checks.check_prompt_length_answer(answer, 0.23, s2t)
    checks.check_prompt_length_answer(answer, s2t["all"] - s2t[1], s2t)
    for gain, message in ((-0.23, "wrong way round"), (23, "share of pairs"), (0.1, "read the S->T column"), (0.28, "not T->T"),
                          (None, "gain is not set"), ("0.2x", "one number")):
        with pytest.raises(AssertionError, match=message):
            checks.check_prompt_length_answer(answer, gain, s2t)
    with pytest.raises(AssertionError, match="run the cell above"):
        checks.check_prompt_length_answer(answer, 0.23, [0.6, 0.83])
    # filler that names the ideas, and an answer without them, fail (the explanation check is the course's)
    with pytest.raises(AssertionError, match="different words"):
        checks.check_prompt_length_answer("more topic words " * 12, 0.23, s2t)
    with pytest.raises(AssertionError, match="does not name"):
        checks.check_prompt_length_answer("The accuracy changes with the length of the spoken prompt because the "
                                          "model hears a different amount of the sentence each time, and that "
                                          "changes what it can say about the next one in the end.", 0.23, s2t)


def test_quiz_answers():
    assert 3 <= len(checks.ch07.QUIZ) <= 5
    right = {1: 39, 2: "b", 3: "c", 4: "a", 5: "b"}
    for n, q in enumerate(checks.ch07.QUIZ, start=1):
        assert _check_one(n, q, right[n])[0], (n, q.answer)
