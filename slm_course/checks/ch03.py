"""Checks for notebook 03's exercises (solutions/03_codec_exercises.ipynb): codebook updates, losses, bitrate.

- :func:`check_ema_update` - the EMA codebook update of ``encodec``'s quantiser
- :func:`check_restart_dead_codes` - restart unused codewords from the batch, so that the restart sticks
- :func:`check_multires_mel_loss` - the course codec's multi-resolution log-mel L1
- :func:`check_entropy_bitrate` - the bit/s an ideal entropy coder needs for codec tokens

and the chapter's quiz, :data:`QUIZ`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._common import _as_float, _fail, _ok
from .quiz import Question

__all__ = ["check_ema_update", "check_entropy_bitrate", "check_multires_mel_loss", "check_restart_dead_codes"]


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


def check_restart_dead_codes(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``fn(embed, cluster_size, embed_sum, samples, threshold, generator)`` -> new ``(embed, cluster_size, embed_sum)``.

    Codes whose ``cluster_size < threshold`` are dead: each becomes a random row of ``samples``, with
    ``cluster_size = threshold`` and ``embed_sum = threshold * codeword`` so that the next EMA update
    keeps it; live codes are left alone.
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
    _ok("restart_dead_codes is correct: dead codes restart from the batch, and the EMA update will keep them")


# ---------------------------------------------------------------------------------------------
# Exercise 2: the multi-resolution mel loss
# ---------------------------------------------------------------------------------------------


def _mel_variant(wav_hat, wav, power=1.0, log=torch.log10, floor=1e-5, resolutions=((512, 40), (1024, 80), (2048, 128)),
                 reduce="mean", squared=False):
    import torchaudio

    losses = []
    for n, m in resolutions:
        mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=n, hop_length=n // 4, n_mels=m, power=power)
        diff = log(mel(wav_hat) + floor) - log(mel(wav) + floor)
        losses.append((diff**2 if squared else diff.abs()).mean())
    total = torch.stack(losses)
    return float(total.mean() if reduce == "mean" else total.sum())


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
        variants = [
            (dict(power=2.0), "use magnitude mel spectrograms (power=1.0), as the codec does, not power"),
            (dict(log=torch.log), "use log10, not the natural log"),
            (dict(reduce="sum"), "average the three resolutions' losses; do not add them"),
            (dict(resolutions=((512, 40),)), "use all three resolutions: (512, 40), (1024, 80), (2048, 128)"),
            (dict(floor=0.0), "add the floor 1e-5 before the log (digital silence would give log10(0) = -inf)"),
            (dict(squared=True), "take the mean *absolute* difference of the log-mels (L1), not the squared one "
             "(L2): L1 does not let a few loud errors dominate"),
        ]
        for kwargs, advice in variants:
            with torch.no_grad():
                value = _mel_variant(wav_hat, wav, **kwargs)
            if math.isfinite(value) and abs(got - value) <= 1e-4 * max(1.0, abs(value)):
                _fail(f"{said}: {advice}")
        if got > 10:
            _fail(f"{said}: add the floor 1e-5 before the log: silence makes log10(0) = -inf")
        _fail(f"{said}: for each (n_fft, n_mels) in (512, 40), (1024, 80), (2048, 128), a MelSpectrogram with "
              "hop n_fft // 4 and power=1.0, then mean |log10(mel(wav_hat) + 1e-5) - log10(mel(wav) + 1e-5)|; "
              "average the three")
    _ok("multires_mel_loss matches CodecModel.mel_loss: three window lengths, log10 magnitudes with a floor")


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
        _fail(f"{said}: per level, p = bincount(codes, minlength=vocab_size) / T, H = -sum p log2 p (0 log 0 = 0); "
              "bit/s = frame_rate x sum of the levels' H")
    _ok("entropy_bitrate is correct: frame rate x the sum of each level's code entropy in bits")


# ---------------------------------------------------------------------------------------------
# Quiz
# ---------------------------------------------------------------------------------------------

QUIZ = (
    Question(
        "A codec at 75 frames per second must send 6 kbit/s with ONE codebook (plain vector quantisation). "
        "How many codewords would it need? Answer with the exponent n of 2**n.",
        answer=80, tolerance=0,
        hint="section 2 (bits per frame = bitrate / frame rate; a code from K codewords carries log2 K bits)",
    ),
    Question(
        "With the straight-through estimator q = r + (c - r).detach(), what gradient reaches the encoder's output "
        "r from the decoder's loss L?",
        choices=("a) zero: argmin has no gradient",
                 "b) dL/dq scaled by the commitment weight, so that the encoder moves towards its codeword",
                 "c) the gradient of |r - c|^2", "d) dL/dq, unchanged, as if the quantiser were the identity"),
        answer="d",
        hint="section 2, 'Training through a quantiser', and the assert on grad_dec",
    ),
    Question(
        "If the course codec had always been trained with all 8 levels (no quantiser dropout), what would you "
        "expect when decoding from level 1 alone?",
        choices=("a) worse: the decoder never learned to decode a single level's coarse vector",
                 "b) the same quality as now: level 1 is the same codebook either way, and it is the level "
                 "that carries most of the signal",
                 "c) better: every level would be better trained"),
        answer="a",
        hint="section 3 (quantiser dropout) and section 4",
    ),
    Question(
        "A level uses its 256 codes with a perplexity of 32 at 62.5 frames per second. How many bit/s would an "
        "ideal entropy coder need for that level?",
        answer=312.5, tolerance=0.5,
        hint="section 6: log2(perplexity) is the bits a level really carries per frame",
    ),
    Question(
        "A speaker probe trained on ORIGINAL recordings is near chance on audio decoded from 2 levels, while a "
        "probe trained on 2-level audio names the speakers well. What does this say?",
        choices=("a) the first 2 levels carry no information about the speaker",
                 "b) the first 2 levels tell the speakers apart, but decode to voices that do not sound like them",
                 "c) the probe trained on originals is broken"),
        answer="b",
        hint="section 9: what each of the two probes asks",
    ),
)
