"""Notebook 04's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.ulm import N_SPECIAL, warm_start


def sequence_logprob(logits, tokens):
    lp = logits.log_softmax(-1)[:-1].gather(-1, tokens[1:, None]).squeeze(-1)
    return float(lp.sum()), float(lp.mean())


def bigram_logprob(train_seqs, seq, n_symbols, alpha):
    V = n_symbols + N_SPECIAL
    counts = torch.full((V, V), float(alpha))
    for s in train_seqs:
        t = [1] + [u + N_SPECIAL for u in s.tolist()] + [2]
        for a, b in zip(t, t[1:]):
            counts[a, b] += 1
    logp = (counts / counts.sum(1, keepdim=True)).log()
    t = [1] + [u + N_SPECIAL for u in seq.tolist()] + [2]
    return float(sum(logp[a, b] for a, b in zip(t, t[1:])))


def test_solutions_pass(capsys):
    checks.check_sequence_logprob(sequence_logprob)
    checks.check_bigram_logprob(bigram_logprob)
    checks.check_warm_start(warm_start)
    assert capsys.readouterr().out.count("✓") == 3


def test_mistakes_are_named():
    with pytest.raises(AssertionError, match="logits\\[:-1\\] against tokens\\[1:\\]"):
        checks.check_sequence_logprob(lambda lg, t: (float(lg.log_softmax(-1).gather(-1, t[:, None]).sum()), 0.0))
    with pytest.raises(AssertionError, match="log_softmax"):
        checks.check_sequence_logprob(lambda lg, t: (float(lg[:-1].gather(-1, t[1:, None]).sum()), 0.0))
    with pytest.raises(AssertionError, match="divide the sum"):
        checks.check_sequence_logprob(lambda lg, t: (sequence_logprob(lg, t)[0],) * 2)
    with pytest.raises(AssertionError, match="add alpha"):
        checks.check_bigram_logprob(lambda tr, s, n, a: bigram_logprob(tr, s, n, 0.0))

    def copies_everything(unit, text):
        unit.blocks.load_state_dict(text.blocks.state_dict())
        unit.ln_f.load_state_dict(text.ln_f.state_dict())
        with torch.no_grad():
            unit.pos_emb.weight[:64] = text.pos_emb.weight
            unit.tok_emb[0].weight[:29] = text.tok_emb[0].weight
        return unit

    with pytest.raises(AssertionError, match="token embeddings alone"):
        checks.check_warm_start(copies_everything)
    with pytest.raises(AssertionError, match="blocks"):
        checks.check_warm_start(lambda unit, text: unit)


def test_warm_start_check_catches_shared_replaced_and_reversed_copies():
    def shares(unit, text):
        unit.blocks, unit.ln_f = text.blocks, text.ln_f  # the same tensors, not copies
        with torch.no_grad():
            unit.pos_emb.weight[:64] = text.pos_emb.weight
        return unit

    def replaces_positions(unit, text):
        unit.blocks.load_state_dict(text.blocks.state_dict())
        unit.ln_f.load_state_dict(text.ln_f.state_dict())
        unit.pos_emb = text.pos_emb  # 64 rows instead of 128
        return unit

    def backwards(unit, text):
        text.blocks.load_state_dict(unit.blocks.state_dict())
        text.ln_f.load_state_dict(unit.ln_f.state_dict())
        with torch.no_grad():
            text.pos_emb.weight[:] = unit.pos_emb.weight[:64]
        return unit

    def no_ln_bias(unit, text):
        unit.blocks.load_state_dict(text.blocks.state_dict())
        with torch.no_grad():
            unit.ln_f.weight.copy_(text.ln_f.weight)
            text.ln_f.bias.add_(0.0)
            unit.ln_f.bias.fill_(0.5)
            unit.pos_emb.weight[:64] = text.pos_emb.weight
        return unit

    with pytest.raises(AssertionError, match="shares tensors"):
        checks.check_warm_start(shares)
    with pytest.raises(AssertionError, match="keep its 128 rows"):
        checks.check_warm_start(replaces_positions)
    with pytest.raises(AssertionError, match="not the other way round"):
        checks.check_warm_start(backwards)
    with pytest.raises(AssertionError, match="ln_f.bias"):
        checks.check_warm_start(no_ln_bias)
