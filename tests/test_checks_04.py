"""Notebook 04's exercise checks accept the solutions and name the usual mistakes."""

import ast
import json
import math
from pathlib import Path

import pytest
import torch

from slm_course import checks, ulm
from slm_course.checks.quiz import _check_one, check_explanation
from slm_course.ulm import N_SPECIAL

SOLUTION = Path(__file__).resolve().parents[1] / "solutions" / "04_gslm_exercises.ipynb"


def bigram_table(train_seqs, n_symbols, alpha, dim=1, bos=True):
    V = n_symbols + N_SPECIAL
    counts = torch.full((V, V), float(alpha))
    for s in train_seqs:
        t = [1] * bos + [u + N_SPECIAL for u in s.tolist()] + [2]
        for a, b in zip(t, t[1:]):
            counts[a, b] += 1
    return (counts / counts.sum(dim, keepdim=True)).log()


def bigram_logprob(train_seqs, seq, n_symbols, alpha, dim=1):
    logp = bigram_table(train_seqs, n_symbols, alpha, dim)
    t = [1] + [u + N_SPECIAL for u in seq.tolist()] + [2]
    return float(sum(logp[a, b] for a, b in zip(t, t[1:])))


def duration_table(ids, durations, n_units, max_dur):
    counts = torch.zeros(n_units, max_dur)
    for u, d in zip(ids, durations):
        counts.index_put_((u, d.clamp(max=max_dur) - 1), torch.ones(len(u)), accumulate=True)
    counts[counts.sum(1) == 0, 0] = 1
    return counts / counts.sum(1, keepdim=True)


def sample_durations(units, table, generator):
    return torch.multinomial(table[units], 1, generator=generator)[:, 0] + 1


def windowed_logprob(model, tokens, k):
    T = len(tokens)
    ctx = torch.zeros(T - 1, min(k, T - 1), dtype=torch.long)
    last = torch.zeros(T - 1, dtype=torch.long)
    for t in range(1, T):
        w = tokens[max(0, t - k) : t]
        ctx[t - 1, : len(w)] = w
        last[t - 1] = len(w) - 1
    with torch.no_grad():
        logp = model.logits(ctx).log_softmax(-1)[torch.arange(T - 1), last]
    return float(logp.gather(-1, tokens[1:, None]).sum())


def test_solutions_pass(capsys):
    checks.check_bigram_table(bigram_table)
    checks.check_bigram_logprob(bigram_logprob)
    checks.check_duration_table(duration_table)
    checks.check_sample_durations(sample_durations)
    checks.check_windowed_logprob(windowed_logprob)
    assert capsys.readouterr().out.count("✓") == 5


def table_in_place(train_seqs, n_symbols, alpha):
    """The review's slip: s += 3 changes the caller's sequences, so every call shifts them again."""
    V = n_symbols + N_SPECIAL
    counts = torch.full((V, V), float(alpha))
    for s in train_seqs:
        s += N_SPECIAL
        t = torch.cat([torch.tensor([1]), s, torch.tensor([2])])
        counts.index_put_((t[:-1], t[1:]), torch.ones(len(t) - 1), accumulate=True)
    return (counts / counts.sum(1, keepdim=True)).log()


def logprob_in_place(train_seqs, seq, n_symbols, alpha):
    logp = table_in_place(train_seqs, n_symbols, alpha)
    t = torch.cat([torch.tensor([1]), seq + N_SPECIAL, torch.tensor([2])])
    return float(logp[t[:-1], t[1:]].sum())


def test_a_function_that_changes_its_input_in_place_is_named():
    message = r"changed train_seqs in place \(s \+= 3\); build a new tensor \(s \+ 3\)"
    with pytest.raises(AssertionError, match=message):
        checks.check_bigram_table(table_in_place)
    with pytest.raises(AssertionError, match=message):  # not an IndexError from the learner's own code
        checks.check_bigram_logprob(logprob_in_place)

    def seq_in_place(train_seqs, seq, n_symbols, alpha):
        seq += N_SPECIAL
        return bigram_logprob(train_seqs, seq - N_SPECIAL, n_symbols, alpha)

    with pytest.raises(AssertionError, match=r"changed seq in place \(seq \+= 3\)"):
        checks.check_bigram_logprob(seq_in_place)

    def clamp_in_place(ids, durations, n_units, max_dur):
        for d in durations:
            d.clamp_(max=max_dur)
        return duration_table(ids, durations, n_units, max_dur)

    with pytest.raises(AssertionError, match=r"changed durations in place \(clamp_.*d.clamp\(max=max_dur\)"):
        checks.check_duration_table(clamp_in_place)

    def flipped_in_place(model, tokens, k):
        out = windowed_logprob(model, tokens.clone(), k)
        tokens[:] = tokens.flip(0)
        return out

    with pytest.raises(AssertionError, match="changed tokens in place"):
        checks.check_windowed_logprob(flipped_in_place)


