"""How good discrete units are, measured against the corpus' phone alignments (notebook 02).

- :func:`unit_quality`: PNMI (how much of a frame's phone its unit tells), phone purity and cluster
  purity, from the phone-unit co-occurrence counts (:func:`phone_unit_counts`) of frame-level units
  and phone labels (:func:`frame_phones`);
- :func:`abx`: the ABX discrimination error (Schatz et al., 2013) on phones in the same context,
  within and across speakers: is the frame sequence of an A token closer (DTW with the angular
  distance, :func:`dtw_distance`) to another token of its phone than to a token of another phone?
- :func:`word_abx`: the same question for whole words where there are no phone alignments (FSDD's
  spoken digits): is a word closer to the same word said by another speaker than to another word
  said by that speaker?

These take frames from any tokenizer (or any per-frame features), so every chapter measures units
the same way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from slm_course.units import FRAME_RATE, SILENCE

if TYPE_CHECKING:
    from slm_course.corpus import Utterance

__all__ = [
    "AbxItem",
    "abx",
    "abx_items",
    "word_abx",
    "dtw_distance",
    "frame_phones",
    "phone_unit_counts",
    "unit_quality",
]


# ---------------------------------------------------------------------------------------------
# Unit quality against phone alignments
# ---------------------------------------------------------------------------------------------


def frame_phones(utt: Utterance, n_frames: int, frame_rate: float = FRAME_RATE) -> list[str]:
    """The phone said at each frame's centre (``i / frame_rate`` s), :data:`SILENCE` outside every span."""
    labels = [SILENCE] * n_frames
    for span in utt.phone_spans:
        first = max(0, math.ceil(span.start * frame_rate - 1e-9))
        last = min(n_frames, math.ceil(span.end * frame_rate - 1e-9))
        for i in range(first, last):
            labels[i] = span.label
    return labels


def phone_unit_counts(phones: Sequence[str], units: Sequence[int] | torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """Joint counts ``(n_phones, K)`` of frame-level phone labels and units, and the phone names (rows)."""
    units = torch.as_tensor(units).long().tolist()
    if len(phones) != len(units):
        raise ValueError(f"one phone label per frame: got {len(phones)} labels and {len(units)} units")
    if not units:
        raise ValueError("no frames to count")
    if min(units) < 0:
        raise ValueError(f"units must be ids >= 0, got {min(units)}")
    names = sorted(set(phones))
    row = {p: i for i, p in enumerate(names)}
    counts = np.zeros((len(names), max(units) + 1))
    np.add.at(counts, ([row[p] for p in phones], units), 1)
    return counts, names


def unit_quality(phones: Sequence[str], units: Sequence[int] | torch.Tensor) -> dict[str, float]:
    """PNMI, phone purity and cluster purity of frame-level units against phone labels (HuBERT's measures).

    From the joint distribution ``p(phone, unit)`` of frames: PNMI ``= I(phone; unit) / H(phone)``
    (the share of the phone's uncertainty that the unit removes, 1 = units determine phones),
    phone purity ``= sum_unit max_phone p`` (accuracy of guessing each unit's commonest phone) and
    cluster purity ``= sum_phone max_unit p``.

    >>> unit_quality(["a", "a", "b", "b"], [0, 0, 1, 1])["pnmi"]
    1.0
    """
    counts, _ = phone_unit_counts(phones, units)
    p = counts / counts.sum()  # (P, K)
    p_phone, p_unit = p.sum(axis=1), p.sum(axis=0)  # (P,), (K,)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (p_phone[:, None] * p_unit[None, :])[nz])).sum())
    h_phone = float(-(p_phone[p_phone > 0] * np.log(p_phone[p_phone > 0])).sum())
    return {
        "pnmi": mi / h_phone if h_phone > 0 else 0.0,
        "phone_purity": float(p.max(axis=0).sum()),
        "cluster_purity": float(p.max(axis=1).sum()),
    }


def dtw_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Dynamic time warping of two frame sequences with the angular distance ``arccos(cos) / pi``.

    The cost is averaged along the best path (summed cost / path length, as in ZeroSpeech's ABX),
    so long and short segments compare fairly. ``a`` is ``(Ta, D)``, ``b`` is ``(Tb, D)``.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"a and b must be non-empty (T, D) frames of one D, got {tuple(a.shape)}, {tuple(b.shape)}")
    an = F.normalize(a.double(), dim=1)
    bn = F.normalize(b.double(), dim=1)
    cost = (torch.arccos((an @ bn.T).clamp(-1, 1)) / math.pi).numpy()  # (Ta, Tb)
    Ta, Tb = cost.shape
    acc = np.full((Ta + 1, Tb + 1), np.inf)
    steps = np.zeros((Ta + 1, Tb + 1))
    acc[0, 0] = 0.0
    for i in range(1, Ta + 1):
        for j in range(1, Tb + 1):
            moves = ((acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1]))
            best, n = min(moves, key=lambda m: m[0])
            acc[i, j] = best + cost[i - 1, j - 1]
            steps[i, j] = n + 1
    return float(acc[Ta, Tb] / steps[Ta, Tb])


