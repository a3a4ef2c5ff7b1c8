"""Checks for notebook 01's exercises (solutions/01_cascade_exercises.ipynb)."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from ._common import _as_float, _fail, _ok
from .quiz import Question

__all__ = [
    "check_ctc_force_align",
    "check_kv_cache_attention",
    "check_lr_experiment",
    "check_question_classifier",
    "check_sample_with_temperature",
    "check_wer",
    "question_cases",
]

# ---------------------------------------------------------------------------------------------
# Notebook 01 (solutions/01_cascade_exercises.ipynb): CTC alignment, KV cache, WER, intonation, sampling
# ---------------------------------------------------------------------------------------------


def _ctc_extended(target: list[int], blank: int = 0) -> list[int]:
    ext = [blank]
    for c in target:
        ext += [c, blank]
    return ext


def _collapse(path: list[int], blank: int = 0) -> list[int]:
    """CTC's read-out rule: merge repeated symbols, then drop blanks."""
    merged = [s for t, s in enumerate(path) if t == 0 or s != path[t - 1]]
    return [s for s in merged if s != blank]


def _best_path_score(log_probs: torch.Tensor, target: list[int], blank: int = 0, end: str = "either") -> float:
    """The log-probability of the best CTC path that reads out ``target`` (Viterbi over the extended label).

    ``end``: "either" (the right rule), or only paths that end on the last "blank" or on the last "symbol".
    """
    ext = _ctc_extended(target, blank)
    S = len(ext)
    score = torch.full((S,), -math.inf, dtype=torch.float64)
    lp = log_probs.double()
    score[: min(2, S)] = lp[0, ext[: min(2, S)]]
    for t in range(1, len(lp)):
        prev = score.clone()
        for s in range(S):
            best = prev[s]
            if s >= 1:
                best = torch.maximum(best, prev[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                best = torch.maximum(best, prev[s - 2])
            score[s] = best + lp[t, ext[s]]
    if S == 1 or end == "blank":
        return float(score[-1])
    return float(score[-2]) if end == "symbol" else float(score[-2:].max())


def _align_cases() -> list[tuple[str, torch.Tensor, list[int]]]:
    """(description, (T, V) log-probs, target ids) cases for CTC forced alignment; 6 symbols, blank = 0.

    The cases that need a path to start on the first symbol or end on the last one come first, so that
    a wrong start or end is diagnosed before a doubled symbol is. The 40 small random cases at the end
    catch a recursion that keeps the logsumexp (the forward sum) instead of the max: its path is not
    the most likely one in about one case in eight.
    """
    g = torch.Generator().manual_seed(3)

    def rand(T: int) -> torch.Tensor:
        return torch.randn(T, 6, generator=g).mul(2).log_softmax(dim=-1)

    peaked = torch.full((7, 6), -6.0)
    peaked[torch.arange(7), torch.tensor([0, 1, 1, 0, 2, 2, 0])] = 0.0  # frames '_ a a _ b b _'
    doubled = torch.full((3, 6), -6.0)
    doubled[:, 3] = 0.0  # frames that say 'c c c': the only path to 'c c' in 3 frames is 'c _ c'
    cases = [
        ("random log-probs, 5 frames, target 'a b a b c' (as many symbols as frames: the path starts on the "
         "first symbol and ends on the last)", rand(5), [1, 2, 1, 2, 3]),
        ("frames that clearly say '_ a a _ b b _', target 'a b'", peaked.log_softmax(dim=-1), [1, 2]),
        ("3 frames that say 'c c c', target 'c c'", doubled.log_softmax(dim=-1), [3, 3]),
        ("random log-probs, 8 frames, target 'a b c'", rand(8), [1, 2, 3]),
        ("random log-probs, 6 frames, target 'c c' (a doubled symbol needs a blank between)", rand(6), [3, 3]),
        ("random log-probs, 12 frames, target 'd a a d'", rand(12), [4, 1, 1, 4]),
        ("random log-probs, 30 frames, target 'b e e c a'", rand(30), [2, 5, 5, 3, 1]),
    ]
    for i in range(40):  # short random cases: where the best single path and the best summed state disagree
        U = 1 + i % 4
        target = torch.randint(1, 6, (U,), generator=g).tolist()
        T = U + sum(a == b for a, b in zip(target, target[1:])) + 1 + i % 5
        name = " ".join("_abcde"[c] for c in target)
        cases.append((f"random log-probs, {T} frames, target '{name}' (random case {i + 1} of 40)", rand(T), target))
    return cases


def check_ctc_force_align(fn: Callable[[torch.Tensor, list[int]], list[int]]) -> None:
    """``fn(log_probs, target)``: the most likely CTC path (one symbol id per frame) that reads out ``target``."""
    for name, lp, target in _align_cases():
        got = fn(lp.clone(), list(target))
        if isinstance(got, torch.Tensor):
            got = got.tolist()
        if not isinstance(got, (list, tuple)) or not all(isinstance(i, int) for i in got):
            _fail(f"for {name} you returned {got!r}; return a list of ints, one symbol id per frame")
        got = list(got)
        said = f"for {name} you returned the path {got}"
        if len(got) != len(lp):
            _fail(
                f"{said} ({len(got)} ids) for {len(lp)} frames: return one symbol per frame (blanks included), "
                "not the collapsed text; backtrack from the last frame to the first"
            )
        read = _collapse(got)
        if read != list(target):
            hint = "backtrack through the pointers you stored, from the last frame to frame 0"
            doubles = any(a == b for a, b in zip(target, target[1:]))
            if doubles and read == _collapse(list(target)):  # the two equal symbols merged: the blank was skipped
                hint = ("a path may skip the blank between two *different* symbols only; between equal ones "
                        "(here a doubled symbol) the blank must stay, or the two merge into one")
            elif len(read) < len(target):
                hint = ("the path must end on the last symbol or the last blank of the extended label, whichever "
                        "scores better, and start on its first blank or its first symbol (with as many symbols "
                        "as frames, only the first symbol and the last symbol are possible)")
            _fail(f"{said}, which reads out {read} (merge repeats, drop blanks), not the target {list(target)}: {hint}")
        score = float(lp.double()[torch.arange(len(lp)), torch.tensor(got)].sum())
        best = _best_path_score(lp, list(target))
        if score < best - 1e-6:
            for end, other in (("symbol", "blank"), ("blank", "symbol")):
                if got[-1] == ({"symbol": target[-1], "blank": 0}[end] if target else 0) and abs(
                        score - _best_path_score(lp, list(target), end=end)) <= 1e-6:
                    _fail(
                        f"{said}: the best path that ends on the last {end}, with log-probability {score:.3f}; the "
                        f"best path ending on the last {other} has {best:.3f}. End on the better of the two: "
                        "compare delta at the last frame for the last symbol and the last blank, and backtrack from "
                        "the larger"
                    )
            _fail(
                f"{said}: it reads out the target, but its log-probability is {score:.3f} and the best path's is "
                f"{best:.3f}. Keep, for every frame t and position s of the extended label, the *max* (not the "
                "logsumexp) over the allowed predecessors (stay, step, skip a blank between different symbols), "
                "remember which one won, and end on the better of the last symbol and the last blank"
            )
    _ok("forced alignment is correct: each path reads out its target and is the most likely such path")


def _attention_variants(attn: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of one causal attention layer under typical KV-cache mistakes, for the check's diagnosis."""
    B, T, C = x.shape
    H = attn.n_heads
    Dh = C // H
    q, k, v = attn.qkv(x).split(C, dim=2)
    q, k, v = (t.view(B, T, H, Dh).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
    scores = q @ k.transpose(-2, -1)  # (B, H, T, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    past_only = torch.ones(T, T, dtype=torch.bool).triu(0)  # the cache read before the new key is added

    def out(w: torch.Tensor, proj: bool = True) -> torch.Tensor:
        y = (w @ v).transpose(1, 2).reshape(B, T, C)
        return attn.proj(y) if proj else y

    eye = torch.eye(T).expand(B, H, T, T)
    variants = {
        "no scaling": out(scores.masked_fill(future, -math.inf).softmax(-1)),
        "no proj": out((scores / math.sqrt(Dh)).masked_fill(future, -math.inf).softmax(-1), proj=False),
        "only itself": out(eye),
    }
    before = (scores / math.sqrt(Dh)).masked_fill(past_only, -math.inf).softmax(-1).nan_to_num(0.0)
    variants["before append"] = out(before)
    return variants


def check_kv_cache_attention(fn: Callable[[Any, torch.Tensor, dict], torch.Tensor]) -> None:
    """``fn(attn, x_t, cache)``: one step of causal attention with a key/value cache, equal to the full recompute."""
    from slm_course.lm import Attention, LMConfig

    torch.manual_seed(0)
    for B, T, C, H in ((1, 6, 16, 2), (2, 9, 24, 4), (3, 1, 8, 1)):
        attn = Attention(LMConfig(vocab_size=2, d_model=C, n_heads=H)).eval()
        with torch.no_grad():
            for p in attn.parameters():
                p.normal_(0, 0.5)  # random weights and biases, so that every mistake shows
            x = torch.randn(B, T, C)
            expected = attn(x)  # (B, T, C): all positions at once, causally masked
            layer = SimpleNamespace(qkv=attn.qkv, proj=attn.proj, n_heads=H)  # the weights, not the package's forward
            cache: dict = {}
            steps = []
            for t in range(T):
                y = fn(layer, x[:, t : t + 1].clone(), cache)
                if not isinstance(y, torch.Tensor) or tuple(y.shape) != (B, 1, C):
                    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    _fail(f"at step {t} (x_t of shape {(B, 1, C)}) you returned {shape}; return (B, 1, C), "
                          "the new position's output only")
                steps.append(y)
            got = torch.cat(steps, dim=1)
        said = f"with B={B}, T={T}, d_model={C}, {H} heads, your outputs differ from the full causal attention"
        if torch.allclose(got, expected, atol=1e-5):
            continue
        first = int(((got - expected).abs().amax(dim=(0, 2)) > 1e-5).nonzero()[0])
        said += f" from step {first} on (largest difference {float((got - expected).abs().max()):.2g})"
        for name, variant in _attention_variants(attn, x).items():
            if torch.allclose(got, variant, atol=1e-5):
                reason = {
                    "no scaling": "divide the scores q . k by sqrt(d_head) before the softmax",
                    "no proj": "pass the heads' concatenated output through attn.proj at the end",
                    "only itself": "the new query must attend to every cached key, not only its own: append the "
                                   "new k and v to the cache and attend over all of them",
                    "before append": "append the new key and value to the cache *before* attending: a position "
                                     "attends to itself too",
                }[name]
                _fail(f"{said}: {reason}")
        _fail(
            f"{said}: split qkv(x_t) into q, k, v, reshape each to (B, heads, 1, d_head), append k and v to the "
            "cache along the time axis (dim 2), then softmax(q k^T / sqrt(d_head)) v over all cached positions, "
            "heads back side by side, and attn.proj"
        )
    _ok("your cached attention gives the full recompute's outputs, one new position at a time")


def _indel_distance(r: list[str], h: list[str]) -> int:
    """Edits when a substitution costs 2 (a deletion and an insertion): len(r) + len(h) - 2 x their longest common
    subsequence. The usual mistake of an edit-distance table."""
    lcs = [[0] * (len(h) + 1) for _ in range(len(r) + 1)]
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            lcs[i][j] = lcs[i - 1][j - 1] + 1 if r[i - 1] == h[j - 1] else max(lcs[i - 1][j], lcs[i][j - 1])
    return len(r) + len(h) - 2 * lcs[-1][-1]


def check_wer(fn: Callable[[str, str], float]) -> None:
    """``fn(ref, hyp)``: word error rate of one hypothesis, word edit distance / reference words."""
    from slm_course.metrics import edit_distance

    cases = [
        ("the cook cuts the cake", "the cook cuts the cake"),
        ("the cook cuts the cake", "the cook cut the cake"),
        ("the cook cuts the cake", "the cook cuts cake"),
        ("the cook cuts the cake", "the big cook cuts the cake"),
        ("the cook cuts the cake", ""),
        ("a b", "c d e f"),
        ("where is the plate", "is the plate where"),
        ("the dog", "dog the"),
    ]
    for ref, hyp in cases:
        r, h = ref.split(), hyp.split()
        expected = edit_distance(r, h) / len(r)
        got = _as_float(fn(ref, hyp), f"wer({ref!r}, {hyp!r})")
        if abs(got - expected) <= 1e-9:
            continue
        said = f"wer({ref!r}, {hyp!r}) returned {got:g}, expected {expected:g}"
        edits = edit_distance(r, h)
        if expected and abs(got - 100 * expected) <= 1e-6:
            _fail(f"{said}: that is a percentage; return the fraction, edits / reference words ({edits}/{len(r)})")
        if abs(got - edits) <= 1e-9 and edits:
            _fail(f"{said}: divide the number of edits ({edits}) by the number of reference words ({len(r)})")
        if expected > 1 and abs(got - 1) <= 1e-9:
            _fail(f"{said}: the WER is not capped at 1: {len(h)} hypothesis words for {len(r)} reference words take "
                  f"{edits} edits, so it is {edits}/{len(r)}")
        if h and abs(got - edits / len(h)) <= 1e-9:
            _fail(f"{said}: divide by the number of *reference* words ({len(r)}), not hypothesis words ({len(h)})")
        if abs(got - edit_distance(list(ref), list(hyp)) / max(len(ref), 1)) <= 1e-9:
            _fail(f"{said}: that is the character error rate; split both texts into words first (str.split)")
        if not hyp:
            _fail(
                f"{said}: an empty hypothesis deletes every reference word, so the WER is 1 (first row/column of "
                "the table: d[i][0] = i)"
            )
        if abs(got * len(r) - _indel_distance(r, h)) <= 1e-9:
            _fail(f"{said}: a substitution costs 1, like a deletion or an insertion (you counted it as 2: a deletion "
                  "plus an insertion)")
        if abs(got * len(r) - (sum(a != b for a, b in zip(r, h)) + abs(len(r) - len(h)))) <= 1e-9:
            _fail(f"{said}: comparing the words position by position counts every word after an insertion or a "
                  "deletion as an error; align them with the edit-distance table instead")
        if got > expected:
            _fail(
                f"{said}: too many edits; take the cheapest of deletion, insertion and substitution in each "
                "cell, and a matching word costs nothing (d[i-1][j-1] + 0)"
            )
        _fail(
            f"{said}: fill the table d[i][j] = min(d[i-1][j] + 1, d[i][j-1] + 1, d[i-1][j-1] + (r[i-1] != h[j-1])) "
            "with d[i][0] = i and d[0][j] = j; the answer is d[len(r)][len(h)] / len(r)"
        )
    _ok(
        "wer is correct, e.g. one substitution in five words gives 0.2, an empty hypothesis 1.0, 'a b' -> 'c d e f' 2.0"
    )


def question_cases(corpus: Any) -> list[Any]:
    """Held-out speakers' statements and the same kind of statements said as questions (test split)."""
    return [u for u in corpus.split("test") if u.kind in ("statement", "declarative_question")]


def _glide_tone(segments: tuple[tuple[float, float], ...], sr: int = 16000) -> torch.Tensor:
    """A phase-continuous tone with two overtones: ``segments`` of (seconds, F0 in Hz), 0 Hz for silence."""
    f0 = torch.cat([torch.full((round(sec * sr),), float(hz), dtype=torch.float64) for sec, hz in segments])
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    wave = sum(torch.sin(k * phase) / k for k in (1, 2, 3))
    return (0.3 * wave * (f0 > 0)).float()


# (description, segments): synthetic tones whose final rise is known, each built so that one usual mistake shows
_RISE_TONES = (
    ("a 120 Hz tone whose last fifth is at 240 Hz (an octave up: +12 semitones)", ((1.0, 120), (0.25, 240))),
    ("a 240 Hz tone whose last fifth is at 120 Hz (an octave down: -12 semitones)", ((1.0, 240), (0.25, 120))),
    ("a 120 Hz tone, with 0.1 s at 240 Hz in its middle (like an octave error of the tracker), whose last voiced "
     "fifth is at 180 Hz, between 0.2 s of silence before and 0.5 s after (+7.0 semitones)",
     ((0.2, 0), (0.5, 120), (0.1, 240), (0.4, 120), (0.25, 180), (0.5, 0))),
    ("a tone that starts with 60 ms at 160 Hz, holds 120 Hz, and whose last fifth is at 240 Hz but ends with 40 ms "
     "at 200 Hz (+12 semitones)", ((0.06, 160), (1.0, 120), (0.22, 240), (0.04, 200))),
)


def _rise_variants(f0: torch.Tensor) -> dict[str, float]:
    """The final rise of an F0 contour (Hz, NaN unvoiced) computed right and with the usual mistakes."""
    voiced = f0[~f0.isnan()].double()
    semitones = 12 * torch.log2(voiced)
    n_end = max(3, len(voiced) // 5)
    out = {
        "right": float(semitones[-n_end:].median() - semitones[:-n_end].median()),
        "hz": float(voiced[-n_end:].median() - voiced[:-n_end].median()),
        "mean": float(semitones[-n_end:].mean() - semitones[:-n_end].mean()),
        "last minus first": float(semitones[-1] - semitones[0]),
    }
    ratio = float(voiced[-n_end:].median() / voiced[:-n_end].median())
    out["ratio"] = ratio
    out["ln"] = 12 * math.log(ratio)
    out["log10"] = 12 * math.log10(ratio)
    end = f0[-max(3, len(f0) // 5):]
    end, rest = end[~end.isnan()].double(), f0[: -max(3, len(f0) // 5)]
    rest = rest[~rest.isnan()].double()
    out["all frames"] = (float(12 * torch.log2(end).median() - 12 * torch.log2(rest).median())
                         if len(end) and len(rest) else 0.0)
    return out


def _check_final_rise(final_rise: Callable[[torch.Tensor], float]) -> None:
    from slm_course.audio import SR, pitch

    for name, segments in _RISE_TONES:
        wav = _glide_tone(segments, SR)
        variants = _rise_variants(pitch(wav, SR)[1])
        expected = variants["right"]
        got = _as_float(final_rise(wav.clone()), f"final_rise(wav) for {name}", unit="semitones",
                        nonfinite_hint=": drop the unvoiced (NaN) frames before taking medians")
        if abs(got - expected) <= 0.5:
            continue
        said = f"for {name}, final_rise returned {got:+.2f}, expected {expected:+.1f} (within 0.5)"
        reasons = {
            "hz": "that is the rise in Hz; measure it in semitones: 12 * log2(F0), then take the difference",
            "ratio": "that is the ratio of the two F0s; a rise in semitones is 12 * log2 of that ratio",
            "ln": "use log base 2 (torch.log2): an octave, a doubling of F0, is 12 semitones",
            "log10": "use log base 2 (torch.log2): an octave, a doubling of F0, is 12 semitones",
            "mean": "compare *medians*, not means: the short 240 Hz stretch in the middle (like an octave error of "
                    "the pitch tracker) pulls the mean of the rest up, but not its median",
            "last minus first": "compare the median of the last fifth of the voiced frames with the median of the "
                                "rest, not the last voiced frame with the first: single frames are noisy",
            "all frames": "drop the unvoiced (NaN) frames first, then take the last fifth of the *voiced* frames: "
                          "the last fifth of all frames can be silence",
        }
        for variant, reason in reasons.items():
            if abs(got - variants[variant]) <= 0.05 and abs(variants[variant] - expected) > 0.5:
                _fail(f"{said}: {reason}")
        if abs(got + expected) <= 0.5:
            _fail(f"{said}: the sign is flipped; subtract the rest from the end (end - rest), so that a rise is positive")
        _fail(
            f"{said}: keep the voiced frames of audio.pitch(wav, SR) (not NaN), convert them to semitones "
            "(12 * log2(F0)), and return the median of the last fifth minus the median of the rest"
        )


def check_question_classifier(
    fn: Callable[[torch.Tensor], bool],
    corpus: Any,
    min_accuracy: float = 0.8,
    final_rise: Callable[[torch.Tensor], float] | None = None,
) -> float:
    """``fn(wav)`` -> True for a question: accuracy on held-out statements vs declarative questions (pass >= 0.8).

    ``final_rise``, when given, is checked first on synthetic tones with a known glide: it must return the rise
    in semitones (median of the last voiced fifth minus median of the rest) within 0.5.
    """
    if final_rise is not None:
        _check_final_rise(final_rise)
    utts = question_cases(corpus)
    if not utts:
        _fail("the corpus has no statements or declarative questions in its test split; load the course corpus")
    answers = []
    for u in utts:
        got = fn(corpus.wav(u))
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (bool, int)) or got not in (0, 1):
            _fail(f"is_question(wav) returned {got!r} ({type(got).__name__}) for {u.text!r}; return True or False")
        answers.append(bool(got))
    truth = [u.question for u in utts]
    right = sum(a == t for a, t in zip(answers, truth))
    accuracy = right / len(utts)
    majority = max(sum(truth), len(truth) - sum(truth)) / len(truth)
    said = (f"accuracy {right}/{len(utts)} = {accuracy:.3f} on held-out utterances (pass: {min_accuracy:.2f} or more; "
            f"chance, always giving the commoner answer, is {majority:.2f})")
    if len(set(answers)) == 1:
        _fail(
            f"{said}: is_question answered {answers[0]} for every utterance; compare the final rise with a "
            "threshold that lies between the statements' and the questions' values"
        )
    if accuracy <= 1 - min_accuracy:
        _fail(f"{said}: the answers look inverted; a question *rises* at the end (the final pitch is higher)")
    if accuracy < min_accuracy:
        if final_rise is not None:  # the rise is right on tones: the threshold is the likely culprit
            _fail(f"{said}: your final_rise gives the known rise of synthetic tones, so look at the threshold: print "
                  "final_rise for a few training statements and questions and put the threshold between them "
                  "(statements fall at the end, so a threshold near 0 semitones is a natural start)")
        _fail(
            f"{said}: base is_question on final_rise(wav) compared with a threshold: measure the rise in "
            "semitones (12 * log2 of F0), ignore unvoiced (NaN) frames, and compare the last fifth of the voiced "
            "frames with the rest (medians resist octave errors)"
        )
    _ok(f"is_question works: {said}" + ("; final_rise gives the known rise of 4 synthetic tones" if final_rise else ""))
    return accuracy


def check_sample_with_temperature(fn: Callable[..., int]) -> None:
    """``fn(logits, temperature, generator)`` -> one token id: argmax at 0, else a draw from softmax(logits / T)."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    def call(temperature: float, generator: torch.Generator):
        try:
            return fn(logits.clone(), temperature, generator)
        except (RuntimeError, ZeroDivisionError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            if temperature == 0:
                _fail(f"at temperature 0 your function raised {type(error).__name__} ({first}): handle temperature 0 "
                      "first, as greedy decoding (the argmax), before dividing the logits by it")
            if "probability tensor" in first or "invalid multinomial" in first:
                _fail(f"at temperature {temperature} torch.multinomial raised '{first}': give it probabilities, "
                      "softmax(logits / temperature), not log-probabilities or logits")
            raise

    for temperature in (0.0,):
        for _ in range(3):
            got = call(temperature, torch.Generator().manual_seed(0))
            if int(got) != int(logits.argmax()):
                _fail(
                    f"at temperature 0 you returned {int(got)}; temperature 0 is greedy: the argmax "
                    f"({int(logits.argmax())}), without sampling (dividing by 0 is not allowed)"
                )
    runs = [[int(call(1.0, g)) for _ in range(20)] for g in (torch.Generator().manual_seed(7),
                                                                           torch.Generator().manual_seed(7))]
    if runs[0] != runs[1]:
        _fail(
            f"two generators seeded alike (torch.Generator().manual_seed(7)) gave different draws at temperature 1: "
            f"{runs[0]} and {runs[1]}; draw with the generator passed in, torch.multinomial(probs, 1, "
            "generator=generator), not the global random state, so that a seed makes the text reproducible"
        )
    n = 4000
    for temperature in (1.0, 0.5, 2.0):
        g = torch.Generator().manual_seed(123)
        draws = [call(temperature, g) for _ in range(n)]
        if not all(isinstance(d, int) or (isinstance(d, torch.Tensor) and d.numel() == 1) for d in draws):
            _fail(f"return one int (a token id), got {type(draws[0]).__name__}; use int(...)")
        counts = torch.bincount(torch.tensor([int(d) for d in draws]), minlength=len(logits)).double()
        freq = counts / n
        expected = (logits / temperature).softmax(-1).double()
        if len(set(int(d) for d in draws)) == 1:
            _fail(
                f"at temperature {temperature} every draw was {int(draws[0])}; sample from the distribution "
                "(torch.multinomial) instead of taking the argmax"
            )
        err = float((freq - expected).abs().max())
        if err <= 0.035:
            continue
        said = (
            f"at temperature {temperature} your token frequencies are {[round(float(f), 2) for f in freq]}, "
            f"expected about {[round(float(p), 2) for p in expected]}"
        )
        if float(((logits * temperature).softmax(-1) - freq).abs().max()) <= 0.035:
            _fail(f"{said}: divide the logits by the temperature, do not multiply")
        if float((logits.softmax(-1) - freq).abs().max()) <= 0.035:
            _fail(f"{said}: the temperature had no effect; sample from softmax(logits / temperature)")
        _fail(
            f"{said}: sample one id from softmax(logits / temperature) with torch.multinomial(probs, 1, generator=...)"
        )
    _ok("temperature sampling is correct: greedy at 0, softmax(logits / T) otherwise (flatter above 1, sharper below)")



_LR_CELL = (3e-4, 3e-3, 3e-2, 3e-1, 3.0)  # the learning rates of the experiment cell


def check_lr_experiment(results: dict[float, float], best_lr: float, explanation: str) -> None:
    """The learning-rate experiment: ``best_lr`` is the run with the lowest validation perplexity, explained in words.

    ``results`` must hold the experiment cell's learning rates (others may be added), each with a perplexity above 1
    (a diverged run may give inf or NaN); the explanation goes through :func:`check_explanation`.
    """
    from .quiz import check_explanation

    if not isinstance(results, dict) or len(results) < 3:
        _fail(f"results should map at least 3 learning rates to their validation perplexity, got {results!r}; "
              "run the experiment cell first")
    ppl: dict[float, float] = {}
    for lr, v in results.items():
        lr = _as_float(lr, "a learning rate in results")
        v = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
        try:
            v = float(v)
        except (TypeError, ValueError):
            _fail(f"results[{lr:g}] is {v!r}; it should be the validation perplexity the experiment cell measured")
        ppl[lr] = v if math.isfinite(v) else math.inf
    missing = [lr for lr in _LR_CELL if not any(math.isclose(lr, k, rel_tol=1e-6) for k in ppl)]
    if missing:
        _fail(f"results has no run at learning rate {', '.join(f'{lr:g}' for lr in missing)}; keep the experiment "
              f"cell's rates ({', '.join(f'{lr:g}' for lr in _LR_CELL)}) and add your own, then run it again")
    low = {lr: v for lr, v in ppl.items() if v <= 1}
    if low:
        _fail(f"results gives perplexity {', '.join(f'{v:g} at lr {lr:g}' for lr, v in low.items())}: a perplexity "
              "is exp(mean loss) and is above 1 for any model that is not certain of every character; keep the "
              "values textlm.perplexity measured in the experiment cell")
    if best_lr is None:
        _fail("best_lr is not set yet: set it to the learning rate whose run gave the lowest validation perplexity")
    given = _as_float(best_lr, "best_lr")
    if not any(math.isclose(given, lr, rel_tol=1e-9) for lr in ppl):
        _fail(f"best_lr = {given:g} is not one of the learning rates you ran ({', '.join(f'{lr:g}' for lr in ppl)})")
    given = next(lr for lr in ppl if math.isclose(given, lr, rel_tol=1e-9))
    best = min(ppl, key=ppl.get)
    if not math.isclose(given, best, rel_tol=1e-9):
        _fail(f"best_lr = {given:g} gave perplexity {ppl[given]:.2f}, but lr {best:g} gave {ppl[best]:.2f}, the "
              "lowest of your runs: pick the run with the lowest validation perplexity")
    if explanation is None:
        _fail("explanation is not written yet: say in a few sentences what goes wrong below and above the best "
              "learning rate, and why clipping does not rescue the largest one")
    # A right answer names clipping, what Adam does to the gradient's size (divides by it: the step is about
    # lr * sign), and what goes wrong on both sides of the best rate. This cannot grade it, only make sure it is there.
    check_explanation(explanation, mentions=("clip", "adam|divid|normali|sign", "small|slow",
                                             "large|big|overshoot|diverg|explod|unstable"), min_words=30)
    _ok(f"best_lr = {given:g} is your lowest validation perplexity ({ppl[given]:.2f}); compare your explanation with "
        "the model answer in solutions/01_cascade_exercises.ipynb")


QUIZ = (
    Question(
        "Why does CTC need the blank symbol?",
        choices=(
            "a) to mark the pauses between words: silence is in the audio, but the transcript has no character "
            "that stands for it",
            "b) a frame must be able to emit nothing, and two equal letters in a row ('oo') survive the merging "
            "of repeats only with a blank between them",
            "c) it pads the label to the number of frames, so that the loss can be a per-frame cross-entropy, as "
            "for a frame classifier, with one target character for every frame",
            "d) it is the symbol the model emits once, at the end of the utterance, to say that the transcript is "
            "complete",
        ),
        answer="b",
        hint="notebook 01, section 2: the collapse rule (merge repeats, then drop blanks)",
    ),
    Question(
        "At least how many frames does a CTC recogniser need to read out 'cook'?",
        answer=5,
        tolerance=0,
        hint="notebook 01, section 2: the two o's merge unless a blank separates them (c o _ o k)",
    ),
    Question(
        "Generating with a key/value cache, each step feeds only the new token. Why are the cached keys and "
        "values of earlier positions still right after a token is added?",
        choices=(
            "a) the causal mask: an earlier position never attends to later ones, so nothing it computed depends "
            "on the new token",
            "b) keys and values are computed from the token embeddings alone, before any block, so no later "
            "token can reach them whatever the attention mask allows",
            "c) the cache is recomputed every few steps to stay right",
            "d) they are not exactly right; the cache trades a small error for speed",
        ),
        answer="a",
        hint="notebook 01, section 4: the causality check and the cached generation",
    ),
    Question(
        "If the recogniser were perfect (CER 0), how well would the cascade's text probe tell the corpus' "
        "declarative questions from statements?",
        choices=(
            "a) perfectly: a perfect transcript holds everything that was said",
            "b) at about chance: the words of the two are the same, and the transcript has no punctuation or pitch",
            "c) better than chance: a question's words are said more slowly, and the recogniser's errors would show "
            "that",
            "d) a little better than now, as the errors of the recogniser would be gone",
        ),
        answer="b",
        hint="notebook 01, section 7: what the question test keeps equal",
    ),
    Question(
        "A character LM's mean validation loss is 1.10 nats per character. What is its perplexity?",
        answer=3.00,
        tolerance=0.02,
        hint="notebook 01, section 4: perplexity is exp of the mean next-token loss",
    ),
)