def test_a_table_counted_over_the_packed_stream_is_named():
    def packed(train_seqs, n_symbols, alpha):
        V = n_symbols + N_SPECIAL
        counts = torch.full((V, V), float(alpha))
        t = ulm.pack(train_seqs)  # <bos> ... <eos> <bos> ...: also counts <eos> -> <bos> between utterances
        counts.index_put_((t[:-1], t[1:]), torch.ones(len(t) - 1), accumulate=True)
        return (counts / counts.sum(1, keepdim=True)).log()

    with pytest.raises(AssertionError, match=r"counted across utterances \(<eos> -> <bos>\)"):
        checks.check_bigram_table(packed)


def test_bigram_mistakes_are_named():
    with pytest.raises(AssertionError, match="add alpha"):
        checks.check_bigram_logprob(lambda tr, s, n, a: bigram_logprob(tr, s, n, 0.0))
    with pytest.raises(AssertionError, match="count bigrams over <bos> seq <eos>"):
        checks.check_bigram_logprob(lambda tr, s, n, a: bigram_logprob(tr, s, n, a) - 1.0)


def test_a_column_normalised_table_is_named_though_its_sequence_scores_are_right():
    checks.check_bigram_logprob(lambda tr, s, n, a: bigram_logprob(tr, s, n, a, dim=0))  # the same scores ...
    with pytest.raises(AssertionError, match="normalised each column"):  # ... so the table itself is checked
        checks.check_bigram_table(lambda tr, n, a: bigram_table(tr, n, a, dim=0))


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda tr, n, a: bigram_table(tr, n, a).exp(), "probabilities; return their log"),
    (lambda tr, n, a: bigram_table(tr, n, 0.0), "add alpha to every count"),
    (lambda tr, n, a: bigram_table(tr, n, a)[:, :-1], "shape"),
    (lambda tr, n, a: bigram_table(tr, n, a) + 0.1, "count bigrams over <bos> seq <eos>"),
    (lambda tr, n, a: bigram_table(tr, n, a).T, "transposed"),
    (lambda tr, n, a: bigram_table(tr, n, a) / math.log(2), "log2"),
    (lambda tr, n, a: bigram_table([s - 1 for s in tr], n, a), "units at u \\+ 2"),  # one token lower: u + 2
    (lambda tr, n, a: bigram_table(tr, n, a, bos=False), "without <bos>"),
])
def test_bigram_table_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_bigram_table(wrong)


def bigram_variant(train_seqs, seq, n_symbols, alpha, eos=True, offset=N_SPECIAL):
    """The usual mistakes of the exercise: no <eos>, units not shifted by the 3 specials."""
    V = n_symbols + N_SPECIAL
    counts = torch.full((V, V), float(alpha))
    for s in train_seqs:
        t = [1] + [u + offset for u in s.tolist()] + ([2] if eos else [])
        for a, b in zip(t, t[1:]):
            counts[a, b] += 1
    logp = (counts / counts.sum(1, keepdim=True)).log()
    t = [1] + [u + offset for u in seq.tolist()] + ([2] if eos else [])
    return float(sum(logp[a, b] for a, b in zip(t, t[1:])))


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda tr, s, n, a: bigram_variant(tr, s, n, a, eos=False), "without <eos>"),
    (lambda tr, s, n, a: bigram_variant(tr, s, n, a, offset=0), "without the \\+3 offset"),
    (lambda tr, s, n, a: float(torch.tensor(bigram_logprob(tr, s, n, a)).exp()), "never above 0|that is the probability"),
    (lambda tr, s, n, a: bigram_logprob(tr, s, n, a) / (len(s) + 1), "mean log p .* return their sum"),
    (lambda tr, s, n, a: float(sum(bigram_table(tr, n, a, bos=False)[x, y] for x, y in  # no <bos> anywhere
                                   zip((s + N_SPECIAL).tolist(), (s + N_SPECIAL).tolist()[1:] + [2]))), "without <bos>"),
])
def test_each_usual_bigram_mistake_is_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_bigram_logprob(wrong)


def test_duration_mistakes_are_named():
    def no_unseen(ids, durations, n_units, max_dur):
        counts = torch.zeros(n_units, max_dur)
        for u, d in zip(ids, durations):
            counts.index_put_((u, d.clamp(max=max_dur) - 1), torch.ones(len(u)), accumulate=True)
        return counts / counts.sum(1, keepdim=True)  # 0 / 0 for a unit never seen

    def counts_only(ids, durations, n_units, max_dur):
        return duration_table(ids, durations, n_units, max_dur) * 3

    def zero_based(ids, durations, n_units, max_dur):
        counts = torch.zeros(n_units, max_dur)
        for u, d in zip(ids, durations):
            counts.index_put_((u, d.clamp(max=max_dur - 1)), torch.ones(len(u)), accumulate=True)
        counts[counts.sum(1) == 0, 0] = 1
        return counts / counts.sum(1, keepdim=True)

    with pytest.raises(AssertionError, match="never seen"):
        checks.check_duration_table(no_unseen)
    with pytest.raises(AssertionError, match="sum to 1"):
        checks.check_duration_table(counts_only)
    with pytest.raises(AssertionError, match="column d - 1"):
        checks.check_duration_table(zero_based)
    with pytest.raises(AssertionError, match="add 1"):
        checks.check_sample_durations(lambda u, tab, g: torch.multinomial(tab[u], 1, generator=g)[:, 0])
    with pytest.raises(AssertionError, match="generator"):
        checks.check_sample_durations(lambda u, tab, g: torch.multinomial(tab[u], 1)[:, 0] + 1)
    with pytest.raises(AssertionError, match="own row"):
        checks.check_sample_durations(
            lambda u, tab, g: torch.multinomial(tab[u], 1, generator=g)[:, 0] + 1 if tab.max() == 1
            else torch.multinomial(tab[u[:1]], 1, generator=g)[:, 0].repeat(len(u)) + 1)


