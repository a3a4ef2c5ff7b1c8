"""Checks for notebook 03's exercises (solutions/03_codec_exercises.ipynb): codebook updates, losses, bitrate.

- :func:`check_ema_update` - the EMA codebook update of ``encodec``'s quantiser
- :func:`check_restart_dead_codes` - restart unused codewords from the batch, so that the restart sticks
- :func:`check_multires_mel_loss` - the course codec's multi-resolution log-mel L1
- :func:`check_entropy_bitrate` - the bit/s an ideal entropy coder needs for codec tokens
- :func:`check_dead_code_reading` - three numbers read off exercise 4's table of dead codes

and the chapter's quiz, :data:`QUIZ`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._common import _as_float, _fail, _ok
from .quiz import Question

__all__ = [
    "check_dead_code_reading",
    "check_ema_update",
    "check_entropy_bitrate",
    "check_multires_mel_loss",
    "check_restart_dead_codes",
]


def _tensors(out: Any, n: int, call: str, names: str) -> list[torch.Tensor]:
    if not (isinstance(out, (tuple, list)) and len(out) == n):
        _fail(f"{call} returned {type(out).__name__}; return a tuple of {n} tensors ({names})")
    return [torch.as_tensor(o).detach().double() for o in out]


# ---------------------------------------------------------------------------------------------
# Exercise 1a: the EMA codebook update
# ---------------------------------------------------------------------------------------------


def _ema_reference(x, embed, cluster_size, embed_sum, decay, eps=1e-5):
    """encodec's own update (training mode, no dead-code expiry): new (cluster_size, embed_sum, embed)."""
    from encodec.quantization.core_vq import EuclideanCodebook

    K, D = embed.shape
    book = EuclideanCodebook(D, K, kmeans_init=False, decay=decay, epsilon=eps, threshold_ema_dead_code=0).train()
    book.embed.copy_(embed)
    book.cluster_size.copy_(cluster_size)
    book.embed_avg.copy_(embed_sum)
    with torch.no_grad():
        book(x[None])
    return book.cluster_size.clone(), book.embed_avg.clone(), book.embed.clone()


