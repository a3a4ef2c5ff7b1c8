"""Probing classifiers: what the audio carries beyond the words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slm_course import probes
from slm_course.probes import features_of, probe_accuracy, utterance_features


def test_features_shape_and_validation(small_corpus):
    u = small_corpus.utterances[0]
    x = utterance_features(small_corpus.wav(u))
    assert x.ndim == 1 and np.isfinite(x).all()
    with pytest.raises(ValueError, match="resample"):
        utterance_features(small_corpus.wav(u), sr=8000)
    assert np.isfinite(utterance_features(torch.zeros(8000))).all()  # a pause: no voicing, neutral pitch values


def test_probe_hears_gender_on_held_out_speakers(small_corpus):
    c = small_corpus
    train = c.split("train") + c.split("valid")
    test = c.split("test") + c.split("eval_syntactic")
    x_train, x_test = features_of([c.wav(u) for u in train]), features_of([c.wav(u) for u in test])
    acc = probe_accuracy(x_train, [u.gender for u in train], x_test, [u.gender for u in test])
    assert acc >= 0.9
    shuffled = np.random.default_rng(0).permutation([u.gender for u in train])
    assert probe_accuracy(x_train, shuffled, x_test, [u.gender for u in test]) < acc


def test_probe_errors():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="single class"):
        probe_accuracy(x, [1, 1, 1, 1], x, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="one label per row"):
        probe_accuracy(x, [0, 1], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        probe_accuracy(x, [0, 1, 0, 1], np.zeros((4, 2)), [0, 1, 0, 1])


def test_bag_probe_reads_labels_that_the_units_carry_and_not_others():
    gen = torch.Generator().manual_seed(0)
    labels = [i % 2 for i in range(40)]
    carried = [torch.randint(0, 5, (30,), generator=gen) + 5 * y for y in labels]  # label 1 uses units 5-9
    assert probes.bag_probe(carried, labels, vocab_size=10) == 1.0
    noise = [torch.randint(0, 10, (30,), generator=gen) for _ in labels]
    assert probes.bag_probe(noise, labels, vocab_size=10) < 0.8


def test_speaker_probe_refuses_sequences_that_are_not_the_test_split(small_corpus):
    n = len(small_corpus.split("test"))
    with pytest.raises(ValueError, match=f"the {n} test utterances"):
        probes.speaker_probe(None, small_corpus, [torch.zeros(3, dtype=torch.long)] * (n + 1))
