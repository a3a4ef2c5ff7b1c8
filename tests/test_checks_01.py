"""The checks of notebook 01's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from slm_course import checks
from slm_course.asr import BLANK
from slm_course.metrics import edit_distance


def _align(lp: torch.Tensor, target: list[int], skip_equal: bool = False, lse: bool = False, end: str = "best",
           start_on_symbol: bool = True) -> list[int]:
    """Viterbi over CTC's extended label. Mistakes: ``skip_equal`` skips blanks between equal symbols too; ``lse``
    keeps the logsumexp of the predecessors (the forward sum) with argmax pointers; ``end`` "blank" or "symbol"
    always ends there; ``start_on_symbol=False`` starts on the first blank only."""
    ext = [BLANK]
    for c in target:
        ext += [c, BLANK]
    T, S = len(lp), len(ext)
    score = torch.full((T, S), -math.inf)
    back = torch.zeros((T, S), dtype=torch.long)
    score[0, : 2 if start_on_symbol else 1] = lp[0, ext[: 2 if start_on_symbol else 1]]
    for t in range(1, T):
        for s in range(S):
            cands = [s] + ([s - 1] if s >= 1 else [])
            if s >= 2 and ext[s] != BLANK and (skip_equal or ext[s] != ext[s - 2]):
                cands.append(s - 2)
            best = max(cands, key=lambda r: float(score[t - 1, r]))
            back[t, s] = best
            total = torch.logsumexp(score[t - 1, cands], 0) if lse else score[t - 1, best]
            score[t, s] = total + lp[t, ext[s]]
    s = {"best": S - 1 if score[-1, -1] >= score[-1, -2] else S - 2, "blank": S - 1, "symbol": S - 2}[end]
    path = []
    for t in range(T - 1, -1, -1):
        path.append(ext[s])
        s = int(back[t, s])
    return path[::-1]


def test_align_check_accepts_a_correct_aligner(capsys):
    checks.check_ctc_force_align(_align)
    assert capsys.readouterr().out.startswith("✓")


def _first_frames(lp: torch.Tensor, target: list[int]) -> list[int]:
    """A valid path that is rarely the best: the symbols (blank-separated where doubled) first, then blanks."""
    path = []
    for i, c in enumerate(target):
        if i and c == target[i - 1]:
            path.append(BLANK)
        path.append(c)
    return path + [BLANK] * (len(lp) - len(path))


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda lp, tg: list(tg), "one symbol per frame"),
        (lambda lp, tg: lp.argmax(-1).tolist(), "not the target"),
        (lambda lp, tg: _align(lp, tg, skip_equal=True), "between two \\*different\\* symbols"),
        (_first_frames, "log-probability"),
        (lambda lp, tg: "a b", "list of ints"),
        (lambda lp, tg: _align(lp, tg, lse=True), "the \\*max\\* \\(not the logsumexp\\)"),
        (lambda lp, tg: _align(lp, tg, end="blank"), "end on the last symbol or the last blank"),
        (lambda lp, tg: _align(lp, tg, end="symbol"), "End on the better of the two"),
        (lambda lp, tg: _align(lp, tg, start_on_symbol=False), "start on its first blank or its first symbol"),
    ],
)
def test_align_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_ctc_force_align(wrong)


def test_best_path_score_matches_brute_force():
    from itertools import product

    from slm_course.checks.ch01 import _best_path_score, _collapse

    lp = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    for target in ([1], [1, 1], [1, 2], [2, 1, 2]):
        scores = [float(lp[torch.arange(5), torch.tensor(p)].sum()) for p in product(range(3), repeat=5)
                  if _collapse(list(p)) == target]
        assert abs(_best_path_score(lp, target) - max(scores)) < 1e-6


def _cached_attention(attn, x_t, cache, scale=True, proj=True, own=True, use_cache=True):
    B, _, C = x_t.shape
    H = attn.n_heads
    q, k, v = attn.qkv(x_t).split(C, dim=2)
    q, k, v = (t.view(B, 1, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, 1, Dh)
    if not use_cache:
        keys, values = k, v
    else:
        past_k, past_v = cache.get("k"), cache.get("v")
        keys = k if past_k is None else torch.cat([past_k, k], dim=2)
        values = v if past_v is None else torch.cat([past_v, v], dim=2)
        cache["k"], cache["v"] = keys, values
        if not own:
            if past_k is None:
                return torch.zeros(B, 1, C) + (attn.proj.bias if proj else 0)
            keys, values = past_k, past_v
    w = (q @ keys.transpose(-2, -1) / (math.sqrt(C // H) if scale else 1)).softmax(-1)
    y = (w @ values).transpose(1, 2).reshape(B, 1, C)
    return attn.proj(y) if proj else y


def test_kv_cache_check_accepts_a_correct_step(capsys):
    checks.check_kv_cache_attention(_cached_attention)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"scale": False}, "sqrt\\(d_head\\)"),
        ({"proj": False}, "attn.proj"),
        ({"use_cache": False}, "every cached key"),
        ({"own": False}, "\\*before\\* attending"),
    ],
)
def test_kv_cache_check_explains_mistakes(kwargs, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_kv_cache_attention(lambda a, x, c: _cached_attention(a, x, c, **kwargs))


def test_kv_cache_check_refuses_the_whole_sequence():
    with pytest.raises(AssertionError, match="new position's output only"):
        checks.check_kv_cache_attention(lambda a, x, c: torch.zeros(x.shape[0], 2, x.shape[2]))


def _wer(ref: str, hyp: str, substitution: int = 1) -> float:
    r, h = ref.split(), hyp.split()
    d = [[i + j if i * j == 0 else 0 for j in range(len(h) + 1)] for i in range(len(r) + 1)]
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + substitution * (r[i - 1] != h[j - 1]))
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
        (lambda r, h: (sum(a != b for a, b in zip(r.split(), h.split())) + abs(len(r.split()) - len(h.split())))
         / len(r.split()), "position by position"),
        (lambda r, h: min(1.0, _wer(r, h)), "not capped at 1"),
        (lambda r, h: _wer(r, h, substitution=2), "a substitution costs 1"),
        (lambda r, h: 100 * _wer(r, h), "a percentage"),
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


def _rise(wav, unit="semitones", stat="median", voiced_only=True, sign=1.0):
    """The exercise's final_rise, right by default, or with one of the usual mistakes."""
    from slm_course.audio import SR, pitch

    f0 = pitch(wav, SR)[1].double()
    if not voiced_only:
        n = max(3, len(f0) // 5)
        end, rest = f0[-n:], f0[:-n]
        end, rest = end[~end.isnan()], rest[~rest.isnan()]
        return float(12 * torch.log2(end).median() - 12 * torch.log2(rest).median()) if len(end) else 0.0
    v = f0[~f0.isnan()]
    if unit == "first-last":
        return float(12 * torch.log2(v[-1] / v[0]))
    x = 12 * torch.log2(v) if unit == "semitones" else v
    n = max(3, len(v) // 5)
    agg = (lambda t: t.median()) if stat == "median" else (lambda t: t.mean())
    return sign * float(agg(x[-n:]) - agg(x[:-n]))


def test_final_rise_tones_have_the_known_rise():
    from slm_course.audio import SR
    from slm_course.checks.ch01 import _RISE_TONES, _glide_tone

    rises = [_rise(_glide_tone(seg, SR)) for _, seg in _RISE_TONES]
    assert abs(rises[0] - 12) < 0.5 and abs(rises[1] + 12) < 0.5
    assert abs(rises[2] - 12 * math.log2(1.5)) < 0.5 and abs(rises[3] - 12) < 0.5


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({}, None),
        ({"unit": "hz"}, "in Hz"),
        ({"stat": "mean"}, "\\*medians\\*"),
        ({"unit": "first-last"}, "not the last voiced frame with the first"),
        ({"voiced_only": False}, "\\*voiced\\* frames"),
        ({"sign": -1.0}, "sign is flipped"),
    ],
)
def test_question_check_checks_final_rise_on_tones(kwargs, words, capsys):
    corpus = _FakeCorpus()
    good = lambda w: bool(w[0] > 0)  # noqa: E731
    if words is None:
        checks.check_question_classifier(good, corpus, final_rise=lambda w: _rise(w, **kwargs))
        assert "final_rise gives the known rise" in capsys.readouterr().out
    else:
        with pytest.raises(AssertionError, match=words):
            checks.check_question_classifier(good, corpus, final_rise=lambda w: _rise(w, **kwargs))