def _ema_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(description, x (N, D), embed (K, D), cluster_size (K,), embed_sum (K, D), decay)."""
    g = torch.Generator().manual_seed(3)
    cases = []
    embed = torch.randn(6, 3, generator=g)
    size = torch.rand(6, generator=g) * 4 + 1
    cases.append(("40 vectors, 6 codes, decay 0.9", torch.randn(40, 3, generator=g), embed, size,
                  embed * size[:, None], 0.9))
    embed = torch.randn(8, 4, generator=g)
    size = torch.tensor([3.0, 2.0, 0.0, 5.0, 1.0, 0.0, 2.5, 4.0])  # codes 2 and 5: never used so far
    cases.append(("25 vectors, 8 codes of which 2 have cluster size 0, decay 0.99",
                  embed[[0, 1, 3, 4, 6, 7]].repeat(5, 1)[:25] + 0.1 * torch.randn(25, 4, generator=g),
                  embed, size, embed * size[:, None], 0.99))
    embed = torch.randn(5, 2, generator=g)
    size = torch.rand(5, generator=g) + 0.5
    cases.append(("one vector, 5 codes, decay 0.5", torch.randn(1, 2, generator=g), embed, size,
                  embed * size[:, None] + 0.1 * torch.randn(5, 2, generator=g), 0.5))
    return cases


def check_ema_update(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``fn(x (N, D), codes (N,), cluster_size (K,), embed_sum (K, D), decay)`` -> new ``(cluster_size, embed_sum, embed)``.

    Compared with ``encodec``'s ``EuclideanCodebook`` in training mode, on vectors whose codes are
    their nearest codewords.
    """
    for name, x, embed, size, embed_sum, decay in _ema_cases():
        codes = torch.cdist(x, embed).argmin(dim=1)
        call = f"ema_update on {name}"
        got = _tensors(fn(x.clone(), codes.clone(), size.clone(), embed_sum.clone(), decay), 3, call,
                       "cluster_size (K,), embed_sum (K, D), embed (K, D)")
        want = [t.double() for t in _ema_reference(x, embed, size, embed_sum, decay)]
        for got_t, want_t, what in zip(got, want, ("cluster_size", "embed_sum", "embed")):
            if tuple(got_t.shape) != tuple(want_t.shape):
                _fail(f"{call}: {what} has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}")
        got_size, got_sum, got_embed = got
        counts = torch.bincount(codes, minlength=len(embed)).double()
        sums = torch.zeros_like(embed, dtype=torch.float64).index_add_(0, codes, x.double())
        if not torch.allclose(got_size, want[0], atol=1e-5):
            if torch.allclose(got_size, (1 - decay) * size.double() + decay * counts, atol=1e-5):
                _fail(f"{call}: cluster_size has decay and 1 - decay swapped: the old value keeps the weight "
                      f"decay ({decay}), the batch's counts get 1 - decay")
            if torch.allclose(got_size, counts, atol=1e-5):
                _fail(f"{call}: cluster_size is just this batch's counts; it is a moving average: "
                      "decay * old + (1 - decay) * counts")
            _fail(f"{call}: cluster_size is {got_size.tolist()[:4]}..., expected {want[0].tolist()[:4]}...: "
                  "decay * cluster_size + (1 - decay) * (how many vectors chose each code)")
        if not torch.allclose(got_sum, want[1], atol=1e-5):
            means = sums / counts.clamp_min(1)[:, None]
            if torch.allclose(got_sum, decay * embed_sum.double() + (1 - decay) * means, atol=1e-5):
                _fail(f"{call}: embed_sum averages the *sum* of the vectors that chose each code (one_hot.T @ x), "
                      "not their mean: the division by the count comes at the end, by cluster_size")
            _fail(f"{call}: embed_sum is wrong: decay * embed_sum + (1 - decay) * (sum of the vectors that "
                  "chose each code)")
        if not torch.isfinite(got_embed).all():
            _fail(f"{call}: embed has inf or nan: a code with cluster size 0 divides by zero; smooth the sizes "
                  "first (Laplace): (cluster_size + eps) / (cluster_size.sum() + K * eps) * cluster_size.sum()")
        if not torch.allclose(got_embed, want[2], atol=1e-4):
            if torch.allclose(got_embed, embed.double(), atol=1e-6):
                _fail(f"{call}: embed did not change; the new codewords are embed_sum / (smoothed) cluster_size")
            if torch.allclose(got_embed, want[1] / want[0].clamp_min(1e-12)[:, None], atol=1e-4):
                _fail(f"{call}: almost: divide by the Laplace-smoothed cluster sizes, "
                      "(cluster_size + eps) / (cluster_size.sum() + K * eps) * cluster_size.sum(), as encodec does")
            _fail(f"{call}: embed is wrong: each codeword is its embed_sum divided by its smoothed cluster size")
    _ok("ema_update matches encodec's codebook: each codeword is a moving average of the vectors that chose it")


# ---------------------------------------------------------------------------------------------
# Exercise 1b: dead-code restart
# ---------------------------------------------------------------------------------------------


_DRAW = "samples[torch.randint(len(samples), (n_dead,), generator=generator)]"


