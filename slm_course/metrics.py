"""How wrong is a transcript, or a decoded waveform? WER and CER (notebook 01); SI-SNR and mel distance (notebook 03).

The error rate counts the fewest substitutions, deletions and insertions (the Levenshtein edit
distance) that turn the hypothesis into the reference, divided by the reference length. Over a
corpus it is *total* edits over *total* reference length (not the mean of per-utterance rates), so
long utterances weigh more. Both texts are normalised first (lowercase, no punctuation), so that
"Hello, world!" and "hello world" count as the same transcript.

>>> wer("the cat sat", "the cat sat down")  # one insertion over three words
0.3333333333333333
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import torch
from torchaudio.functional import edit_distance

from slm_course import audio

__all__ = ["MEL_FLOOR", "cer", "edit_distance", "mel_distance", "normalize_text", "si_snr", "wer"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")  # an apostrophe not inside a word


def normalize_text(text: str) -> str:
    """Lowercase, replace punctuation by spaces (keeping apostrophes inside words), collapse whitespace.

    >>> normalize_text("  Don't STOP -- it's 'fine', OK?")
    "don't stop it's fine ok"
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = "".join(
        " " if unicodedata.category(ch)[0] in "PS" and ch != "'" else ch for ch in text
    )  # punctuation and symbols -> space
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def _pairs(refs: str | Sequence[str], hyps: str | Sequence[str]) -> list[tuple[str, str]]:
    """Check the arguments of :func:`wer`/:func:`cer` and pair references with hypotheses."""
    if isinstance(refs, str) != isinstance(hyps, str):
        raise TypeError(
            "refs and hyps must both be a str or both be a list of str; "
            f"got {type(refs).__name__} and {type(hyps).__name__}"
        )
    if isinstance(refs, str):
        return [(refs, hyps)]  # type: ignore[list-item]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(
            f"got {len(refs)} references but {len(hyps)} hypotheses; pass one hypothesis per reference, in order"
        )
    for i, (r, h) in enumerate(zip(refs, hyps)):
        if not isinstance(r, str) or not isinstance(h, str):
            raise TypeError(
                f"item {i}: references and hypotheses must be str, got {type(r).__name__}, {type(h).__name__}"
            )
    return list(zip(refs, hyps))


def _error_rate(pairs: list[tuple[str, str]], split, normalize: bool, unit: str) -> float:
    edits = 0
    total = 0
    for ref, hyp in pairs:
        if normalize:
            ref, hyp = normalize_text(ref), normalize_text(hyp)
        r, h = split(ref), split(hyp)
        edits += edit_distance(r, h)
        total += len(r)
    if total == 0:
        raise ValueError(
            f"the references hold no {unit}s (after normalisation), so the error rate is undefined; "
            "drop empty references before scoring"
        )
    return edits / total


def wer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normalize: bool = True) -> float:
    """Word error rate: total word edit distance / total reference words (texts normalised first).

    >>> wer(["a b c", "d"], ["a x c", "d e"])  # 1 substitution + 1 insertion over 4 words
    0.5
    """
    return _error_rate(_pairs(refs, hyps), str.split, normalize, "word")


def cer(refs: str | Sequence[str], hyps: str | Sequence[str], *, normalize: bool = True) -> float:
    """Character error rate: total character edit distance / total reference characters (spaces count).

    >>> cer("abcd", "abd")
    0.25
    """
    return _error_rate(_pairs(refs, hyps), list, normalize, "character")


# ---------------------------------------------------------------------------------------------
# Audio quality (notebook 03): SI-SNR and mel distance of a decoded waveform against the original
# ---------------------------------------------------------------------------------------------

MEL_FLOOR = 1e-5  # mel_distance compares log10(mel power + MEL_FLOOR): silence sits at -5, not -inf


def _pair(estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    est = audio.check_wav(estimate, name="estimate")
    ref = audio.check_wav(reference, name="reference", allow_silence=False)  # SI-SNR projects onto it
    if est.shape != ref.shape:
        raise ValueError(
            f"estimate has {est.numel()} samples and reference {ref.numel()}; compare signals of one length "
            "(codec.match_length(estimate, len(reference)) cuts or pads a decoded waveform)"
        )
    return est.double(), ref.double()


def si_snr(estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB: ``10 log10(|proj|^2 / |estimate - proj|^2)``.

    Both signals are made zero-mean; ``proj = <estimate, ref> ref / |ref|^2`` is the part of the
    estimate that lies along the reference. A scaled copy scores very high (the error is rounding
    noise), independent noise about ``-10 log10(noise power / signal power)``; a signal with the
    right spectrum but a different phase scores near or below 0 dB. (As audiocraft's ``sisnr.py``.)

    >>> ref = torch.sin(torch.arange(800.0) / 5)
    >>> si_snr(0.5 * ref, ref) > 100  # a scaled copy: only rounding error is left
    True
    """
    est, ref = _pair(estimate, reference)
    est, ref = est - est.mean(), ref - ref.mean()
    proj = (est @ ref) / (ref @ ref).clamp_min(1e-20) * ref
    noise = est - proj
    return float(10 * torch.log10((proj @ proj).clamp_min(1e-20) / (noise @ noise).clamp_min(1e-20)))


def mel_distance(
    estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, sr: int = audio.SR, n_mels: int = 80
) -> float:
    """Mean absolute difference of ``log10(mel power + MEL_FLOOR)``, 80 bands, 25 ms windows every 10 ms.

    0 for identical signals; about 1 means the mel energies differ by a factor of 10 on average.
    The floor (1e-5, as audiocraft's mel loss) keeps eSpeak's digital silence from dominating.
    """
    est, ref = _pair(estimate, reference)
    log_e = audio.log_mel(est.float(), sr, n_mels=n_mels, floor=MEL_FLOOR) / math.log(10)  # (n_mels, frames)
    log_r = audio.log_mel(ref.float(), sr, n_mels=n_mels, floor=MEL_FLOOR) / math.log(10)
    return float((log_e - log_r).abs().mean())