def test_question_check_names_the_majority_rate_as_chance():
    corpus = _FakeCorpus()
    corpus.utts = corpus.utts + [SimpleNamespace(kind="statement", question=False, text="utt 9")] * 4  # 6 of 8
    with pytest.raises(AssertionError, match="commoner answer, is 0.75"):
        checks.check_question_classifier(lambda w: bool(w[0] < 0), corpus)


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
        (lambda lg, t, g: int(torch.multinomial((lg / t).softmax(-1), 1)) if t else int(lg.argmax()),
         "generator passed in"),
        (lambda lg, t, g: int(torch.multinomial((lg / t).softmax(-1), 1, generator=g)),  # 0 / 0 inside softmax
         "handle temperature 0 first"),
        (lambda lg, t, g: int(torch.multinomial((lg / t).log_softmax(-1), 1, generator=g)) if t else int(lg.argmax()),
         "not log-probabilities"),
    ],
)
def test_sampling_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_sample_with_temperature(wrong)


def test_quiz_answers_are_consistent():
    from slm_course.checks.ch01 import QUIZ

    assert 3 <= len(QUIZ) <= 5
    checks.check_quiz("01", {1: "b", 2: 5, 3: "a", 4: "b", 5: 3.00})
    with pytest.raises(AssertionError, match="5: not"):
        checks.check_quiz("01", {1: "b", 2: 5, 3: "a", 4: "b", 5: 1.54})  # the perplexity notebook 01 prints
    with pytest.raises(AssertionError, match="not answered yet"):
        checks.check_quiz("01", {})  # what the exercise's answers = {} gives before the learner fills it


