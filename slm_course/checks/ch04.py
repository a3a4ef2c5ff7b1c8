"""Checks for notebook 04's exercises (solutions/04_gslm_exercises.ipynb)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._common import _fail, _ok

__all__ = ["check_bigram_logprob", "check_sequence_logprob", "check_warm_start"]


def check_sequence_logprob(fn: Callable[[torch.Tensor, torch.Tensor], tuple[float, float]]) -> None:
    """``fn(logits, tokens)`` -> (summed, per-token) log p of ``tokens[1:]`` given the logits ``(T, V)``."""
    from slm_course.lm import LM, LMConfig

    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2)).eval()
    g = torch.Generator().manual_seed(4)
    for T in (2, 5, 17):
        tokens = torch.randint(0, 11, (T,), generator=g)
        with torch.no_grad():
            logits = model.logits(tokens[None])[0]  # (T, V)
            want_sum, n = model.score(tokens[None])
        want_sum, n = float(want_sum[0]), int(n[0])
        got = fn(logits.clone(), tokens.clone())
        if not isinstance(got, tuple) or len(got) != 2:
            _fail(f"return a pair (summed, per_token) of floats, got {got!r}")
        s, per = (float(x) for x in got)
        said = f"for {T} tokens you returned summed {s:.4f}, per token {per:.4f}; expected {want_sum:.4f}, " \
               f"{want_sum / n:.4f}"
        if abs(s - want_sum) < 1e-4 and abs(per - want_sum / n) < 1e-4:
            continue
        plain = logits.log_softmax(-1).gather(-1, tokens[:, None]).sum()
        if abs(s - float(plain)) < 1e-4:
            _fail(f"{said}: position t predicts token t + 1; score logits[:-1] against tokens[1:]")
        unnorm = logits[:-1].gather(-1, tokens[1:, None]).sum()
        if abs(s - float(unnorm)) < 1e-4:
            _fail(f"{said}: take log_softmax of the logits first; raw logits are not log-probabilities")
        if abs(s - want_sum) < 1e-4:
            _fail(f"{said}: divide the sum by the number of scored tokens, T - 1 = {n}")
        _fail(f"{said}: sum log_softmax(logits)[t, tokens[t + 1]] over t = 0 .. T-2")
    _ok("sequence_logprob is correct: it matches LM.score, summed and per token")


def check_bigram_logprob(fn: Callable[..., float]) -> None:
    """``fn(train_seqs, seq, n_symbols, alpha)`` -> log p(seq) under an add-alpha bigram with <bos>/<eos>."""
    from slm_course.ulm import NgramLM

    g = torch.Generator().manual_seed(2)
    train = [torch.randint(0, 5, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g) for _ in range(30)]
    cases = [("a short sequence", torch.tensor([0, 1, 2])), ("one unit", torch.tensor([4])),
             ("a longer sequence", torch.randint(0, 5, (12,), generator=g))]
    for alpha in (1.0, 0.1):
        ref = NgramLM(2, 5, alpha=alpha).fit(train)
        for name, seq in cases:
            want = float(ref.score([seq])[0][0])
            got = float(fn(train, seq.clone(), 5, alpha))
            if abs(got - want) < 1e-4:
                continue
            said = f"for {name} {seq.tolist()} with alpha={alpha} you returned {got:.4f}, expected {want:.4f}"
            if math.isinf(got):
                _fail(f"{said}: an unseen bigram has probability 0 without smoothing; add alpha to every count")
            _fail(
                f"{said}: count bigrams over <bos> seq <eos> for every training sequence, add alpha to each of the "
                f"{5 + 3}x{5 + 3} counts (units + 3 specials), normalise each row, and sum log p over <bos> seq <eos>"
            )
    _ok("bigram_logprob is correct: add-alpha bigram with <bos>/<eos>, as ulm.NgramLM(2, ...)")


def check_warm_start(fn: Callable) -> None:
    """``fn(unit_model, text_model)`` copies the text LM's body into the unit LM (TWIST) and returns it."""
    from slm_course.lm import LM, LMConfig

    torch.manual_seed(0)
    text = LM(LMConfig(vocab_size=29, d_model=32, n_layers=2, n_heads=2, max_len=64))
    unit = LM(LMConfig(vocab_size=103, d_model=32, n_layers=2, n_heads=2, max_len=128))
    emb, head, pos = unit.tok_emb[0].weight.clone(), unit.heads[0].weight.clone(), unit.pos_emb.weight.clone()
    text_before = {k: v.clone() for k, v in text.state_dict().items()}
    out = fn(unit, text)
    if out is None:
        _fail("return the unit model after copying (return unit_model)")
    for name, value in text.state_dict().items():
        if not torch.equal(value, text_before[name]):
            _fail(f"the text model's {name} changed: copy from the text LM into the unit LM, not the other way round")
    got_blocks = out.blocks.state_dict()
    for name, a in text.blocks.state_dict().items():
        if not torch.equal(a, got_blocks[name]):
            _fail(f"the unit model's blocks.{name} differs from the text model's: copy every block's weights "
                  "(unit_model.blocks.load_state_dict(text_model.blocks.state_dict()))")
    if out.pos_emb.weight.shape != pos.shape:
        _fail(f"the unit LM's position table must keep its {pos.shape[0]} rows (got {out.pos_emb.weight.shape[0]}): "
              "copy the text LM's 64 rows into its first 64, do not replace the table")
    text_ptrs = {p.data_ptr() for p in text.parameters()}
    if any(p.data_ptr() in text_ptrs for p in out.parameters()):
        _fail("the unit model shares tensors with the text model (unit_model.blocks = text_model.blocks?): training "
              "the unit LM would change the text LM too. Copy the values: blocks.load_state_dict(...)")
    for name, value in text.ln_f.state_dict().items():
        if not torch.equal(out.ln_f.state_dict()[name], value):
            _fail(f"the final LayerNorm (ln_f.{name}) belongs to the body too: copy its weight and bias")
    if not torch.equal(out.pos_emb.weight[:64], text.pos_emb.weight):
        _fail("copy the text LM's position embeddings into the first 64 positions of the unit LM's")
    if not torch.equal(out.pos_emb.weight[64:], pos[64:]):
        _fail("positions 64 and up have no text-LM counterpart: leave those rows of the unit LM as they were")
    if out.tok_emb[0].weight.shape != emb.shape or not torch.equal(out.tok_emb[0].weight, emb):
        _fail("leave the unit LM's token embeddings alone: the vocabularies differ (units vs characters)")
    if not torch.equal(out.heads[0].weight, head):
        _fail("leave the unit LM's output head alone: it scores units, not characters")
    _ok("warm_start is correct: the body (blocks, final norm, positions) is copied; embeddings and head stay new")
