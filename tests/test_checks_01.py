"""The checks of notebook 01's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from slm_course import checks
from slm_course.asr import BLANK
from slm_course.metrics import edit_distance


def _greedy(lp: torch.Tensor) -> list[int]:
    best = lp.argmax(dim=-1).tolist()
    merged = [s for t, s in enumerate(best) if t == 0 or s != best[t - 1]]
    return [s for s in merged if s != BLANK]


def test_ctc_check_accepts_a_correct_decoder(capsys):
    checks.check_ctc_greedy_decode(_greedy)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda lp: [s for s in lp.argmax(-1).tolist() if s != BLANK], "merge repeated"),  # no merging
        (lambda lp: [s for t, s in enumerate(lp.argmax(-1).tolist()) if t == 0 or s != lp.argmax(-1)[t - 1]],
         "drop blanks"),  # blanks kept
        (lambda lp: _greedy(lp)[:1], "argmax symbol per frame"),
    ],
)
def test_ctc_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_ctc_greedy_decode(wrong)


def test_ctc_check_explains_dropping_blanks_before_merging():
    def blanks_first(lp):
        kept = [s for s in lp.argmax(-1).tolist() if s != BLANK]
        return [s for t, s in enumerate(kept) if t == 0 or s != kept[t - 1]]

    with pytest.raises(AssertionError, match=r"\*before\* dropping blanks"):
        checks.check_ctc_greedy_decode(blanks_first)


def _wer(ref: str, hyp: str) -> float:
    r, h = ref.split(), hyp.split()
    d = [[i + j if i * j == 0 else 0 for j in range(len(h) + 1)] for i in range(len(r) + 1)]
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(r)][len(h)] / len(r)


def test_wer_check_accepts_a_correct_wer(capsys):
    checks.check_wer(_wer)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda r, h: edit_distance(r.split(), h.split()), "divide the number of edits"),
        (lambda r, h: edit_distance(r.split(), h.split()) / max(len(h.split()), 1), "reference"),
        (lambda r, h: edit_distance(list(r), list(h)) / len(r), "character error rate"),
        (lambda r, h: sum(a != b for a, b in zip(r.split(), h.split())) / len(r.split()), "edits|table"),
    ],
)
def test_wer_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_wer(wrong)


class _FakeCorpus:
    """Statements fall in pitch, declarative questions rise (160 Hz <-> 220 Hz), two of each."""

    def __init__(self):
        kinds = ["statement", "declarative_question"] * 2
        self.utts = [SimpleNamespace(kind=k, question=k != "statement", text=f"utt {i}")
                     for i, k in enumerate(kinds)]

    def split(self, name):
        return self.utts if name == "test" else []

    def wav(self, u):
        return torch.full((10,), 1.0 if u.question else -1.0)  # a stand-in: the sign says which


def test_question_check_passes_a_good_classifier_and_explains_bad_ones(capsys):
    corpus = _FakeCorpus()
    assert checks.check_question_classifier(lambda w: bool(w[0] > 0), corpus) == 1.0
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(AssertionError, match="every utterance"):
        checks.check_question_classifier(lambda w: True, corpus)
    with pytest.raises(AssertionError, match="inverted"):
        checks.check_question_classifier(lambda w: bool(w[0] < 0), corpus)
    with pytest.raises(AssertionError, match="True or False"):
        checks.check_question_classifier(lambda w: 0.7, corpus)


def _sample(logits, temperature, generator):
    if temperature == 0:
        return int(logits.argmax())
    return int(torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator))


def test_sampling_check_accepts_a_correct_sampler(capsys):
    checks.check_sample_with_temperature(_sample)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda lg, t, g: int(torch.multinomial((lg * t).softmax(-1), 1, generator=g)) if t else int(lg.argmax()),
         "do not multiply"),
        (lambda lg, t, g: int(torch.multinomial(lg.softmax(-1), 1, generator=g)) if t else int(lg.argmax()),
         "no effect"),
        (lambda lg, t, g: int(lg.argmax()), "multinomial"),
        (lambda lg, t, g: int(torch.multinomial(lg.softmax(-1), 1, generator=g)), "temperature 0"),
    ],
)
def test_sampling_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_sample_with_temperature(wrong)