def _check_restart_draw(fn: Callable[..., Any], given: tuple[torch.Tensor, ...], samples: torch.Tensor,
                        threshold: float, dead: torch.Tensor, rows: torch.Tensor) -> None:
    """The restarted codewords ``rows`` (n_dead, D) must be the draw the instructions name, in code order."""
    call = "restart_dead_codes"
    n_dead = int(dead.sum())
    want = torch.randint(len(samples), (n_dead,), generator=torch.Generator().manual_seed(0))
    got = torch.cdist(rows, samples.double()).argmin(dim=1)  # which row of samples each dead code got
    if torch.equal(got, want):
        return
    said = (f"with a generator seeded 0, the {n_dead} dead codes {dead.nonzero().flatten().tolist()} got rows "
            f"{got.tolist()} of samples, expected rows {want.tolist()}")
    again = fn(*(t.clone() for t in given), samples.clone(), threshold, torch.Generator().manual_seed(0))
    again_rows = torch.as_tensor(again[0]).detach().double()[dead] if isinstance(again, (tuple, list)) else None
    if again_rows is None or not torch.allclose(again_rows, rows):
        _fail(f"{call}: two calls with generators seeded alike (torch.Generator().manual_seed(0)) restarted the "
              "dead codes on different rows: draw with the generator you are given, "
              f"{_DRAW}, so that a training run can be reproduced")
    distinct = len(got.unique())
    if distinct < n_dead:
        _fail(f"{call}: {said}, only {distinct} different ones: two dead codes restarted on the same row compete "
              "for the same vectors, and one of them dies again; draw one row per dead code, "
              f"{_DRAW}")
    if torch.equal(got, torch.arange(n_dead)):
        _fail(f"{call}: {said}: those are the first {n_dead} rows of the batch, not random ones; draw them with "
              f"{_DRAW}")
    if torch.equal(got.sort().values, want.sort().values):
        _fail(f"{call}: {said}: the right rows, in another order; give the i-th row drawn to the i-th dead code, "
              "in code order (embed[dead] = picks)")
    every = torch.randint(len(samples), (len(dead),), generator=torch.Generator().manual_seed(0))[dead]
    if torch.equal(got, every):
        _fail(f"{call}: {said}: you drew a row for every code ({len(dead)}) and kept the dead codes' rows; draw "
              f"only n_dead = {n_dead} rows, {_DRAW}")
    _fail(f"{call}: {said}: draw the rows with exactly {_DRAW}: one call, n_dead rows, the generator you are given; "
          "then embed[dead] = those rows, in code order")


