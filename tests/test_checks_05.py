"""Notebook 05's exercise checks accept the solutions and name the usual mistakes."""

import json
import re
from pathlib import Path

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


def test_ctc_units_must_be_long_tensors():
    def as_lists(path, blank):
        return tuple(x.tolist() for x in ctc_units(path, blank))

    with pytest.raises(AssertionError, match="units came back as a list; return two torch tensors"):
        checks.check_ctc_units(as_lists)
    with pytest.raises(AssertionError, match="torch.float32; return long tensors"):
        checks.check_ctc_units(lambda path, blank: tuple(x.float() for x in ctc_units(path, blank)))

    def empty_as_float(path, blank):
        units, durations = ctc_units(path, blank)
        return (torch.tensor([]), torch.tensor([])) if len(units) == 0 else (units, durations)

    with pytest.raises(AssertionError, match=r"only blanks .*torch.zeros\(0, dtype=torch.long\)"):
        checks.check_ctc_units(empty_as_float)


def test_bag_of_units_mistakes_are_named():
    with pytest.raises(AssertionError, match="divide the counts"):
        checks.check_bag_of_units(lambda seqs, n: torch.stack([torch.bincount(s, minlength=n) for s in seqs]))
    with pytest.raises(AssertionError, match="expected \\(3, 5\\).*transposed"):
        checks.check_bag_of_units(lambda seqs, n: bag_of_units(seqs, n).T)
    # without minlength the rows differ in length: the learner's own stack fails, and the check says why
    with pytest.raises(AssertionError, match="raised 'all input arrays must have the same shape'.*minlength=n_units"):
        checks.check_bag_of_units(lambda seqs, n: np.stack([np.bincount(s.numpy()) / len(s) for s in seqs]))
    with pytest.raises(AssertionError, match="stack expects each tensor to be equal size.*minlength=n_units"):
        checks.check_bag_of_units(lambda seqs, n: torch.stack([torch.bincount(s) / len(s) for s in seqs]))
    with pytest.raises(AssertionError, match="inhomogeneous.*minlength=n_units"):
        checks.check_bag_of_units(lambda seqs, n: [np.bincount(s.numpy()) / len(s) for s in seqs])
    # a list of rows is not one array: the probe cell indexes the result by rows, X[train_idx]
    with pytest.raises(AssertionError, match="returned a list; return one \\(N, n_units\\) array"):
        checks.check_bag_of_units(lambda seqs, n: list(bag_of_units(seqs, n)))
    checks.check_bag_of_units(lambda seqs, n: torch.as_tensor(bag_of_units(seqs, n)))  # a tensor indexes as well


def _centroid_variant(average=np.mean, distance="squared", pick=np.argmin):
    def probe(train_X, train_y, test_X):
        labels = sorted(set(train_y))
        y = np.array(train_y)
        centres = np.stack([average(train_X[y == lab], 0) for lab in labels])
        diff = test_X[:, None] - centres[None]
        if distance == "squared":
            d = (diff ** 2).sum(-1)
        elif distance == "euclidean":
            d = np.linalg.norm(diff, axis=-1)
        elif distance == "L1":
            d = np.abs(diff).sum(-1)
        elif distance == "Linf":
            d = np.abs(diff).max(-1)
        else:
            d = -(test_X @ centres.T) / np.outer(np.linalg.norm(test_X, axis=1), np.linalg.norm(centres, axis=1))
        return [labels[i] for i in pick(d, 1)]

    return probe


def nearest_row(train_X, train_y, test_X):
    return [train_y[int(((train_X - x) ** 2).sum(1).argmin())] for x in test_X]


def test_centroid_probe_mistakes_are_named_each_by_its_own_message():
    checks.check_centroid_probe(_centroid_variant(distance="euclidean"))  # the root changes no nearest mean
    checks.check_centroid_probe(lambda X, y, T: np.array(centroid_probe(X, y, T)))  # an array of labels is fine
    with pytest.raises(AssertionError, match="not their indices"):
        checks.check_centroid_probe(lambda X, y, T: [sorted(set(y)).index(lab) for lab in centroid_probe(X, y, T)])
    named = {
        "nearest training \\*row\\*": nearest_row,
        "nearest \\*median\\*": _centroid_variant(average=np.median),
        "you summed each label's rows": _centroid_variant(average=np.sum),
        "absolute differences \\(L1": _centroid_variant(distance="L1"),
        "L-infinity": _centroid_variant(distance="Linf"),
        "by cosine": _centroid_variant(distance="cosine"),
        "\\*farthest\\* mean": _centroid_variant(pick=np.argmax),
        "two different orders": lambda X, y, T: [  # means in the order the labels first appear, names sorted
            np.unique(y)[int(np.argmin([((x - X[np.array(y) == lab].mean(0)) ** 2).sum()
                                        for lab in dict.fromkeys(y)]))] for x in T],
        "you averaged the distances": lambda X, y, T: [  # the mean distance to a label's rows, not to its mean
            min(sorted(set(y)), key=lambda lab: np.mean([np.linalg.norm(r - x) for r, t in zip(X, y) if t == lab]))
            for x in T],
    }
    for message, wrong in named.items():
        with pytest.raises(AssertionError, match=message) as info:
            checks.check_centroid_probe(wrong)
        others = [m for m in named if m != message]
        assert not any(re.search(m, str(info.value)) for m in others), str(info.value)
    # a mistake the check does not know gets the general advice, never a wrong diagnosis
    with pytest.raises(AssertionError, match="average the rows of each label into a mean") as info:
        checks.check_centroid_probe(lambda X, y, T: _centroid_variant()(X[:, :1], y, T[:, :1]))  # 1st feature only
    assert "nearest training *row*" not in str(info.value)