@dataclass(frozen=True)
class AbxItem:
    """One phone in context: where it is, what it is, who said it."""

    utt: str  # utterance id
    phone: str  # the centre phone
    context: tuple[str, str]  # previous and next phone
    speaker: str
    first: int  # first frame (at 50 Hz)
    last: int  # one past the last frame


def abx_items(utterances: Sequence[Utterance], frame_rate: float = FRAME_RATE, min_frames: int = 2) -> list[AbxItem]:
    """Every phone with a phone on each side (a triphone) in ``utterances``, as :class:`AbxItem` s.

    Two items with the same context and different centre phones are a minimal pair (``b-ɛ-d`` vs
    ``b-æ-d``); ABX asks whether a third token of one of them is nearer to its own kind.
    """
    items = []
    for u in utterances:
        spans = u.phone_spans
        for k in range(1, len(spans) - 1):
            first = round(spans[k].start * frame_rate)
            last = round(spans[k].end * frame_rate)
            if last - first >= min_frames:
                items.append(AbxItem(u.id, spans[k].label, (spans[k - 1].label, spans[k + 1].label), u.speaker,
                                     first, last))
    return items


def abx(
    items: Sequence[AbxItem],
    frames: dict[str, torch.Tensor],
    across: bool = False,
    max_per_cell: int = 4,
    max_pairs: int = 400,
    seed: int = 0,
) -> float:
    """ABX error rate (0 = perfect, 0.5 = chance) of frame representations on phones in context.

    ``frames`` maps an utterance id to its ``(T, D)`` frames at 50 Hz: dense features, or one-hot
    units (``F.one_hot(units, K)``). For a minimal pair of centre phones (a, b) in one context, A
    and X are tokens of a, B a token of b; the trial is right when ``d(A, X) < d(B, X)`` (a tie
    counts half), with ``d`` the DTW of :func:`dtw_distance`. *Within*: A, B and X come from one
    speaker. *Across*: A and B from one speaker, X from another. The error is averaged over
    contexts and speakers per phone pair, then over phone pairs (as ZeroSpeech does). At most
    ``max_per_cell`` tokens per (phone, context, speaker) and ``max_pairs`` phone pairs are used,
    drawn with a seeded generator, to keep it fast.
    """
    rng = np.random.default_rng(seed)
    cells: dict[tuple, list[AbxItem]] = defaultdict(list)
    for it in items:
        if it.utt not in frames:
            raise KeyError(f"no frames for utterance {it.utt}: pass frames for every item's utterance")
        cells[(it.phone, it.context, it.speaker)].append(it)
    for key in cells:  # a reproducible sample of tokens per cell
        if len(cells[key]) > max_per_cell:
            pick = rng.choice(len(cells[key]), max_per_cell, replace=False)
            cells[key] = [cells[key][i] for i in sorted(pick)]
    by_context: dict[tuple, dict[str, dict[str, list[AbxItem]]]] = defaultdict(lambda: defaultdict(dict))
    for (phone, context, speaker), toks in cells.items():
        by_context[context][phone][speaker] = toks

    memo: dict[tuple[int, int], float] = {}
    segs = {id(it): frames[it.utt][it.first : min(it.last, len(frames[it.utt]))] for toks in cells.values() for it in toks}

    def dist(x: AbxItem, y: AbxItem) -> float:
        key = (id(x), id(y)) if id(x) < id(y) else (id(y), id(x))
        if key not in memo:
            memo[key] = dtw_distance(segs[id(x)], segs[id(y)])
        return memo[key]

    # (a, b) -> list of scores, one per (context, speaker[s])
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    trials: list[tuple] = []
    for context, phones in by_context.items():
        for a in phones:
            for b in phones:
                if a == b:
                    continue
                for spk in phones[a]:
                    if spk not in phones[b]:
                        continue
                    x_speakers = [s for s in phones[a] if s != spk] if across else [spk]
                    for x_spk in x_speakers:
                        trials.append((a, b, context, spk, x_spk))
    pairs = sorted({(t[0], t[1]) for t in trials})
    if not pairs:
        raise ValueError("no ABX trials: the items hold no minimal pairs" + (" said by two speakers" if across else ""))
    if len(pairs) > max_pairs:
        keep = {pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)}
        trials = [t for t in trials if (t[0], t[1]) in keep]
    for a, b, context, spk, x_spk in trials:
        A_toks, B_toks = by_context[context][a][spk], by_context[context][b][spk]
        X_toks = by_context[context][a][x_spk]
        right, n = 0.0, 0
        for A in A_toks:
            for X in X_toks:
                if A is X:
                    continue
                dax = dist(A, X)
                for B in B_toks:
                    dbx = dist(B, X)
                    right += 1.0 if dax < dbx else (0.5 if dax == dbx else 0.0)
                    n += 1
        if n:
            scores[(a, b)].append(right / n)
    if not scores:
        raise ValueError("no ABX trials: each minimal pair needs two tokens of one phone (A and X)")
    return float(1.0 - np.mean([np.mean(v) for v in scores.values()]))