def check_restart_dead_codes(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``fn(embed, cluster_size, embed_sum, samples, threshold, generator)`` -> new ``(embed, cluster_size, embed_sum)``.

    Codes whose ``cluster_size < threshold`` are dead: in code order they become the rows
    ``samples[torch.randint(len(samples), (n_dead,), generator=generator)]``, with
    ``cluster_size = threshold`` and ``embed_sum = threshold * codeword`` so that the next EMA update
    keeps them; live codes are left alone.
    """
    g = torch.Generator().manual_seed(5)
    K, D, threshold = 12, 3, 2.0
    embed = torch.randn(K, D, generator=g)
    size = torch.tensor([5.0, 0.1, 3.0, 2.0, 0.0, 7.0, 1.9, 4.0, 0.5, 2.5, 6.0, 0.0])  # exactly 2.0: alive
    embed_sum = embed * size[:, None]
    samples = torch.randn(100, D, generator=g) + 10  # far from every codeword
    dead = size < threshold
    call = "restart_dead_codes"
    given = (embed.clone(), size.clone(), embed_sum.clone())
    got = _tensors(fn(*given, samples.clone(), threshold, torch.Generator().manual_seed(0)), 3, call,
                   "embed (K, D), cluster_size (K,), embed_sum (K, D)")
    changed = [name for name, t, before in zip(("embed", "cluster_size", "embed_sum"), given, (embed, size, embed_sum))
               if not torch.equal(t, before)]
    if changed:
        _fail(f"{call} changed the {', '.join(changed)} passed in: change copies (embed.clone(), ...) and return "
              "them; the caller's tensors must keep their old values (the cell below measures how far a code "
              "moved from them)")
    new_embed, new_size, new_sum = got
    if tuple(new_embed.shape) != (K, D) or tuple(new_size.shape) != (K,) or tuple(new_sum.shape) != (K, D):
        _fail(f"{call} returned shapes {[tuple(t.shape) for t in got]}; expected (K, D), (K,), (K, D) = "
              f"{[(K, D), (K,), (K, D)]}, in the order embed, cluster_size, embed_sum")
    if not torch.allclose(new_embed[~dead], embed[~dead].double()):
        if torch.allclose(new_embed[size > threshold], embed[size > threshold].double()):
            _fail(f"{call}: a code whose cluster size equals the threshold ({threshold}) was restarted; "
                  "dead means cluster_size < threshold, strictly")
        _fail(f"{call}: live codes (cluster_size >= threshold) changed; restart only the dead ones")
    if torch.allclose(new_embed[dead], embed[dead].double()):
        _fail(f"{call}: the dead codes (cluster_size < {threshold}: codes {dead.nonzero().flatten().tolist()}) "
              "kept their codewords; replace each by a random row of samples")
    distance = torch.cdist(new_embed[dead], samples.double()).min(dim=1).values
    if (distance > 1e-5).any():
        _fail(f"{call}: some restarted codewords are not rows of samples; copy randomly chosen rows of the batch")
    if len(torch.unique(new_embed[dead], dim=0)) < 2:
        _fail(f"{call}: every dead code got the same sample; draw one random row per dead code")
    _check_restart_draw(fn, given, samples, threshold, dead, new_embed[dead])
    if not torch.allclose(new_size[~dead], size[~dead].double()) or not torch.allclose(new_sum[~dead], embed_sum[~dead].double()):
        _fail(f"{call}: cluster_size or embed_sum of live codes changed; leave them alone")
    if torch.allclose(new_size[dead], size[dead].double()):
        _fail(f"{call}: the restart will not stick: cluster_size of the restarted codes is unchanged, so the next "
              "EMA update sets the codeword back to embed_sum / cluster_size, its old value (this is what the "
              f"installed encodec does); set cluster_size to the threshold ({threshold}) and embed_sum to "
              "threshold * new codeword")
    if not torch.allclose(new_size[dead], torch.full_like(new_size[dead], threshold)):
        _fail(f"{call}: restarted codes should get cluster_size = threshold ({threshold}), got "
              f"{new_size[dead].tolist()}")
    if not torch.allclose(new_sum[dead], threshold * new_embed[dead], atol=1e-6):
        _fail(f"{call}: embed_sum of a restarted code must be threshold * its new codeword, so that "
              "embed_sum / cluster_size is the codeword; otherwise the next EMA update undoes the restart")
    _ok("restart_dead_codes is correct: dead codes restart on rows of the batch drawn with the generator, and the "
        "EMA update will keep them")


# ---------------------------------------------------------------------------------------------
# Exercise 2: the multi-resolution mel loss
# ---------------------------------------------------------------------------------------------


def _mel_variant(wav_hat, wav, power=1.0, log=torch.log10, floor=1e-5, resolutions=((512, 40), (1024, 80), (2048, 128)),
                 reduce="mean", squared=False, hop_div=4, center=True, mel_scale="htk", norm=None, win_div=1,
                 clamp=False, batch_sum=False):
    """The codec's mel loss, or the same with one of the usual slips (each keyword names one)."""
    import torchaudio

    losses = []
    for n, m in resolutions:
        mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=n, win_length=n // win_div, hop_length=n // hop_div,
                                                   n_mels=m, power=power, center=center, mel_scale=mel_scale,
                                                   norm=norm)
        a, b = mel(wav_hat), mel(wav)
        diff = log(a.clamp_min(floor)) - log(b.clamp_min(floor)) if clamp else log(a + floor) - log(b + floor)
        err = diff**2 if squared else diff.abs()
        losses.append(err.mean(dim=(-2, -1)).sum() if batch_sum else err.mean())
    total = torch.stack(losses)
    return float(total.mean() if reduce == "mean" else total.sum())