_EXPLANATION = (
    "Too small a rate (3e-4) is slow: the loss barely moves in 150 steps. Too large a rate (3.0) overshoots and "
    "explodes. Clipping caps the gradient's norm, but Adam divides each gradient by a running estimate of its own "
    "size, so the step is about lr times the sign of the gradient whatever its norm."
)


def test_lr_experiment_check(capsys):
    results = {3e-4: 16.4, 3e-3: 6.9, 3e-2: 5.9, 3e-1: 17.6, 3.0: float("nan")}
    checks.check_lr_experiment(results, 3e-2, _EXPLANATION)
    out = capsys.readouterr().out
    assert out.startswith("✓ explanation recorded") and "✓ best_lr = 0.03" in out
    checks.check_lr_experiment({**results, 1e-2: 6.1}, 3e-2, _EXPLANATION)  # extra runs are welcome
    with pytest.raises(AssertionError, match="lowest of your runs"):
        checks.check_lr_experiment(results, 3e-3, _EXPLANATION)
    with pytest.raises(AssertionError, match="not one of the learning rates"):
        checks.check_lr_experiment(results, 0.1, _EXPLANATION)
    with pytest.raises(AssertionError, match="write at least 30"):
        checks.check_lr_experiment(results, 3e-2, "too short")
    with pytest.raises(AssertionError, match="write at least 30"):
        checks.check_lr_experiment(results, 3e-2, "word " * 25)
    with pytest.raises(AssertionError, match="does not name adam or divid"):
        checks.check_lr_experiment(results, 3e-2, "clipping is applied after the optimiser step so it cannot help; "
                                   "smaller rates are slow and larger ones overfit the training sentences " * 2)
    with pytest.raises(AssertionError, match="run the experiment"):
        checks.check_lr_experiment({}, 3e-2, _EXPLANATION)
    with pytest.raises(AssertionError, match="no run at learning rate"):
        checks.check_lr_experiment({1: 1.0, 2: 2.0, 3: 3.0}, 1, _EXPLANATION)
    with pytest.raises(AssertionError, match="above 1"):
        checks.check_lr_experiment({**results, 3e-2: 0.5}, 3e-2, _EXPLANATION)
    with pytest.raises(AssertionError, match="best_lr is not set yet"):
        checks.check_lr_experiment(results, None, None)  # the exercise cell's initial values
    with pytest.raises(AssertionError, match="explanation is not written yet"):
        checks.check_lr_experiment(results, 3e-2, None)
