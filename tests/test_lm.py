"""The decoder-only LM core: shapes, causality, KV cache, streams, extra embeddings, training, errors."""

from __future__ import annotations

import pytest
import torch

from slm_course.lm import IGNORE, LM, LMConfig
from slm_course.textlm import TextLMConfig, load_text_lm, train_text_lm
from slm_course.train import TrainConfig, train


def small(**kw) -> LM:
    torch.manual_seed(0)
    return LM(LMConfig(vocab_size=23, d_model=32, n_layers=2, n_heads=4, max_len=64, **kw)).eval()


def test_forward_shapes_and_loss_matches_cross_entropy():
    m = small()
    x = torch.randint(0, 23, (3, 12))
    out = m({"tokens": x})
    assert out["logits"].shape == (3, 12, 23)
    ref = torch.nn.functional.cross_entropy(out["logits"][:, :-1].reshape(-1, 23), x[:, 1:].reshape(-1))
    assert torch.allclose(out["loss"], ref, atol=1e-6)
    targets = x.clone()
    targets[:, :6] = IGNORE  # e.g. a prompt that is not scored
    part = m({"tokens": x, "targets": targets})["loss"]
    ref_part = torch.nn.functional.cross_entropy(out["logits"][:, 6:].reshape(-1, 23), x[:, 6:].reshape(-1))
    assert torch.allclose(part, ref_part, atol=1e-6)


def test_causal_future_tokens_do_not_change_the_past():
    m = small()
    x = torch.randint(0, 23, (1, 10))
    y = x.clone()
    y[0, 7:] = (y[0, 7:] + 1) % 23
    assert torch.allclose(m.logits(x)[:, :7], m.logits(y)[:, :7], atol=1e-5)
    assert not torch.allclose(m.logits(x)[:, 7:], m.logits(y)[:, 7:])