_MEL_MISTAKES = (  # (the slip, as _mel_variant's keywords; what to do instead)
    (dict(power=2.0), "use magnitude mel spectrograms (power=1.0), as the codec does, not power"),
    (dict(log=torch.log), "use log10, not the natural log"),
    (dict(reduce="sum"), "average the three resolutions' losses; do not add them"),
    (dict(resolutions=((512, 40),)), "use all three resolutions: (512, 40), (1024, 80), (2048, 128)"),
    (dict(floor=0.0), "add the floor 1e-5 before the log (digital silence would give log10(0) = -inf)"),
    (dict(squared=True), "take the mean *absolute* difference of the log-mels (L1), not the squared one "
     "(L2): L1 does not let a few loud errors dominate"),
    (dict(hop_div=2), "that is a hop of n_fft // 2; use hop_length = n_fft // 4 (128, 256 and 512 samples), "
     "so that the windows overlap by three quarters, as in the codec"),
    (dict(center=False), "leave MelSpectrogram's center=True (the default): it pads half a window at each end, so "
     "the first and last frames of the clip are compared too; center=False drops them"),
    (dict(mel_scale="slaney"), "use torchaudio's default mel scale (mel_scale=\"htk\", norm=None), as the codec "
     "does, not Slaney's"),
    (dict(mel_scale="slaney", norm="slaney"), "use torchaudio's default mel scale and filters (mel_scale=\"htk\", "
     "norm=None), as the codec does, not Slaney's"),
    (dict(clamp=True), "add the floor, log10(mel + 1e-5), rather than clamp_min(1e-5): clamping changes only the "
     "values below 1e-5, while + 1e-5 shifts every value, which matters for the quiet bins near the floor"),
    (dict(win_div=2), "leave win_length at its default, n_fft: each window is n_fft samples long (32, 64 and 128 ms), "
     "not n_fft // 2"),
    (dict(batch_sum=True), "average over the whole batch too (.mean() over every element); you added up the "
     "examples' means"),
)


