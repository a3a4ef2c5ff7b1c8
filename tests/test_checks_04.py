"""Notebook 04's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.checks.quiz import _check_one
from slm_course.ulm import N_SPECIAL


def bigram_table(train_seqs, n_symbols, alpha, dim=1):
    V = n_symbols + N_SPECIAL
    counts = torch.full((V, V), float(alpha))
    for s in train_seqs:
        t = [1] + [u + N_SPECIAL for u in s.tolist()] + [2]
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


def test_windowed_mistakes_are_named():
    def whole_context(model, tokens, k):
        return float(model.score(tokens[None])[0][0])

    with pytest.raises(AssertionError, match="whole context"):
        checks.check_windowed_logprob(whole_context)
    with pytest.raises(AssertionError, match="window of 2 tokens"):
        checks.check_windowed_logprob(lambda m, t, k: windowed_logprob(m, t, k + 1))
    with pytest.raises(AssertionError, match="one number"):
        checks.check_windowed_logprob(lambda m, t, k: "x")


def test_quiz_answers():
    assert len(checks.ch04.QUIZ) >= 3
    right = {1: 32 * 127, 2: "a", 3: "b", 4: "b"}
    for n, q in enumerate(checks.ch04.QUIZ, start=1):
        assert _check_one(n, q, right[n])[0], (n, q.answer)
    checks.check_quiz("04", right)
    with pytest.raises(AssertionError, match="2: not c"):
        checks.check_quiz("04", {**right, 2: "c"})