def test_kv_cache_generation_equals_full_recompute():
    m = small()
    prompt = torch.randint(0, 23, (2, 5))
    fast = m.generate(prompt, 10, temperature=0)
    slow = prompt
    for _ in range(10):
        slow = torch.cat([slow, m.logits(slow)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, slow)
    # sampling is reproducible with a generator, and top_k=1 is greedy
    a = m.generate(prompt[0], 8, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = m.generate(prompt[0], 8, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (13,)
    assert torch.equal(m.generate(prompt, 6, temperature=1.0, top_k=1), m.generate(prompt, 6, temperature=0))


def test_rows_of_different_lengths_decode_together_from_padded_caches():
    m = small()
    a, b = torch.randint(0, 23, (1, 7)), torch.randint(0, 23, (1, 4))
    nxt = torch.randint(0, 23, (2, 3))  # three more tokens for each row
    alone = [m.logits(torch.cat([p, nxt[i : i + 1]], 1))[0, -3:] for i, p in enumerate((a, b))]
    caches = []
    for p in (a, b):  # each prompt fills its own cache, then the shorter one is padded to the longer
        c = [{} for _ in m.blocks]
        m.hidden(p, caches=c)
        caches.append(c)
    merged = [{k: torch.cat([torch.nn.functional.pad(c[i][k], (0, 0, 0, 7 - c[i][k].shape[2])) for c in caches])
               for k in ("k", "v")} | {"pad": torch.arange(7)[None] >= torch.tensor([[7], [4]])}
              for i in range(len(m.blocks))]
    pos = torch.tensor([7, 4])
    together = torch.stack([m.heads[0](m.hidden(nxt[:, t : t + 1], caches=merged, start=pos + t))[:, 0]
                            for t in range(3)], 1)
    for i in range(2):
        assert torch.allclose(together[i], alone[i], atol=1e-5)
    with pytest.raises(ValueError, match="one per row"):
        m.hidden(nxt[:, :1], start=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="start must be"):
        m.hidden(nxt[:, :1], start=torch.tensor([-1, 2]))


def test_streams_extra_embeddings_and_weight_tying():
    m = small(n_streams=3, extra_embeddings=(("modality", 2),))
    x = torch.randint(0, 23, (2, 3, 9))
    out = m({"tokens": x, "extra": {"modality": torch.zeros(2, 9, dtype=torch.long)}})
    assert out["logits"].shape == (2, 3, 9, 23)
    with_mod = m.logits(x, {"modality": torch.ones(2, 9, dtype=torch.long)})
    assert not torch.allclose(out["logits"], with_mod)
    tied = small()
    assert tied.heads[0].weight is tied.tok_emb[0].weight
    assert small(tie_weights=False).num_params() > tied.num_params()


def test_input_vectors_can_replace_the_token_embeddings():
    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=12, d_model=32, n_heads=2, max_len=16)).eval()
    tokens = torch.randint(0, 12, (2, 6))
    embeds = model.tok_emb[0](tokens)
    assert torch.allclose(model.hidden(None, embeds=embeds), model.hidden(tokens), atol=1e-6)
    caches = [{} for _ in model.blocks]  # and with the key/value cache, a few vectors at a time
    first = model.hidden(None, embeds=embeds[:, :4], caches=caches)
    rest = model.hidden(None, embeds=embeds[:, 4:], caches=caches, start=4)
    assert torch.allclose(torch.cat([first, rest], 1), model.hidden(tokens), atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        model.hidden(tokens, embeds=embeds)
    with pytest.raises(ValueError, match=r"\(B, T, 32\)"):
        model.hidden(None, embeds=embeds[..., :8])
    with pytest.raises(ValueError, match="max_len"):
        model.hidden(None, embeds=torch.zeros(1, 17, 32))


def test_score_sums_log_probs():
    m = small()
    x = torch.randint(0, 23, (2, 8))
    total, n = m.score(x, lengths=torch.tensor([8, 5]))
    logp = m.logits(x).log_softmax(-1)
    ref0 = sum(logp[0, i, x[0, i + 1]] for i in range(7))
    ref1 = sum(logp[1, i, x[1, i + 1]] for i in range(4))
    assert torch.allclose(total, torch.stack([ref0, ref1]), atol=1e-5) and n.tolist() == [7, 4]


@pytest.mark.parametrize(
    ("tokens", "error", "match"),
    [
        (torch.randint(0, 23, (10,)), ValueError, "batch dimension"),
        (torch.full((1, 4), 23), ValueError, "0..22"),
        (torch.zeros((1, 0), dtype=torch.long), ValueError, "empty"),
        (torch.zeros((1, 65), dtype=torch.long), ValueError, "max_len"),
        (torch.zeros((1, 4)), TypeError, "integer"),
    ],
)
def test_bad_tokens_are_explained(tokens, error, match):
    with pytest.raises(error, match=match):
        small()({"tokens": tokens})


def test_attention_dropout_can_differ_from_the_mlps():
    x = torch.randn(2, 8, 32)
    torch.manual_seed(0)
    m = LM(LMConfig(vocab_size=23, d_model=32, n_layers=1, n_heads=4, max_len=64, dropout=0.5, attn_dropout=0.0))
    m.train()
    block = m.blocks[0]
    assert torch.equal(block.attn(x), block.attn(x))  # no random mask on the attention probabilities
    assert not torch.equal(block.mlp(x), block.mlp(x))  # while the MLP still drops
    same = LM(LMConfig(vocab_size=23, d_model=32, n_layers=1, n_heads=4, max_len=64, dropout=0.5)).train()
    assert not torch.equal(same.blocks[0].attn(x), same.blocks[0].attn(x))  # None: the attention drops as the MLP
    # a config saved before the field existed (a cached model's) reads as None: the model it was
    old = object.__new__(LMConfig)
    old.__dict__.update({k: v for k, v in LMConfig(vocab_size=23, dropout=0.1).__dict__.items() if k != "attn_dropout"})
    assert old.attn_dropout is None and LM(old).blocks[0].attn.dropout == 0.1
    with pytest.raises(ValueError, match=r"attn_dropout=1.0: a dropout rate is in \[0, 1\) \(or None"):
        LMConfig(vocab_size=23, attn_dropout=1.0)
    with pytest.raises(ValueError, match=r"dropout=-0.1"):
        LMConfig(vocab_size=23, dropout=-0.1)
    from slm_course.spiritlm import SpiritConfig, SpiritVocab

    spirit = SpiritConfig().lm_config(SpiritVocab(30, 100))  # SpiRit-LM's recipe: dropout on the MLP only
    assert (spirit.dropout, spirit.attn_dropout) == (0.1, 0.0)


def test_generate_errors():
    m = small()
    with pytest.raises(ValueError, match="max_len"):
        m.generate(torch.zeros(60, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="temperature"):
        m.generate(torch.zeros(3, dtype=torch.long), 2, temperature=-1)
    with pytest.raises(ValueError, match="d_model"):
        LMConfig(vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="banned"):
        m.generate(torch.zeros(3, dtype=torch.long), 2, banned=[23])
    with pytest.raises(ValueError, match="at least one"):
        m.generate(torch.zeros(3, dtype=torch.long), 2, banned=range(23))
    for bad in (-3, 2.5, True):
        with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
            m.generate(torch.zeros(3, dtype=torch.long), bad)
    assert m.generate(torch.zeros(3, dtype=torch.long), 0).tolist() == [0, 0, 0]  # nothing to add: the prompt


def test_generate_never_samples_banned_tokens():
    m = small()
    g = torch.Generator().manual_seed(0)
    free = m.generate(torch.zeros(3, dtype=torch.long), 40, temperature=2.0, generator=g)[3:]
    banned = sorted(set(free.tolist()))[:3]  # tokens this model does sample
    g = torch.Generator().manual_seed(0)
    out = m.generate(torch.zeros(3, dtype=torch.long), 40, temperature=2.0, generator=g, banned=banned)[3:]
    assert len(out) == 40 and not set(out.tolist()) & set(banned)
    greedy = m.generate(torch.zeros(3, dtype=torch.long), 5, temperature=0)[3:]
    again = m.generate(torch.zeros(3, dtype=torch.long), 5, temperature=0, banned=greedy[:1].tolist())[3:]
    assert again[0] != greedy[0]  # greedy decoding takes the best token that is allowed


def test_generate_hooks_condition_force_and_restrict_tokens():
    """The one decoding loop's hooks (AudioLM's acoustic stages use them): extra ids, forced tokens, choices."""
    m = small(extra_embeddings=(("cond", 4),))
    prompt = torch.randint(0, 23, (2, 3))
    L = 3 + 9
    cond = torch.randint(0, 4, (2, L))
    # greedy with extra ids equals a full recompute with the same ids
    fast = m.generate(prompt, 9, temperature=0, extra={"cond": cond})
    slow = prompt
    for _ in range(9):
        T = slow.shape[1]
        slow = torch.cat([slow, m.logits(slow, {"cond": cond[:, :T]})[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, slow)
    # choices: each position draws only among its ids; forced: the given tokens where the mask says so
    window = lambda pos: (5, 9) if pos % 2 else (10, 12)  # noqa: E731
    forced_tokens = torch.full((2, L), 20)
    mask = torch.zeros(2, L, dtype=torch.bool)
    mask[0, 4] = mask[1, 7] = True
    out = m.generate(prompt, 9, temperature=2.0, generator=torch.Generator().manual_seed(0), extra={"cond": cond},
                     forced=(forced_tokens, mask), choices=window)
    for pos in range(3, L):
        for row in range(2):
            lo, hi = window(pos)
            assert out[row, pos] == 20 if mask[row, pos] else lo <= out[row, pos] < hi
    with pytest.raises(ValueError, match="extra"):
        m.generate(prompt, 9, extra={"cond": cond[:, :5]})
    with pytest.raises(ValueError, match="forced"):
        m.generate(prompt, 9, forced=(forced_tokens[:, :4], mask[:, :4]))


def test_lm_learns_a_pattern():
    m = small().train()
    seq = torch.arange(23).repeat(4)[:48]  # a deterministic cycle: perfectly predictable

    def batches(step):
        g = torch.Generator().manual_seed(step)
        s = torch.randint(0, 23, (8,), generator=g)
        return {"tokens": torch.stack([torch.roll(seq, -int(i))[:32] for i in s])}

    h = train(m, batches, TrainConfig(steps=120, lr=3e-3, warmup_steps=10, eval_every=0, progress=False))
    assert h.loss[-1] < 0.1 * h.loss[0]
    out = m.generate(torch.tensor([[3, 4, 5]]), 5, temperature=0)
    assert out[0, 3:].tolist() == [6, 7, 8, 9, 10]


def test_text_lm_trains_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    cfg = TextLMConfig(n_train_sentences=500, n_val_sentences=50, context=64, batch_size=8, d_model=32,
                       n_layers=1, n_heads=2, steps=100, lr=3e-3)
    lm, hist = train_text_lm(cfg, progress=False)
    assert hist.final_loss(10) < 0.75 * hist.loss[0]
    assert lm.metrics["val_ppl"] < lm.tokenizer.vocab_size  # better than uniform over characters
    calls = []
    import slm_course.textlm as lm_module

    real = lm_module.train_text_lm
    monkeypatch.setattr(lm_module, "train_text_lm", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = load_text_lm(cfg, progress=False)
    second = load_text_lm(cfg, progress=False)
    assert len(calls) == 1
    assert first.complete("the cook") == second.complete("the cook")
    with pytest.raises(ValueError, match="non-empty"):
        first.complete("  ")
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        first.complete("the cook", max_new_tokens=-3)


def test_sample_next_greedy_top_k_and_temperature():
    from slm_course.lm import sample_next

    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 5.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 2]
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, temperature=5.0, top_k=1, generator=g).tolist() == [1, 2]  # only the best survives
    draws = torch.stack([sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {1, 2} and set(draws[:, 1].tolist()) == {0, 2}  # never the cut token