def check_multires_mel_loss(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """``fn(wav_hat (B, T), wav (B, T))`` -> the course codec's multi-resolution log-mel L1 (one number)."""
    from slm_course.codec import CodecConfig, CodecModel

    reference = CodecModel(CodecConfig())
    g = torch.Generator().manual_seed(7)
    t = torch.arange(8192) / 16000
    tone = torch.sin(2 * math.pi * 300 * t) * torch.linspace(0, 1, 8192)
    silent_tail = tone.clone()
    silent_tail[4096:] = 0.0  # digital silence: log10(0) without the floor
    noise = torch.randn(1, 8192, generator=g)
    cases = [
        ("noise against a tone", 0.1 * torch.randn(2, 8192, generator=g), torch.stack([tone, 0.5 * tone])),
        ("a tone against the same tone with a silent second half", tone[None].clone(), silent_tail[None]),
        ("a quieter copy of noise", 0.3 * noise, noise),
    ]
    for name, wav_hat, wav in cases:
        with torch.no_grad():
            expected = float(reference.mel_loss(wav_hat, wav))
        raw = fn(wav_hat.clone(), wav.clone())
        if isinstance(raw, (float, torch.Tensor)) and torch.as_tensor(raw).numel() == 1:
            if not math.isfinite(float(torch.as_tensor(raw).detach())):
                _fail(f"for {name} you returned {float(torch.as_tensor(raw).detach())}: add the floor 1e-5 before "
                      "the log, since silence makes log10(0) = -inf")
        got = _as_float(raw, f"multires_mel_loss on {name}")
        if abs(got - expected) <= 1e-4 * max(1.0, abs(expected)):
            continue
        said = f"for {name} you returned {got:.4f}, expected {expected:.4f}"
        for kwargs, advice in _MEL_MISTAKES:
            with torch.no_grad():
                value = _mel_variant(wav_hat, wav, **kwargs)
            if math.isfinite(value) and abs(got - value) <= 1e-4 * max(1.0, abs(value)):
                _fail(f"{said}: {advice}")
        if got > 10:
            _fail(f"{said}: add the floor 1e-5 before the log: silence makes log10(0) = -inf")
        _fail(f"{said}: for each (n_fft, n_mels) in (512, 40), (1024, 80), (2048, 128), a MelSpectrogram with "
              "hop n_fft // 4 and power=1.0, then mean |log10(mel(wav_hat) + 1e-5) - log10(mel(wav) + 1e-5)|; "
              "average the three")
    # a loss trains the codec only through its gradient: a float or a detached tensor has none
    wav_hat = (0.1 * torch.randn(1, 8192, generator=g)).requires_grad_()
    loss = fn(wav_hat, tone[None].clone())
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        _fail(f"the values are right, but you returned a {type(loss).__name__} that carries no gradient "
              f"({'a Python number' if not isinstance(loss, torch.Tensor) else 'requires_grad is False'}): keep it a "
              "tensor computed from wav_hat (no float(), .item(), .detach() or torch.no_grad()), so that "
              "loss.backward() can train the codec")
    loss.backward()
    if wav_hat.grad is None or not bool(torch.isfinite(wav_hat.grad).all()) or not bool(wav_hat.grad.abs().sum() > 0):
        _fail("loss.backward() gave wav_hat no finite, non-zero gradient: compute the loss from wav_hat itself")
    _ok("multires_mel_loss matches CodecModel.mel_loss: three window lengths, log10 magnitudes with a floor, "
        "and a gradient that reaches the waveform")


# ---------------------------------------------------------------------------------------------
# Exercise 3: bitrate with an entropy coder
# ---------------------------------------------------------------------------------------------


def _entropy_bits(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    from slm_course.codec import codebook_usage

    _, perplexity = codebook_usage(ids, vocab_size)
    return torch.log2(perplexity)  # (L,) bits per code, one entropy per level


def check_entropy_bitrate(fn: Callable[[torch.Tensor, int, float], Any]) -> None:
    """``fn(ids (L, T), vocab_size, frame_rate)`` -> bit/s of an ideal entropy coder, one code histogram per level."""
    g = torch.Generator().manual_seed(11)
    skewed = torch.multinomial(torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625] + [0.0] * 11), 400, True, generator=g)
    cases = [
        ("one level, every one of 16 codes used equally", torch.arange(16).repeat(10)[None], 16, 50.0),
        ("one level, always code 3", torch.full((1, 100), 3), 16, 50.0),
        ("one level, a skewed histogram", skewed[None], 16, 62.5),
        ("two levels: uniform over 4 codes, then skewed", torch.stack([torch.arange(400) % 4, skewed]), 16, 62.5),
        ("three levels of random codes from 256", torch.randint(0, 256, (3, 500), generator=g), 256, 12.5),
    ]
    for name, ids, vocab, rate in cases:
        bits = _entropy_bits(ids, vocab)  # (L,)
        expected = float(rate * bits.sum())
        got = _as_float(fn(ids.clone(), vocab, rate), f"entropy_bitrate on {name}", "bit/s",
                        ": a code that never occurs has p = 0, and 0 * log2(0) is nan in torch; count those terms "
                        "as 0 (keep p[p > 0], or use torch.xlogy(p, p))")
        if abs(got - expected) <= 1e-6 * max(1.0, expected) + 1e-9:
            continue
        said = f"for {name} you returned {got:.4g} bit/s, expected {expected:.4g}"
        if abs(got - expected * math.log(2)) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: that is in nats; use log2 for bits")
        if abs(got - float(bits.sum())) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: that is bits per frame; multiply by the frame rate")
        if abs(got - rate * len(ids) * math.log2(vocab)) < 1e-6:
            _fail(f"{said}: that is the fixed rate, log2(vocab_size) bits per code; an entropy coder needs "
                  "H = -sum p log2 p bits per code, from each level's code histogram")
        used = torch.tensor([len(row.unique()) for row in ids], dtype=torch.float64)
        if abs(got - rate * float(torch.log2(used).sum())) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: log2(codes used) assumes every used code equally likely; use the entropy of the histogram")
        pooled = float(_entropy_bits(ids.flatten()[None], vocab).sum())
        if len(ids) > 1 and abs(got - rate * len(ids) * pooled) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: one histogram per level (each level has its own codebook), not one for all levels")
        if len(ids) > 1 and abs(got - rate * float(bits.mean())) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: that is the levels' average entropy; add the levels' entropies up: every frame sends "
                  f"one code of each of the {len(ids)} levels, each costing its own level's H bits")
        if abs(got - rate * sum(math.ceil(float(b) - 1e-9) for b in bits)) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: you rounded each level's H up to whole bits; an ideal entropy coder (arithmetic coding) "
                  "spends H bits per code on average, fractions included")
        counts = [torch.bincount(row, minlength=vocab).double() for row in ids]
        per_vocab = sum(float(-torch.xlogy(c / vocab, c / vocab).sum()) for c in counts) / math.log(2)  # bits
        if abs(got - rate * per_vocab) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: p must be the share of the level's T = {ids.shape[1]} frames that chose each code, "
                  f"bincount / T, so that it sums to 1; you divided by vocab_size ({vocab})")
        transposed = float(_entropy_bits(ids.T, vocab).sum()) if ids.shape[1] > 0 else math.nan
        if abs(got - rate * transposed) < 1e-6 * max(1.0, expected):
            _fail(f"{said}: ids is (L, T) = {tuple(ids.shape)}, one row per level; you made one histogram per "
                  "frame (a column): loop over the rows")
        _fail(f"{said}: per level, p = bincount(codes, minlength=vocab_size) / T, H = -sum p log2 p (0 log 0 = 0); "
              "bit/s = frame_rate x sum of the levels' H")
    _ok("entropy_bitrate is correct: frame rate x the sum of each level's code entropy in bits")


