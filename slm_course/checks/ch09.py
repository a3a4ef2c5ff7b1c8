"""Checks for notebook 09's exercises (solutions/09_salmonn_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_lora_linear", "check_lora_merge", "check_pool_adapter", "check_window_qformer"]


def _as_tensor(value, call: str) -> torch.Tensor:
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        _fail(f"{call} returned a {type(value).__name__}; return only the tensor of vectors")
    if not isinstance(value, torch.Tensor):
        _fail(f"{call} returned {type(value).__name__}; return a tensor")
    return value.detach().float()


def _frames(B: int, T: int, D: int, seed: int) -> torch.Tensor:
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def check_pool_adapter(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(adapter, feats (B, T, D), lengths (B,)) -> (B, ceil(T / stride), d_lm)``: a ``PoolAdapter``'s vectors."""
    from slm_course.salmonn import PoolAdapter

    # the padding-free case first: a mistake in the order of the steps shows there, with the hint that names it
    for stride, T, lengths in ((2, 8, [8, 8]), (1, 5, [5, 3]), (2, 7, [7, 4]), (3, 10, [10, 2])):
        torch.manual_seed(stride * 100 + T)
        adapter = PoolAdapter(6, 8, stride=stride, hidden=16).eval()
        with torch.no_grad():  # a LayerNorm that maps a zero frame to a non-zero one: zeroing too early shows
            adapter.norm.weight.normal_(1.0, 0.3)
            adapter.norm.bias.normal_()
        feats = _frames(2, T, 6, T)
        lens = torch.tensor(lengths)
        with torch.no_grad():
            want = adapter(feats, lens)[0]
            got = _as_tensor(fn(adapter, feats.clone(), lens.clone()), "pool_adapter(adapter, feats, lengths)")
        if tuple(got.shape) != tuple(want.shape):
            _fail(f"stride {stride}, {T} frames: you returned shape {tuple(got.shape)}, expected "
                  f"{tuple(want.shape)}: one vector per {stride} frames, the last group padded (ceil(T / stride))")
        if not torch.allclose(got, want, atol=1e-5):
            b = int((got - want).abs().flatten(1).amax(1).argmax())
            hint = (f"row {b} has padding frames ({T - lengths[b] + (-T % stride)}): zero them after the LayerNorm "
                    "and divide each group by how many real frames it holds, not by the stride"
                    ) if lengths[b] < T or T % stride else (
                "normalise each frame (adapter.norm), average each group of `stride` frames, then adapter.mlp")
            _fail(f"stride {stride}, lengths {lengths}: row {b} differs from the adapter's by up to "
                  f"{float((got - want)[b].abs().max()):.3g}; {hint}")
    _ok("pool_adapter gives the adapter's vectors: LayerNorm, the mean of each group of real frames, the MLP")


