"""Checks for notebook 03's exercises (solutions/03_codec_exercises.ipynb): the RVQ loop, bitrate, SI-SNR."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._common import _as_float, _fail, _ok

__all__ = ["check_bitrate", "check_rvq_encode", "check_si_snr"]


# ---------------------------------------------------------------------------------------------
# Exercise 1: residual vector quantisation
# ---------------------------------------------------------------------------------------------


def _rvq_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(description, x (T, D), codebooks (L, K, D)) cases."""
    g = torch.Generator().manual_seed(3)
    books = torch.randn(4, 16, 6, generator=g) * torch.tensor([1.0, 0.5, 0.25, 0.125])[:, None, None]
    return [
        ("one level, 16 codes, 10 frames", torch.randn(10, 6, generator=g), books[:1]),
        ("four levels, 16 codes, 25 frames", torch.randn(25, 6, generator=g), books),
        ("two levels, a frame equal to a codeword", books[0, 3:4] + books[1, 7:8], books[:2]),
    ]


def _reference_rvq(x: torch.Tensor, books: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from slm_course.codec import rvq_encode

    return rvq_encode(x, books)


def check_rvq_encode(fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``fn(x (T, D), codebooks (L, K, D))`` -> ``(codes (L, T), quantized (T, D))``, the RVQ loop."""
    for name, x, books in _rvq_cases():
        out = fn(x.clone(), books.clone())
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            _fail(f"for {name} you returned {type(out).__name__}; return a pair (codes (L, T), quantized (T, D))")
        codes, quantized = (torch.as_tensor(o) for o in out)
        want_codes, want_q = _reference_rvq(x, books)
        L, T = want_codes.shape
        said = f"for {name}"
        if tuple(codes.shape) == (T, L) and L != T:
            _fail(f"{said} codes have shape {tuple(codes.shape)}: one row per level is expected, (L, T); stack over levels")
        if tuple(codes.shape) != (L, T):
            _fail(f"{said} codes have shape {tuple(codes.shape)}, expected (levels, frames) = {(L, T)}")
        if tuple(quantized.shape) != tuple(x.shape):
            _fail(f"{said} quantized has shape {tuple(quantized.shape)}, expected the shape of x, {tuple(x.shape)}")
        if torch.equal(codes.long(), want_codes):
            if not torch.allclose(quantized.float(), want_q, atol=1e-5):
                _fail(f"{said} the codes are right but quantized is not: it is the *sum* of the chosen codewords, "
                      "one per level (x minus the final residual)")
            continue
        first = torch.cdist(x, books[0]).argmin(dim=1)
        if not torch.equal(codes[0].long(), first):
            if torch.equal(codes[0].long(), torch.cdist(x, books[0]).argmax(dim=1)):
                _fail(f"{said} level 1 picks the *farthest* codeword; take the argmin of the distances")
            _fail(f"{said} level 1 is wrong: each frame takes the index of its nearest codeword (Euclidean "
                  "distance, torch.cdist(x, codebook).argmin(dim=1))")
        same_input = torch.stack([torch.cdist(x, b).argmin(dim=1) for b in books])
        if torch.equal(codes.long(), same_input):
            _fail(f"{said} every level quantises x itself; level l must quantise the *residual*, what the levels "
                  "before it left over (residual = residual - chosen codeword)")
        _fail(f"{said} levels after the first are wrong: subtract each level's chosen codewords from the residual "
              "before the next level looks for its nearest codeword")
    _ok("rvq_encode is correct: each level takes the nearest codeword to what the levels before it left over")


# ---------------------------------------------------------------------------------------------
# Exercise 2: bitrate
# ---------------------------------------------------------------------------------------------


def check_bitrate(fn: Callable[[float, int, int], float]) -> None:
    """``fn(frame_rate, n_levels, codebook_size)`` -> bits per second, ``frame_rate x n_levels x log2(codebook_size)``."""
    cases = [
        ("this notebook's codec, 1 level", 62.5, 1, 256),
        ("this notebook's codec, 8 levels", 62.5, 8, 256),
        ("EnCodec 24 kHz at 6 kbit/s", 75.0, 8, 1024),
        ("Moshi's Mimi", 12.5, 8, 2048),
        ("SoundStream in AudioLM", 50.0, 12, 1024),
        ("a codebook of 100 codes (not a power of two)", 50.0, 1, 100),
    ]
    for name, rate, levels, size in cases:
        expected = rate * levels * math.log2(size)
        got = _as_float(fn(rate, levels, size), f"bitrate({rate}, {levels}, {size})")
        if abs(got - expected) <= 1e-6 * expected:
            continue
        said = f"{name}: bitrate({rate}, {levels}, {size}) returned {got:g}, expected {expected:g} bit/s"
        if abs(got - rate * levels * size) < 1e-6:
            _fail(f"{said}: a code from {size} choices carries log2({size}) bits, not {size}")
        if abs(got - rate * levels * math.ceil(math.log2(size))) < 1e-6:
            _fail(f"{said}: use the exact log2(codebook_size) (an ideal entropy coder), not a whole number of bits")
        if abs(got - rate * math.log2(size)) < 1e-6:
            _fail(f"{said}: every level sends one code per frame: multiply by the number of levels")
        if abs(got - expected / 1000) < 1e-6:
            _fail(f"{said}: return bits per second, not kbit/s")
        _fail(f"{said}: frames per second x levels x bits per code (log2 of the codebook size)")
    _ok("bitrate is correct: e.g. 62.5 frames/s x 8 levels x 8 bits = 4000 bit/s, Mimi 12.5 x 8 x 11 = 1100 bit/s")


# ---------------------------------------------------------------------------------------------
# Exercise 3: SI-SNR
# ---------------------------------------------------------------------------------------------


def check_si_snr(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """``fn(estimate, reference)`` -> SI-SNR in dB of two ``(T,)`` signals."""
    from slm_course.metrics import si_snr

    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 16000
    ref = torch.sin(2 * math.pi * 220 * t) + 0.3 * torch.sin(2 * math.pi * 550 * t)
    noise = torch.randn(8000, generator=g)
    noise = noise / noise.norm() * ref.norm() * 0.1  # 20 dB below the reference
    other = torch.randn(8000, generator=g)
    cases = [
        ("the reference plus noise 20 dB below it", ref + noise, ref),
        ("half the reference plus that noise", 0.5 * ref + 0.5 * noise, ref),
        ("the reference plus a DC offset of 0.5, plus noise", ref + 0.5 + noise, ref),
        ("a reference with a DC offset, estimate noisy", ref + noise, ref + 0.2),
        ("an unrelated signal", other, ref),
        ("the reference with its sign flipped, plus noise", -ref + noise, ref),
    ]
    for name, est, r in cases:
        expected = si_snr(est, r)
        got = _as_float(fn(est.clone(), r.clone()), f"si_snr on {name}")
        if abs(got - expected) <= 0.01:
            continue
        said = f"for {name} you returned {got:.2f} dB, expected {expected:.2f} dB"
        e0, r0 = est - est.mean(), r - r.mean()
        if abs(got - 10 * math.log10(float(r0 @ r0) / float((e0 - r0) @ (e0 - r0)))) < 0.01:
            _fail(f"{said}: that is the plain SNR; project the estimate on the reference first "
                  "(proj = <est, ref> / <ref, ref> * ref) so that a change of scale costs nothing")
        est_d, ref_d = est.double(), r.double()
        proj = (est_d @ ref_d) / (ref_d @ ref_d) * ref_d
        if abs(got - 10 * math.log10(float(proj @ proj) / float((est_d - proj) @ (est_d - proj)))) < 0.01:
            _fail(f"{said}: subtract the mean of both signals first (an offset is not part of the sound)")
        if abs(got - 10 * math.log10(max(expected, 1e-9))) < 0.01 or abs(got - 10 ** (expected / 10)) < 0.01:
            _fail(f"{said}: return decibels, 10 * log10(|proj|^2 / |est - proj|^2)")
        _fail(f"{said}: zero-mean both, proj = <est, ref> ref / |ref|^2, noise = est - proj, "
              "SI-SNR = 10 log10(|proj|^2 / |noise|^2)")
    _ok("si_snr is correct: noise 20 dB down gives 20 dB whatever the scale, offset or sign of the estimate")