# ---------------------------------------------------------------------------------------------
# Exercise 4: reading the dead-code table
# ---------------------------------------------------------------------------------------------


def _vq_row(online_vq: Callable[[float, float], Any], threshold: float, decay: float, K: int) -> tuple[int, float]:
    out = online_vq(threshold, decay)
    call = f"online_vq({threshold}, {decay})"
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        _fail(f"{call} returned {type(out).__name__}; it must return (codes used, held-out MSE): run the table's "
              "cell as it is given")
    used, mse = _as_float(out[0], call), _as_float(out[1], call)
    if not (used == int(used) and 0 < used <= K):
        _fail(f"{call} says {used:g} codes are used, of K = {K}: run the table's cell as it is given")
    return int(used), mse


def check_dead_code_reading(n_dead: Any, n_dead_fast: Any, error_drop: Any, *,
                            online_vq: Callable[[float, float], Any], K: int) -> None:
    """Exercise 4's graded part: three numbers read off the table of ``online_vq(threshold, decay)``.

    ``n_dead``: codes no held-out vector picks, without restarts, decay 0.99; ``n_dead_fast``: the same
    at decay 0.9; ``error_drop``: the share of the held-out MSE that a restart (threshold 1) removes at
    decay 0.99. The table is recomputed here with the learner's own ``online_vq``.
    """
    slow_used, slow_mse = _vq_row(online_vq, 0.0, 0.99, K)
    restart_used, restart_mse = _vq_row(online_vq, 1.0, 0.99, K)
    fast_used, _ = _vq_row(online_vq, 0.0, 0.9, K)
    rows = (f"the table's rows: no restart, decay 0.99: {slow_used} of {K} codes used; restart, decay 0.99: "
            f"{restart_used}; no restart, decay 0.9: {fast_used}")
    for name, value, want, decay in (("n_dead", n_dead, K - slow_used, 0.99),
                                     ("n_dead_fast", n_dead_fast, K - fast_used, 0.9)):
        got = _as_float(value, name, "codes")
        if got == want:
            continue
        said = f"{name} = {got:g}, but {want} of the {K} codes are unused without restarts at decay {decay} ({rows})"
        if got == K - want:
            _fail(f"{said}: {got:g} is the number of codes *used*; a dead code is one that no vector picks, "
                  f"K minus the codes used")
        if decay == 0.99 and got == K - restart_used:
            _fail(f"{said}: {got:g} is what is left with a restart (threshold 1); {name} asks for the run without "
                  "restarts (threshold 0)")
        if got == K - (fast_used if decay == 0.99 else slow_used):
            _fail(f"{said}: {got:g} belongs to the other decay; {name} asks for decay {decay}")
        if 0 < got < 1:
            _fail(f"{said}: give the number of codes, not a share of K")
        _fail(f"{said}: read the 'codes used' column of the row with threshold 0 and decay {decay}, and count the "
              f"codes it leaves unused")
    got = _as_float(error_drop, "error_drop")
    want = 1 - restart_mse / slow_mse
    if abs(got - want) <= 0.005:  # numbers read from the printout are rounded to 3 decimals
        _ok(f"read from the table: without restarts, {K - slow_used} of {K} codes are dead at decay 0.99 and "
            f"{K - fast_used} at decay 0.9; a restart removes {want:.0%} of the held-out error at decay 0.99. Now "
            "explain why")
        return
    said = (f"error_drop = {got:.4g}, but the held-out MSE falls from {slow_mse:.3f} (no restart, decay 0.99) to "
            f"{restart_mse:.3f} (restart, decay 0.99), so the restart removes {want:.3f} of it")
    if abs(got - 100 * want) <= 0.5:
        _fail(f"{said}: give a share between 0 and 1, not a percentage")
    if abs(got - (slow_mse - restart_mse)) <= 0.005:
        _fail(f"{said}: {got:.3f} is the difference of the two errors; divide it by the error without restart")
    if abs(got - restart_mse / slow_mse) <= 0.005:
        _fail(f"{said}: {got:.3f} is the share of the error that is *left*; the share removed is 1 minus it")
    if abs(got - (slow_mse / restart_mse - 1)) <= 0.005:
        _fail(f"{said}: you divided by the error with the restart; divide by the error without it, "
              "1 - MSE(restart) / MSE(no restart)")
    if abs(got + want) <= 0.005:
        _fail(f"{said}: the sign is the wrong way round: the restart lowers the error, so the share removed is "
              "positive")
    _fail(f"{said}: error_drop = 1 - MSE(restart, decay 0.99) / MSE(no restart, decay 0.99)")