def check_window_qformer(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(qformer, feats (B, T, D), lengths (B,)) -> (B, ceil(T / window) * n_queries, d_lm)``."""
    from slm_course.salmonn import WindowQFormer

    # padding-free cases first (one query, then two): a mistake in the order of windows or queries shows there
    cases = ((4, 1, 8, [8, 8]), (3, 2, 9, [9, 9]), (4, 1, 10, [10, 6]), (3, 2, 7, [7, 5]), (2, 1, 5, [5, 1]))
    for window, n_queries, T, lengths in cases:
        torch.manual_seed(window * 10 + n_queries + T)
        qf = WindowQFormer(6, 8, window=window, n_queries=n_queries, d_model=16, n_heads=2).eval()
        with torch.no_grad():  # position embeddings and queries that are not nearly zero: mistakes show
            qf.pos.normal_()
            qf.queries.normal_()
        feats = _frames(2, T, 6, T + 1)
        lens = torch.tensor(lengths)
        with torch.no_grad():
            want = qf(feats, lens)[0]
            got = _as_tensor(fn(qf, feats.clone(), lens.clone()), "window_qformer(qformer, feats, lengths)")
        if tuple(got.shape) != tuple(want.shape):
            _fail(f"window {window}, {n_queries} queries, {T} frames: you returned shape {tuple(got.shape)}, "
                  f"expected {tuple(want.shape)}: ceil(T / window) windows, n_queries vectors each, in time order")
        # only the vectors the LM reads: a window of padding alone gives vectors that out_lengths drops
        used = qf.out_lengths(lens).tolist()
        gap = float(torch.stack([(got[b, :n] - want[b, :n]).abs().max() for b, n in enumerate(used)]).max())
        if not gap <= 1e-4:  # also when got holds NaN
            if all(n == T for n in lengths):
                hint = _qformer_mistake(qf, feats, got, want)
            else:
                hint = ("padding frames must be hidden from the queries: memory_key_padding_mask True where a frame "
                        "is padding (and at least one frame per window left visible)")
            _fail(f"window {window}, {n_queries} queries, lengths {lengths}: your vectors differ from the "
                  f"Q-Former's by up to {gap:.3g}; {hint}")
    _ok("window_qformer gives the Q-Former's vectors: each window's queries attend to that window's frames only")


def _qformer_mistake(qf, feats: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> str:
    """What a padding-free answer most likely got wrong (``feats``' frames a whole number of windows)."""
    B, T, _ = feats.shape
    n, W, Q = T // qf.window, qf.window, qf.n_queries
    with torch.no_grad():  # the Q-Former without its position embeddings
        q = qf.queries.expand(B * n, Q, -1)
        for layer in qf.layers:
            q = layer(q, qf.inp(feats).view(B * n, W, -1))
        no_pos = qf.out(q).reshape(B, n * Q, -1)
    if torch.isnan(got).any():
        return ("your vectors hold NaN: the queries attended to no frame at all; memory_key_padding_mask is True "
                "where a frame is padding (to hide it), False where it is speech")
    if torch.allclose(got, no_pos, atol=1e-4):
        return ("add qformer.pos to each window's frames after qformer.inp: without it no query can tell where in "
                "its window a frame is")
    windows = got.view(B, n, Q, -1)
    if n > 1 and torch.allclose(windows, windows[:, :1].expand_as(windows), atol=1e-4):
        return ("every window gave the same vectors, so its queries did not read that window's frames: either they "
                "attended to the whole utterance (view the frames as (B * windows, window, d)), or the mask hid "
                "every frame (True hides a frame; with no padding it is all False)")
    nearest = torch.cdist(got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])).min(1).values
    if bool((nearest <= 1e-3).all()):
        return ("these are the right vectors in the wrong order: windows in time order, and in each window its "
                "queries in order (reshape (B * windows, n_queries, d) to (B, windows * n_queries, d))")
    return ("add qformer.pos to each window's frames (after qformer.inp), let the queries attend with "
            "qformer.layers, then qformer.out; keep the windows in time order; with no padding, the mask hides "
            "nothing")


def _peft_linear(d_in: int, d_out: int, rank: int, alpha: float, seed: int):
    """A ``peft`` LoRA layer around a random ``nn.Linear`` whose ``B`` is not zero (as after training)."""
    from peft import LoraConfig, inject_adapter_in_model
    from torch import nn

    torch.manual_seed(seed)
    holder = nn.Sequential(nn.Linear(d_in, d_out))
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"]), holder)
    layer = holder[0]
    nn.init.normal_(layer.lora_B["default"].weight, std=0.3)
    W, b = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    return layer, W, b, A, B