def word_abx(
    frames: Sequence[torch.Tensor], words: Sequence, speakers: Sequence, trials: int = 600, seed: int = 0
) -> float:
    """ABX error (0 = perfect, 0.5 = chance) on whole words across speakers, from ``trials`` random trials.

    ``frames[i]`` is the ``(T, D)`` frame sequence of a recording of word ``words[i]`` by ``speakers[i]``.
    A trial draws X (word w, speaker s2), A (word w, another speaker s1) and B (another word, also by s1):
    it is right when X is nearer to A than to B by :func:`dtw_distance` (a tie counts half). The speaker
    of A and B is the same, so only what the words share across voices helps.
    """
    if not len(frames) == len(words) == len(speakers):
        raise ValueError(f"one word and one speaker per recording: {len(frames)} frames, {len(words)} words, "
                         f"{len(speakers)} speakers")
    cells: dict[tuple, list[int]] = defaultdict(list)
    for i, (w, s) in enumerate(zip(words, speakers)):
        cells[(w, s)].append(i)
    vocab, voices = sorted(set(words), key=str), sorted(set(speakers), key=str)
    if len(vocab) < 2 or len(voices) < 2:
        raise ValueError(f"word ABX needs at least 2 words and 2 speakers, got {len(vocab)} and {len(voices)}")
    rng = np.random.default_rng(seed)
    errors, done = 0.0, 0
    for _ in range(trials * 20):  # a cell may be empty (a word a speaker never said): draw again
        s1, s2 = rng.choice(len(voices), 2, replace=False)
        w, other = rng.choice(len(vocab), 2, replace=False)
        a, b, x = (cells[(vocab[w], voices[s1])], cells[(vocab[other], voices[s1])], cells[(vocab[w], voices[s2])])
        if not (a and b and x):
            continue
        xi, ai, bi = x[rng.integers(len(x))], a[rng.integers(len(a))], b[rng.integers(len(b))]
        xa, xb = dtw_distance(frames[xi], frames[ai]), dtw_distance(frames[xi], frames[bi])
        errors += 1.0 if xb < xa else 0.5 if xb == xa else 0.0
        done += 1
        if done == trials:
            break
    if not done:
        raise ValueError("no word was said by two speakers with another word by one of them: nothing to compare")
    return errors / done