# ---------------------------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------------------------

QUIZ = (
    Question(
        "A codec at 50 frames per second must send 3 kbit/s with ONE codebook (plain vector quantisation). "
        "How many codewords would it need? Answer with the exponent n of 2**n.",
        answer=60, tolerance=0,
        hint="section 1 (bits per frame = bitrate / frame rate; a code from K codewords carries log2 K bits)",
    ),
    Question(
        "With the straight-through estimator q = r + (c - r).detach(), what gradient reaches the encoder's output "
        "r from the decoder's loss L?",
        choices=("a) zero: argmin has no gradient",
                 "b) dL/dq scaled by the commitment weight, so that the encoder moves towards its codeword",
                 "c) the gradient of |r - c|^2",
                 "d) dL/dq itself, as if q were r"),
        answer="d",
        hint="section 2, 'Training through a quantiser', and the assert on grad_dec",
    ),
    Question(
        "SoundStream trains with quantiser dropout (a random number of levels at each step). What is it meant to "
        "give, and what did the course find when its codec was trained without it (always all 8 levels)?",
        choices=("a) codebooks whose codes are all used; without it the last levels used only a few of their "
                 "256 codes, and 8 levels sounded worse",
                 "b) one trained model that can be decoded at several bitrates; yet from level 1 alone this codec "
                 "decoded nearly as well without it",
                 "c) one trained model that can be decoded at several bitrates; without it, level 1 alone "
                 "decoded to noise that the recogniser could not transcribe",
                 "d) a regulariser, as dropout is in a classifier; without it the codec over-fitted its "
                 "training voices and the held-out mel distance rose at every level"),
        answer="b",
        hint="section 3 on quantiser dropout, and section 8, which quotes the measurement without it "
             "(results/03_codec.md)",
    ),
    Question(
        "A level uses its 256 codes with a perplexity of 32 at 62.5 frames per second. How many bit/s would an "
        "ideal entropy coder need for that level?",
        answer=312.5, tolerance=0.5,
        hint="section 6: log2(perplexity) is the bits a level really carries per frame",
    ),
    Question(
        "Section 9's two speaker probes score 2-level audio differently: the one trained on the original "
        "recordings is close to chance, the one trained on 2-level audio almost always right. Which reading fits "
        "both numbers?",
        choices=("a) the first 2 levels carry nothing about the speaker; the second probe tells the utterances "
                 "apart by their words, which differ between the speakers",
                 "b) the decoder turns every speaker into one and the same voice, the voice the codec heard most "
                 "often in training",
                 "c) the 2 levels keep what tells the speakers apart, but decode it into voices unlike the "
                 "speakers' own",
                 "d) the probe trained on originals has over-fitted its 60 training recordings, and would be near "
                 "chance on other original recordings too"),
        answer="c",
        hint="section 9: what each of the two probes asks, and the row of original audio",
    ),
)