def check_lora_linear(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(x, W, b, A, B, alpha, rank) -> x W^T + b + (alpha / rank) x A^T B^T``, as ``peft`` computes it."""
    # the last case's alpha / rank is not a whole number: an integer division shows there
    for d_in, d_out, rank, alpha in ((6, 4, 2, 4.0), (8, 8, 4, 16.0), (5, 7, 1, 1.0), (6, 5, 4, 10.0)):
        layer, W, b, A, B = _peft_linear(d_in, d_out, rank, alpha, d_in + rank)
        x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(rank))
        with torch.no_grad():
            want = layer(x)
            got = _as_tensor(fn(x, W, b, A, B, alpha, rank), "lora_linear(x, W, b, A, B, alpha, rank)")
        if tuple(got.shape) != tuple(want.shape):
            _fail(f"in {d_in}, out {d_out}, rank {rank}: you returned shape {tuple(got.shape)}, expected "
                  f"{tuple(want.shape)} (one output row per input row): A is (rank, in), B is (out, rank)")
        if not torch.allclose(got, want, atol=1e-5):
            base = x @ W.T + b
            if torch.allclose(got, base, atol=1e-5):
                hint = "that is the frozen layer alone: add the low-rank update (alpha / rank) * x A^T B^T"
            elif torch.allclose(got, base + x @ A.T @ B.T, atol=1e-5):
                hint = f"the update must be scaled by alpha / rank = {alpha / rank:g}"
            elif torch.allclose(got, base + (alpha // rank) * (x @ A.T @ B.T), atol=1e-5):
                hint = f"alpha / rank is {alpha / rank:g} here: divide with /, not // (which rounds it down)"
            else:
                hint = "compute x W^T + b + (alpha / rank) * (x A^T) B^T"
            _fail(f"in {d_in}, out {d_out}, rank {rank}, alpha {alpha:g}: your output differs from peft's LoRA "
                  f"layer by up to {float((got - want).abs().max()):.3g}; {hint}")
    _ok("lora_linear computes what peft's LoRA layer does: the frozen layer plus (alpha / r) B A x")


def check_lora_merge(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(W, A, B, alpha, rank) -> W + (alpha / rank) B A``: one weight that computes the LoRA layer."""
    for d_in, d_out, rank, alpha in ((6, 4, 2, 4.0), (8, 8, 4, 16.0), (6, 5, 4, 10.0)):  # the last: alpha / rank = 2.5
        layer, W, b, A, B = _peft_linear(d_in, d_out, rank, alpha, 7 * d_in + rank)
        given = W.clone()
        got = _as_tensor(fn(given, A.clone(), B.clone(), alpha, rank), "lora_merge(W, A, B, alpha, rank)")
        if not torch.equal(given, W):
            _fail("lora_merge changed the W it was given: do not change W in place (W.add_, W +=); return a new "
                  "tensor, W + (alpha / rank) * B @ A, so that W' - W can still be measured")
        if tuple(got.shape) != tuple(W.shape):
            _fail(f"in {d_in}, out {d_out}: you returned shape {tuple(got.shape)}, expected W's shape "
                  f"{tuple(W.shape)}: B A is (out, in), like W")
        x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(rank))
        with torch.no_grad():
            want = layer(x)
        if not torch.allclose(x @ got.T + b, want, atol=1e-5):
            _fail(f"in {d_in}, out {d_out}, rank {rank}: a layer with your merged weight computes something else "
                  f"than the LoRA layer (up to {float((x @ got.T + b - want).abs().max()):.3g} apart); "
                  f"the merged weight is W + (alpha / rank) * B @ A")
        rank_of_update = int(torch.linalg.matrix_rank(got - W))
        if rank_of_update > rank:
            _fail(f"the update you added has rank {rank_of_update}, more than LoRA's rank {rank}")
    _ok("lora_merge folds the update into W: the layer computes the same, and W' - W has rank at most r")


QUIZ = (
    Question(
        "An utterance lasts 3.0 s. The encoder gives one frame every 30 ms, and the pooling adapter averages "
        "frames in pairs. How many LM positions does the audio take (without <audio>, </audio> and the summary)?",
        answer=50,
        tolerance=0,
        hint="notebook 09, section 3: how many frames a second, and how many frames per position",
    ),
    Question(
        "LoRA of rank 16 on one linear layer of the LM that maps 128 inputs to 512 outputs: how many numbers "
        "does it train (A and B; no bias)?",
        answer=10240,
        tolerance=0,
        hint="notebook 09, section 3: A is (r, in), B is (out, r)",
    ),
    Question(
        "Why does a speech-aware LM keep its text LM frozen (with LoRA beside it)?",
        choices=(
            "a) a frozen LM trains faster because no gradient flows through it at all, not even to the "
            "adapter and the encoder below it",
            "b) the LM cannot read the adapter's vectors unless its weights are frozen: a trained LM would move "
            "its embedding space away from where the adapter writes at every step",
            "c) LoRA only works on frozen layers of speech models",
            "d) what the LM learnt from text (its words, its grammar) stays in its frozen weights (checked "
            "unchanged), so scaling LoRA down or removing it gets the text LM back",
        ),
        answer="d",
        hint="notebook 09, sections 1 and 3: what is trained, and what is checked unchanged",
    ),
    Question(
        "What is task over-fitting in SALMONN's sense?",
        choices=(
            "a) after instruction tuning on a few kinds of task, the model answers an instruction it was not "
            "trained on as if it were one of those tasks (it transcribes or labels instead)",
            "b) the model's accuracy on the training speakers is higher than on held-out speakers, because "
            "it has memorised their voices and their recordings along with every phrasing of the tasks it "
            "was trained on",
            "c) the adapter's vectors grow too large for the LM",
            "d) the model stops transcribing after activation tuning",
        ),
        answer="a",
        hint="notebook 09, section 6: what the model does when asked to continue the story",
    ),
    Question(
        "The cascade of notebook 01 (recogniser, then a text LM) is asked who speaks. Why is it near chance?",
        choices=(
            "a) its recogniser makes too many word errors on held-out voices for the text LM to work out "
            "from the words who is likely to have said them",
            "b) its text LM is smaller than the speech-aware LM's",
            "c) the transcript it passes on holds only the words; the voice (pitch, timbre) is not in it",
            "d) it was never shown the prompt",
        ),
        answer="c",
        hint="notebook 09, section 7, and notebook 01's what_text_loses",
    ),
)
