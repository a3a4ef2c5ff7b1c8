"""Notebook 07's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.checks.quiz import _check_one


def interleave(words, units, spans, vocab, encode_text):
    ids, i = [1], 0
    for modality, n in spans:
        if modality == "text":
            ids += [vocab.text_marker, *encode_text(" ".join(words[i : i + n]))]
        else:
            ids += [vocab.speech_marker] + [vocab.unit_offset + int(u) for w in units[i : i + n] for u in w]
        i += n
    return torch.tensor(ids + [2])


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
    checks.check_interleave(interleave)
    checks.check_next_word_margin(next_word_margin)
    checks.check_merge_pitch_units(merge_pitch_units)
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: merge_pitch_units(*a, pitch_first=False), "pitch token before a unit at the same time"),
    (lambda *a: merge_pitch_units(*a, starts_at_end=True), "starts at the sum of the durations before it"),
    (lambda *a: merge_pitch_units(*a, shift=False), "n_units \\+ p"),
    (lambda *a: merge_pitch_units(*a, digits=17), "rounded to the nanosecond"),
    (lambda u, *a: [int(x) for x in u], "drops nothing"),
    (lambda *a: sorted(merge_pitch_units(*a)), "keep the units in their order"),
])
def test_merge_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_merge_pitch_units(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda *a: interleave(*a)[:-1], "ends with <eos>"),
    (lambda *a: interleave(*a)[1:], "starts with <bos>"),
    (lambda w, u, s, v, e: interleave([x + " " for x in w], u, s, v, e), "walk the spans"),
    # a marker for every word: each word made a span of its own
    (lambda w, u, s, v, e: interleave(w, u, [(kind, 1) for kind, n in s for _ in range(n)], v, e), "one marker per span"),
])
def test_interleave_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_interleave(wrong)


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
    def scored(lm, prefix, a, b, eos=False, shift=1):
        def mean_logp(units):
            prompt = [1, lm.vocab.text_marker, *lm.tokenizer.encode(prefix), lm.vocab.speech_marker]
            cont = (lm.vocab.unit_offset + units).tolist() + ([2] if eos else [])
            ids = torch.tensor(prompt + cont)
            with torch.no_grad():
                logp = lm.model.logits(ids[None])[0].log_softmax(-1)
            n = len(cont)
            return float(logp[len(ids) - n - shift : len(ids) - shift].gather(-1, ids[-n:, None]).mean())

        return mean_logp(a) - mean_logp(b)

    with pytest.raises(AssertionError, match="<eos> scored"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, eos=True))
    with pytest.raises(AssertionError, match="one position before"):
        checks.check_next_word_margin(lambda lm, p, a, b: scored(lm, p, a, b, shift=0))
    checks.check_next_word_margin(scored)


def test_quiz_answers():
    assert 3 <= len(checks.ch07.QUIZ) <= 5
    right = {1: 39, 2: "b", 3: "c", 4: "a", 5: "b"}
    for n, q in enumerate(checks.ch07.QUIZ, start=1):
        assert _check_one(n, q, right[n])[0], (n, q.answer)


def test_merge_in_float32_is_told_to_use_float64():
    def float32(units, durations, pitch, pitch_times, n_units, frame_rate):
        starts = (torch.cumsum(durations, 0) - durations).float() / frame_rate
        timed = [(t, 0, k, n_units + p) for k, (p, t) in enumerate(zip(pitch, pitch_times))]
        timed += [(float(t), 1, k, int(u)) for k, (u, t) in enumerate(zip(units.tolist(), starts.tolist()))]
        return [i for *_, i in sorted(timed)]

    with pytest.raises(AssertionError, match="float64"):
        checks.check_merge_pitch_units(float32)
