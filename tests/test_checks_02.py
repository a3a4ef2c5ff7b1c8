"""The checks of notebook 02's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slm_course import checks


def _assign(x, c):
    return torch.cdist(x, c).argmin(dim=1)


def _update(x, assign, c):
    new = c.clone()
    for k in range(len(c)):
        if (assign == k).any():
            new[k] = x[assign == k].mean(dim=0)
    return new


def _dedup(ids):
    units, durations = [], []
    for i in ids.tolist():
        if units and units[-1] == i:
            durations[-1] += 1
        else:
            units.append(i)
            durations.append(1)
    return torch.tensor(units), torch.tensor(durations)


def _mi_and_entropies(phones, units):
    names = sorted(set(phones))
    joint = np.zeros((len(names), max(units) + 1))
    for p, u in zip(phones, units):
        joint[names.index(p), u] += 1
    joint /= joint.sum()
    pp, pu = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pp, pu)[nz])).sum())
    h = lambda p: float(-(p[p > 0] * np.log(p[p > 0])).sum())  # noqa: E731
    return mi, h(pp), h(pu)


def _pnmi(phones, units):
    mi, h_phone, _ = _mi_and_entropies(phones, units)
    return mi / h_phone if h_phone else 0.0


@pytest.mark.parametrize(
    "check, fn",
    [(checks.check_kmeans_assign, _assign), (checks.check_kmeans_update, _update),
     (checks.check_deduplicate, _dedup), (checks.check_pnmi, _pnmi)],
)
def test_checks_accept_correct_solutions(check, fn, capsys):
    check(fn)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda x, c: torch.cdist(x, c).argmax(dim=1), "argmin of the distances"),
        (lambda x, c: (x @ c.T).argmax(dim=1), r"\|c\|\^2"),
        (lambda x, c: torch.cdist(x, c).argmin(dim=1).float(), "integer ids"),
    ],
)
def test_assign_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_kmeans_assign(wrong)


def test_update_check_explains_empty_clusters():
    def nan_for_empty(x, assign, c):
        return torch.stack([x[assign == k].mean(dim=0) for k in range(len(c))])

    with pytest.raises(AssertionError, match="keep its old value"):
        checks.check_kmeans_update(nan_for_empty)


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda ids: (torch.unique(ids), torch.ones(len(torch.unique(ids)), dtype=torch.long)), "consecutive"),
        (lambda ids: (_dedup(ids)[0], torch.ones_like(_dedup(ids)[0])), "add up to"),
        (lambda ids: _dedup(ids)[0], "two things"),
    ],
)
def test_deduplicate_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_deduplicate(wrong)


def test_pnmi_check_explains_mistakes():
    with pytest.raises(AssertionError, match="H\\(unit\\)"):
        checks.check_pnmi(lambda p, u: (lambda m, hp, hu: m / hu if hu else 0.0)(*_mi_and_entropies(p, u)))
    with pytest.raises(AssertionError, match="mutual information itself"):
        checks.check_pnmi(lambda p, u: _mi_and_entropies(p, u)[0])
