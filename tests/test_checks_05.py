"""Notebook 05's exercise checks accept the solutions and name the usual mistakes."""

import numpy as np
import pytest
import torch

from slm_course import checks


def ctc_units(path, blank):
    starts = [t for t in range(len(path)) if path[t] != blank and (t == 0 or path[t] != path[t - 1])]
    if not starts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    bounds = torch.tensor([0, *starts[1:], len(path)])
    return path[starts].long(), bounds.diff()


def bag_of_units(seqs, n_units):
    return torch.stack([torch.bincount(s, minlength=n_units).float() / len(s) for s in seqs])


def centroid_probe(train_X, train_y, test_X):
    labels = sorted(set(train_y))
    y = np.array(train_y)
    means = np.stack([train_X[y == lab].mean(0) for lab in labels])
    return [labels[i] for i in ((test_X[:, None] - means[None]) ** 2).sum(-1).argmin(1)]


def bigram_bag(seq, n_units):
    out = torch.zeros(n_units * n_units)
    if len(seq) > 1:
        out.index_add_(0, seq[:-1] * n_units + seq[1:], torch.ones(len(seq) - 1))
        out /= len(seq) - 1
    return out


def test_solutions_pass(capsys):
    checks.check_ctc_units(ctc_units)
    checks.check_bag_of_units(bag_of_units)
    checks.check_centroid_probe(centroid_probe)
    checks.check_bigram_bag(bigram_bag)
    assert capsys.readouterr().out.count("✓") == 4


def test_ctc_mistakes_are_named():
    def keeps_blanks(path, blank):
        keep = [t for t in range(len(path)) if t == 0 or path[t] != path[t - 1]]
        return path[keep], torch.ones(len(keep), dtype=torch.long)

    def merges_across_blanks(path, blank):
        filled, last = [], None
        for x in path.tolist():  # a blank becomes the symbol before it, then runs are merged
            last = x if x != blank else last
            filled.append(last if last is not None else blank)
        starts = [t for t in range(len(filled)) if filled[t] != blank and (t == 0 or filled[t] != filled[t - 1])]
        if not starts:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        bounds = torch.tensor([0, *starts[1:], len(path)])
        return torch.tensor([filled[t] for t in starts]), bounds.diff()

    def unit_frames_only(path, blank):
        units, _ = ctc_units(path, blank)
        runs = []
        for t in range(len(path)):
            if path[t] != blank and (t == 0 or path[t] != path[t - 1]):
                runs.append(0)
            if path[t] != blank and runs:
                runs[-1] += 1
        return units, torch.tensor(runs, dtype=torch.long)

    with pytest.raises(AssertionError, match="blank is not a unit"):
        checks.check_ctc_units(keeps_blanks)
    with pytest.raises(AssertionError, match="a unit after a blank is a new unit"):
        checks.check_ctc_units(merges_across_blanks)
    with pytest.raises(AssertionError, match="add up to"):
        checks.check_ctc_units(unit_frames_only)


def test_probe_mistakes_are_named():
    with pytest.raises(AssertionError, match="divide the counts"):
        checks.check_bag_of_units(lambda seqs, n: torch.stack([torch.bincount(s, minlength=n) for s in seqs]))
    with pytest.raises(AssertionError, match="expected \\(3, 5\\)"):
        checks.check_bag_of_units(lambda seqs, n: bag_of_units(seqs, n).T)
    with pytest.raises(AssertionError, match="not their indices"):
        checks.check_centroid_probe(lambda X, y, T: [sorted(set(y)).index(lab) for lab in centroid_probe(X, y, T)])

    def nearest_row(train_X, train_y, test_X):
        return [train_y[int(((train_X - x) ** 2).sum(1).argmin())] for x in test_X]

    with pytest.raises(AssertionError, match="nearest training \\*row\\*"):
        checks.check_centroid_probe(nearest_row)


def test_bigram_bag_mistakes_are_named():
    with pytest.raises(AssertionError, match="you have b \\* n_units \\+ a"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(s, n).reshape(n, n).T.reshape(-1))

    def divides_by_zero(seq, n):
        out = torch.zeros(n * n)
        out.index_add_(0, seq[:-1] * n + seq[1:], torch.ones(len(seq) - 1))
        return out / (len(seq) - 1)

    with pytest.raises(AssertionError, match="do not divide by 0"):
        checks.check_bigram_bag(divides_by_zero)


def test_quiz_answers():
    right = {1: "b", 2: "d", 3: "c", 4: "a", 5: "b"}
    checks.check_quiz("05", right)
    with pytest.raises(AssertionError, match="3: not a"):
        checks.check_quiz("05", {**right, 3: "a"})
