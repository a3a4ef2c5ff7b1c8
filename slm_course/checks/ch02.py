"""Checks for notebook 02's exercises (solutions/02_units_exercises.ipynb): k-means, de-duplication, PNMI.

- :func:`check_kmeans_assign` - the nearest centroid of every frame
- :func:`check_kmeans_update` - one k-means update: every centroid moves to the mean of its frames
- :func:`check_deduplicate` - merge runs of a unit and keep their durations
- :func:`check_pnmi` - phone-normalised mutual information of units and phones
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._common import _as_float, _fail, _ok

__all__ = ["check_deduplicate", "check_kmeans_assign", "check_kmeans_update", "check_pnmi"]


def _ids(value: Any, call: str) -> list[int]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            _fail(f"{call} returned floats ({value.dtype}); return integer ids (torch.long), e.g. x.argmin(dim=1)")
        value = value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, (int, np.integer)) for i in value):
        _fail(f"{call} returned {type(value).__name__}; return a (T,) tensor or list of integer ids")
    return [int(i) for i in value]


def check_kmeans_assign(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(feats (T, D), centroids (K, D)) -> (T,)``: index of the nearest centroid (Euclidean)."""
    from slm_course.units import kmeans_assign

    g = torch.Generator().manual_seed(0)
    cases = [
        ("1-D frames [0, 0.9, 2.2] and centroids [0, 2]", torch.tensor([[0.0], [0.9], [2.2]]),
         torch.tensor([[0.0], [2.0]])),
        ("20 random 3-D frames, 4 centroids", torch.randn(20, 3, generator=g), torch.randn(4, 3, generator=g)),
        ("centroids of very different lengths", torch.randn(30, 5, generator=g),
         torch.randn(6, 5, generator=g) * torch.tensor([[0.1], [5.0], [1.0], [0.5], [3.0], [0.2]])),
    ]
    for name, x, c in cases:
        got = _ids(fn(x.clone(), c.clone()), "kmeans_assign(feats, centroids)")
        want = kmeans_assign(x, c).tolist()
        if got == want:
            continue
        if len(got) == len(c) != len(x):
            _fail(f"for {name} you returned {len(got)} ids, one per centroid; return one per frame (argmin over dim=1)")
        if len(got) != len(want):
            _fail(f"for {name} you returned {len(got)} ids; expected {len(want)}, one per frame")
        d = torch.cdist(x, c)
        if got == d.argmax(dim=1).tolist():
            _fail(f"for {name} you picked the farthest centroid: take the argmin of the distances, not the argmax")
        if got == (x @ c.T).argmax(dim=1).tolist():
            _fail(f"for {name} you picked the largest dot product x.c; the distance also needs |c|^2: "
                  "argmin of |c|^2 - 2 x.c")
        _fail(f"for {name} you returned {got[:8]}..., expected {want[:8]}...: distance of every frame to every "
              "centroid, (T, K), then argmin over K")
    _ok("kmeans_assign is correct: frames [0, 0.9, 2.2] with centroids [0, 2] -> [0, 0, 1]")