@pytest.mark.parametrize("same", [
    lambda u, tab, g: tab[u].argmax(1) + 1,  # the most likely duration
    lambda u, tab, g: (tab[u] * torch.arange(1, tab.shape[1] + 1)).sum(1).round().long(),  # the rounded mean
])
def test_the_same_duration_every_time_is_named(same):
    with pytest.raises(AssertionError, match=r"you return the same duration every time: draw at random with "
                                             r"torch.multinomial\(\.\.\., generator=generator\)"):
        checks.check_sample_durations(same)


def test_one_draw_shared_by_every_position_is_not_called_the_same_duration_every_time():
    def shared(units, table, generator):  # one uniform number per call, read through each unit's row
        u = torch.rand(1, generator=generator)
        return torch.searchsorted(table[units].cumsum(1), u.expand(len(units), 1).contiguous())[:, 0] + 1

    with pytest.raises(AssertionError, match="one draw per call and shared it.*own row"):
        checks.check_sample_durations(shared)


def test_windowed_mistakes_are_named():
    def whole_context(model, tokens, k):
        return float(model.score(tokens[None])[0][0])

    with pytest.raises(AssertionError, match="whole context"):
        checks.check_windowed_logprob(whole_context)
    with pytest.raises(AssertionError, match="window of 2 tokens"):
        checks.check_windowed_logprob(lambda m, t, k: windowed_logprob(m, t, k + 1))
    with pytest.raises(AssertionError, match="one number"):
        checks.check_windowed_logprob(lambda m, t, k: "x")


def padded_windows(model, tokens, k, left=False):
    """Batched windows with the review's slips: left-padded, or right-padded but read at the last column."""
    T = len(tokens)
    K = min(k, T - 1)
    ctx = torch.zeros(T - 1, K, dtype=torch.long)
    for t in range(1, T):
        w = tokens[max(0, t - k) : t]
        if left:
            ctx[t - 1, K - len(w) :] = w
        else:
            ctx[t - 1, : len(w)] = w
    with torch.no_grad():
        logp = model.logits(ctx).log_softmax(-1)[:, -1]
    return float(logp.gather(-1, tokens[1:, None]).sum())


def absolute_positions(model, tokens, k):
    """The past beyond k replaced by <pad>: each token keeps its position in the whole sequence."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(tokens)):
            ctx = tokens[:t].clone()
            ctx[: max(0, t - k)] = 0
            total += float(model.logits(ctx[None])[0, -1].log_softmax(-1)[tokens[t]])
    return total


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda m, t, k: padded_windows(m, t, k, left=True), "you left-padded the windows"),
    (padded_windows, "you read every window's logits at the last column"),
    (absolute_positions, "whole context.*positions start at 0"),
])
def test_padding_mistakes_are_named(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_windowed_logprob(wrong)


def _solution_cell(cell_id):
    cells = json.loads(SOLUTION.read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c["id"] == cell_id)["source"])


def test_the_written_answer_must_name_the_training_cue_and_a_number_of_units(capsys):
    call = ast.parse(_solution_cell("expl-641ab429")).body[0].value
    mentions = ast.literal_eval(next(kw.value for kw in call.keywords if kw.arg == "mentions"))
    namespace = {}
    exec(_solution_cell("ex04-23").replace("print(explanation)", ""), namespace)
    check_explanation(namespace["explanation"], mentions=mentions)  # the model answer passes
    assert "explanation recorded" in capsys.readouterr().out
    wrong = ("Accuracy falls as k grows: more context only adds noise, because a word is a single unit and the model "
             "forgets everything beyond the previous unit, so a longer context window gives it nothing to use and "
             "the scores of words and grammar only get worse.")
    with pytest.raises(AssertionError, match="does not name bos or start or position"):
        check_explanation(wrong, mentions=mentions)
    with pytest.raises(AssertionError, match="does not name 8 or 13"):
        check_explanation(wrong + " In training every window started at <bos>.", mentions=mentions)


def test_quiz_answers():
    assert len(checks.ch04.QUIZ) >= 3
    right = {1: 32 * 127, 2: "a", 3: "c", 4: "b"}
    for n, q in enumerate(checks.ch04.QUIZ, start=1):
        assert _check_one(n, q, right[n])[0], (n, q.answer)
    checks.check_quiz("04", right)
    with pytest.raises(AssertionError, match="2: not c"):
        checks.check_quiz("04", {**right, 2: "c"})
