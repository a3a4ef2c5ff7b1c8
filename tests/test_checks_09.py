"""Notebook 09's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch
import torch.nn.functional as F

from slm_course import checks


def pool_adapter(adapter, feats, lengths, exclude_padding=True, zero_before_norm=False, mlp_first=False,
                 strided=False):
    B, T, D = feats.shape
    s = adapter.stride
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    x = adapter.norm(feats * mask[..., None]) if zero_before_norm else adapter.norm(feats) * mask[..., None]
    if mlp_first:  # the MLP on each frame, then the mean: the MLP is not linear, so that differs
        x = adapter.mlp(x) * mask[..., None]
    pad = -T % s
    x, mask = F.pad(x, (0, 0, 0, pad)), F.pad(mask, (0, pad))
    if strided:  # groups of frames s apart, not s neighbours
        count = mask.view(B, s, -1).sum(1).clamp(min=1)
        return adapter.mlp(x.view(B, s, -1, D).sum(1) / count[..., None])
    count = mask.view(B, -1, s).sum(-1) if exclude_padding else torch.full((B, (T + pad) // s), float(s))
    mean = x.view(B, -1, s, x.shape[-1]).sum(2) / count.clamp(min=1)[..., None]
    return mean if mlp_first else adapter.mlp(mean)


def window_qformer(qf, feats, lengths, hide_padding=True, empty="first", invert=False, query_major=False):
    B, T, _ = feats.shape
    W, Q = qf.window, qf.n_queries
    pad = -T % W
    x = F.pad(qf.inp(feats), (0, 0, 0, pad))
    n = x.shape[1] // W
    frames = x.view(B * n, W, -1) + qf.pos
    real = F.pad(torch.arange(T)[None] < lengths[:, None], (0, pad)).view(B * n, W)
    padding = real if invert else ~real
    hollow = padding.all(1)  # a window of padding only, whose vectors are never used
    if empty == "first":
        padding[:, 0] = False
    elif empty == "last":
        padding[hollow, -1] = False
    elif empty == "all":
        padding[hollow] = False
    q = qf.queries.expand(B * n, Q, -1)
    for layer in qf.layers:
        q = layer(q, frames, memory_key_padding_mask=padding if hide_padding else None)
    out = qf.out(q)
    if query_major:  # each query's vectors together, not each window's
        return out.view(B, n, Q, -1).transpose(1, 2).reshape(B, n * Q, -1)
    return out.reshape(B, n * Q, -1)


def lora_linear(x, W, b, A, B, alpha, rank):
    return x @ W.T + b + (alpha / rank) * (x @ A.T) @ B.T


def lora_merge(W, A, B, alpha, rank):
    return W + (alpha / rank) * B @ A


def test_the_solutions_pass(capsys):
    checks.check_pool_adapter(pool_adapter)
    checks.check_window_qformer(window_qformer)
    checks.check_lora_linear(lora_linear)
    checks.check_lora_merge(lora_merge)
    assert capsys.readouterr().out.count("✓") == 4


def test_pool_adapter_check_names_the_padding_mistake():
    with pytest.raises(AssertionError, match="padding frames"):
        checks.check_pool_adapter(lambda a, f, n: pool_adapter(a, f, n, exclude_padding=False))
    with pytest.raises(AssertionError, match="after the LayerNorm"):  # LayerNorm(0) is its bias, not 0
        checks.check_pool_adapter(lambda a, f, n: pool_adapter(a, f, n, zero_before_norm=True))


@pytest.mark.parametrize("mistake", ["mlp_first", "strided"])
def test_pool_adapter_check_names_an_order_mistake_as_one(mistake):
    with pytest.raises(AssertionError, match="average each group of `stride` frames, then adapter.mlp") as caught:
        checks.check_pool_adapter(lambda a, f, n: pool_adapter(a, f, n, **{mistake: True}))
    assert "padding" not in str(caught.value)


def test_pool_adapter_check_wants_the_vectors_alone_and_the_right_shape():
    with pytest.raises(AssertionError, match="only the tensor"):
        checks.check_pool_adapter(lambda a, f, n: (pool_adapter(a, f, n), n))
    with pytest.raises(AssertionError, match="shape"):
        checks.check_pool_adapter(lambda a, f, n: pool_adapter(a, f, n)[:, :-1])  # the last group dropped


def test_window_qformer_check_names_the_padding_and_the_position_mistakes():
    with pytest.raises(AssertionError, match="padding"):
        checks.check_window_qformer(lambda q, f, n: window_qformer(q, f, n, hide_padding=False))

    def no_positions(qf, feats, lengths):
        saved = qf.pos.data.clone()
        qf.pos.data.zero_()
        try:
            return window_qformer(qf, feats, lengths)
        finally:
            qf.pos.data.copy_(saved)

    with pytest.raises(AssertionError, match="qformer.pos"):
        checks.check_window_qformer(no_positions)


def whole_utterance(qf, feats, lengths):
    """Every window's queries attend to every frame of the utterance: no windows at all."""
    B, T, _ = feats.shape
    n = -(-T // qf.window)
    x = qf.inp(feats) + qf.pos.repeat(n, 1)[:T]
    q = qf.queries.expand(B, qf.n_queries, -1)
    for layer in qf.layers:
        q = layer(q, x, memory_key_padding_mask=torch.arange(T)[None] >= lengths[:, None])
    return qf.out(q).repeat(1, n, 1)


def test_window_qformer_check_names_the_order_the_windows_and_the_inverted_mask():
    with pytest.raises(AssertionError, match="right vectors in the wrong order") as caught:
        checks.check_window_qformer(lambda q, f, n: window_qformer(q, f, n, query_major=True))
    assert "padding frames must" not in str(caught.value)
    with pytest.raises(AssertionError, match="every window gave the same vectors"):
        checks.check_window_qformer(whole_utterance)
    with pytest.raises(AssertionError, match="with no padding, the mask hides nothing"):
        checks.check_window_qformer(lambda q, f, n: window_qformer(q, f, n, invert=True))
    with pytest.raises(AssertionError, match="the mask hid every frame"):  # inverted, and no frame left visible
        checks.check_window_qformer(lambda q, f, n: window_qformer(q, f, n, invert=True, empty="none"))


@pytest.mark.parametrize("empty", ["last", "all", "none"])
def test_window_qformer_check_ignores_the_vectors_of_windows_of_padding_only(empty):
    checks.check_window_qformer(lambda q, f, n: window_qformer(q, f, n, empty=empty))


def test_lora_checks_name_the_missing_update_and_the_missing_scale():
    with pytest.raises(AssertionError, match="frozen layer alone"):
        checks.check_lora_linear(lambda x, W, b, A, B, alpha, r: x @ W.T + b)
    with pytest.raises(AssertionError, match="alpha / rank"):
        checks.check_lora_linear(lambda x, W, b, A, B, alpha, r: x @ W.T + b + x @ A.T @ B.T)
    with pytest.raises(AssertionError, match="W \\+ \\(alpha / rank\\)"):
        checks.check_lora_merge(lambda W, A, B, alpha, r: W + B @ A)
    with pytest.raises(AssertionError, match="shape"):
        checks.check_lora_merge(lambda W, A, B, alpha, r: A.T @ B.T)
    with pytest.raises(AssertionError, match="do not change W in place"):
        checks.check_lora_merge(lambda W, A, B, alpha, r: W.add_((alpha / r) * B @ A))
    # an integer division of the scale (every other case's alpha / rank is a whole number)
    with pytest.raises(AssertionError, match="not //"):
        checks.check_lora_linear(lambda x, W, b, A, B, alpha, r: x @ W.T + b + (alpha // r) * (x @ A.T @ B.T))
    with pytest.raises(AssertionError, match="W \\+ \\(alpha / rank\\)"):
        checks.check_lora_merge(lambda W, A, B, alpha, r: W + (alpha // r) * B @ A)


def test_quiz_09_answers():
    answers = {1: 50, 2: 10240, 3: "d", 4: "a", 5: "c"}
    checks.check_quiz("09", answers)
    with pytest.raises(AssertionError):
        checks.check_quiz("09", {**answers, 2: 16 * 128})