def check_kmeans_update(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(feats (T, D), assignment (T,), centroids (K, D)) -> (K, D)``: each centroid becomes the mean of its frames.

    A centroid with no frames keeps its old value.
    """
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, generator=g)
    c = torch.randn(5, 3, generator=g)
    assign = torch.randint(0, 4, (40,), generator=g)  # centroid 4 gets no frames
    got = fn(x.clone(), assign.clone(), c.clone())
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (5, 3):
        _fail(f"kmeans_update returned {type(got).__name__} {tuple(getattr(got, 'shape', ()))}; "
              "return a (K, D) tensor of new centroids")
    want = c.clone()
    for k in range(4):
        want[k] = x[assign == k].mean(dim=0)
    if torch.isnan(got).any():
        _fail("kmeans_update returned NaN: a centroid with no frames (here centroid 4) must keep its old value")
    if not torch.allclose(got[:4], want[:4], atol=1e-5):
        _fail("the centroids that have frames are wrong: each must be the mean of the frames assigned to it "
              "(feats[assignment == k].mean(dim=0))")
    if not torch.allclose(got[4], c[4]):
        _fail(f"centroid 4 has no frames and should keep its old value {c[4].tolist()}, got {got[4].tolist()}")
    _ok("kmeans_update is correct: every centroid moved to the mean of its frames, an empty one stayed put")


def check_deduplicate(fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``fn(ids (T,)) -> (units, durations)``: merge runs of one unit, keep how many frames each run lasted."""
    from slm_course.speech_tokens import deduplicate

    cases = [[5, 5, 5, 2, 2, 7], [1, 2, 3], [4, 4, 4, 4], [3, 3, 1, 3, 3, 3, 1], [9]]
    for ids in cases:
        out = fn(torch.tensor(ids))
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            _fail(f"for {ids} you returned {type(out).__name__}; return two things: (units, durations)")
        units = _ids(out[0], "the units")
        durations = _ids(out[1], "the durations")
        want_u, want_d = (t.tolist() for t in deduplicate(torch.tensor(ids)))
        if units == want_u and durations == want_d:
            continue
        if units == sorted(set(ids)):
            _fail(f"for {ids} you returned units {units}: that is every distinct unit once; merge only *consecutive* "
                  f"repeats, so a unit can come back later: expected {want_u}")
        if units != want_u:
            _fail(f"for {ids} you returned units {units}, expected {want_u}: keep a unit when it differs from the one before")
        if sum(durations) != len(ids):
            _fail(f"for {ids} the durations {durations} add up to {sum(durations)} frames, not {len(ids)}: "
                  "each duration is the length of one run")
        _fail(f"for {ids} the durations are {durations}, expected {want_d}")
    _ok("deduplicate is correct: [5, 5, 5, 2, 2, 7] -> units [5, 2, 7], durations [3, 2, 1]")


def check_pnmi(fn: Callable[[list[str], list[int]], float]) -> None:
    """``fn(phones, units) -> float``: I(phone; unit) / H(phone) from the frames' joint counts."""
    from slm_course.unit_metrics import unit_quality

    rng = np.random.default_rng(0)
    phones = rng.choice(list("abcde"), size=600).tolist()
    noisy = [(ord(p) % 5) * 2 + int(rng.integers(0, 2)) if rng.random() < 0.8 else int(rng.integers(0, 10))
             for p in phones]
    cases = [
        ("units equal to the phones", ["a", "a", "b", "b"], [0, 0, 1, 1], 1.0),
        ("units independent of the phones", ["a", "b", "a", "b"], [0, 0, 1, 1], 0.0),
        ("each phone split over two units", ["a", "a", "b", "b"], [0, 1, 2, 3], 1.0),
        ("600 frames of noisy units", phones, noisy, None),
    ]
    for name, ph, un, known in cases:
        want = unit_quality(ph, un)["pnmi"] if known is None else known
        got = _as_float(fn(list(ph), list(un)), "pnmi(phones, units)")
        if abs(got - want) < 1e-6:
            continue
        counts = np.zeros((len(set(ph)), max(un) + 1))
        names = sorted(set(ph))
        for p, u in zip(ph, un):
            counts[names.index(p), u] += 1
        joint = counts / counts.sum()
        pu = joint.sum(axis=0)
        h_unit = float(-(pu[pu > 0] * np.log(pu[pu > 0])).sum())
        if h_unit > 0 and abs(got - want * _h_phone(ph) / h_unit) < 1e-6:
            _fail(f"for {name} you returned {got:.4f}, expected {want:.4f}: you divided by H(unit); PNMI is "
                  "*phone*-normalised, divide the mutual information by H(phone)")
        if abs(got - want * _h_phone(ph)) < 1e-6:
            _fail(f"for {name} you returned {got:.4f}, expected {want:.4f}: that is the mutual information itself; "
                  "divide it by the phone entropy H(phone)")
        _fail(f"for {name} you returned {got:.4f}, expected {want:.4f}: p(phone, unit) = counts / total frames, "
              "I = sum p log(p / (p(phone) p(unit))), PNMI = I / H(phone)")
    _ok("pnmi is correct: 1 when units determine the phones, 0 when they are independent of them")


def _h_phone(phones: list[str]) -> float:
    _, counts = np.unique(phones, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())