def test_bigram_bag_mistakes_are_named():
    with pytest.raises(AssertionError, match="you have b \\* n_units \\+ a"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(s, n).reshape(n, n).T.reshape(-1))

    def distinct_pairs(seq, n):  # each pair once, however often it occurs
        out = torch.zeros(n * n)
        pairs = set(zip(seq.tolist(), seq.tolist()[1:]))
        for a, b in pairs:
            out[a * n + b] = 1 / len(pairs)
        return out

    with pytest.raises(AssertionError, match="\\[0, 1, 0, 1\\].*count a pair every time it occurs.*\\(0, 1\\) occurs 2 times"):
        checks.check_bigram_bag(distinct_pairs)
    with pytest.raises(AssertionError, match="a \\(3, 3\\) matrix; return a flat vector of n_units \\* n_units"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(s, n).reshape(n, n))
    with pytest.raises(AssertionError, match="n_units=4\\) raised 'index .*16 entries"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(s, 3))  # n_units fixed at 3: the second n_units fails
    with pytest.raises(AssertionError, match="divide by the number of pairs, len\\(seq\\) - 1"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(s, n) * (len(s) - 1) / len(s))
    with pytest.raises(AssertionError, match="keep repeated units.*\\(1, 1\\)"):
        checks.check_bigram_bag(lambda s, n: bigram_bag(torch.unique_consecutive(s), n))

    def divides_by_zero(seq, n):
        out = torch.zeros(n * n)
        out.index_add_(0, seq[:-1] * n + seq[1:], torch.ones(len(seq) - 1))
        return out / (len(seq) - 1)

    with pytest.raises(AssertionError, match="do not divide by 0"):
        checks.check_bigram_bag(divides_by_zero)


def test_quiz_answers():
    right = {1: "c", 2: "a", 3: "d", 4: "b", 5: "c"}
    checks.check_quiz("05", right)
    with pytest.raises(AssertionError, match="3: not a"):
        checks.check_quiz("05", {**right, 3: "a"})


def _solution_cells() -> dict[str, str]:
    nb = json.loads((Path(__file__).resolve().parents[1] / "solutions" / "05_normaliser_twist_exercises.ipynb")
                    .read_text(encoding="utf-8"))
    return {c["id"]: "".join(c["source"]) for c in nb["cells"]}


def test_written_answer_check_takes_the_model_answer_and_refuses_the_review_s_wrong_one(capsys):
    cells = _solution_cells()
    check = next(source for source in cells.values() if "check_explanation(" in source)
    model = {"checks": checks, "print": lambda *a: None}
    exec(cells["ex05-20"], model)  # the model answer: explanation = """..."""
    exec(check, model)
    assert "✓ explanation recorded" in capsys.readouterr().out
    wrong = ("The normalised units name the speaker better than the HuBERT units, because the normaliser copies each "
             "voice into its own set of units; the top 20 units are the best feature for every voice and the pairs "
             "add nothing at all.")
    with pytest.raises(AssertionError, match="does not name reference"):
        exec(check, {"checks": checks, "explanation": wrong})


def test_centroid_check_tells_every_known_mistake_apart():
    from slm_course.checks import ch05

    X, y, T = ch05._TRAIN_X, list(ch05._TRAIN_Y), ch05._TEST_X
    outputs = [tuple(ways[0](X, y, T)) for _, ways in ch05._CENTROID_MISTAKES]
    outputs += [tuple(centroid_probe(X, y, T))] + [(label,) * len(T) for label in sorted(set(y))]
    assert len(set(outputs)) == len(outputs), "two mistakes (or a mistake and a constant answer) give the same labels"
