"""Probing classifiers: what an utterance's audio carries beyond its words (notebooks 00 and 01).

`utterance_features` pools a whole utterance into one vector: the mean and spread of its log-mel
spectrum (voice quality, formants), its pitch level and range, the shape of its melody and of its
ending (a question rises at the end), and its speaking rate (voiced stretches per second). A linear classifier on these vectors, trained on
some speakers and tested on others, tells whether a label (gender, speaking style, question
intonation) can be *heard*: the corpus' labels are checked this way, and notebook 01 uses the same
probe to show what a text cascade throws away. `speaker_probe` asks the same of speech units: how well
a bag of them names who is speaking (notebooks 02 and 05).

Usage::

    x = utterance_features(wav)              # (D,) numpy vector
    X = speaker_normalise(features_of(wavs), speakers)   # adds each speaker's deviation from their mean
    acc = probe_accuracy(X_train, y_train, X_test, y_test)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slm_course.audio import SR, check_wav, log_mel, pitch

N_MELS = 40  # mel bands pooled into the feature vector


def utterance_features(wav: torch.Tensor | np.ndarray, sr: int = SR) -> np.ndarray:
    """One pooled vector per utterance: log-mel mean/std, pitch level/range/contour, speaking rate. (D,)"""
    x = check_wav(wav, sr, expected_sr=SR)
    mel = log_mel(x, sr, n_mels=N_MELS)  # (N_MELS, frames)
    energy = mel.exp().sum(dim=0)
    speech = energy > energy.max() * 1e-3  # frames within 30 dB of the loudest
    m = mel[:, speech] if speech.sum() > 2 else mel
    speech_s = max(float(speech.sum()) / 100, 0.1)  # seconds of speech (10 ms frames)
    _, f0 = pitch(x, sr)
    voiced = ~torch.isnan(f0)
    onsets = float((voiced[1:] & ~voiced[:-1]).sum())  # voiced stretches: about one per syllable
    rate = [onsets / speech_s, float(voiced.sum()) / 100 / speech_s,
            float((m[:, 1:] - m[:, :-1]).abs().mean()) if m.shape[1] > 1 else 0.0, np.log(x.numel() / sr)]
    lf0 = torch.log2(f0[voiced]).numpy()  # octaves
    if len(lf0) >= 10:
        med = float(np.median(lf0))
        level = [med, float(lf0.std()), float(np.quantile(lf0, 0.1)) - med, float(np.quantile(lf0, 0.9)) - med]
        contour = [float(np.median(seg)) - med for seg in np.array_split(lf0, 5)]  # the melody, in 5 parts
        tail = lf0[-max(3, len(lf0) // 5):]  # the last fifth of voicing: a question rises here
        ending = [float(tail.max()) - med, float(tail[-3:].mean()) - med, float(tail.max() - tail.min()),
                  float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) * 10]
    else:  # (almost) no voicing: neutral values
        level, contour, ending = [0.0] * 4, [0.0] * 5, [0.0] * 4
    return np.concatenate([m.mean(dim=1).numpy(), m.std(dim=1).numpy(),
                           np.array(level + contour + ending + rate)]).astype(np.float32)


def features_of(wavs: Sequence[torch.Tensor], sr: int = SR, progress: bool = False) -> np.ndarray:
    """`utterance_features` for many utterances: (N, D)."""
    from tqdm.auto import tqdm

    return np.stack([utterance_features(w, sr) for w in tqdm(wavs, desc="features", disable=not progress)])


def speaker_normalise(X: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """[X, X minus its speaker's mean]: (N, 2D). Style and intonation are relative to a speaker's usual voice.

    Each speaker's mean is taken over the rows given, so held-out speakers are normalised by their
    own utterances (as ASR systems normalise per speaker), never by training speakers' statistics.
    """
    X = np.asarray(X)
    if len(speakers) != len(X):
        raise ValueError(f"one speaker per row: got {len(speakers)} speakers for {len(X)} rows.")
    spk = np.asarray(speakers)
    centred = X.copy()
    for s in np.unique(spk):
        centred[spk == s] -= X[spk == s].mean(axis=0)
    return np.concatenate([X, centred], axis=1)


def make_probe():
    """A linear probe: standardised features -> logistic regression (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))


def probe_accuracy(X_train: np.ndarray, y_train: Sequence, X_test: np.ndarray, y_test: Sequence) -> float:
    """Train a linear probe on (X_train, y_train); its accuracy on (X_test, y_test)."""
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D; got {X_train.shape} and {X_test.shape}.")
    if len(X_train) != len(y_train) or len(X_test) != len(y_test):
        raise ValueError(f"each feature matrix needs exactly one label per row: got {len(X_train)} rows and "
                         f"{len(y_train)} labels to train on, {len(X_test)} rows and {len(y_test)} labels to test "
                         "on; pass one label per utterance, in the same order")
    if len(set(y_train)) < 2:
        raise ValueError(f"the training labels hold a single class ({next(iter(set(y_train)))!r}); a probe needs at "
                         "least two: train on more utterances (e.g. a larger random sample of the train split)")
    probe = make_probe().fit(X_train, list(y_train))
    return float((probe.predict(X_test) == np.asarray(list(y_test))).mean())


def bag_probe(seqs: Sequence[torch.Tensor], labels: Sequence, vocab_size: int, folds: int = 5) -> float:
    """How well a bag of units (each unit's share of a sequence) names ``labels``: 5-fold linear probe accuracy."""
    from sklearn.model_selection import cross_val_score

    bag = np.stack([np.bincount(s.numpy(), minlength=vocab_size) / max(1, len(s)) for s in seqs])
    return float(cross_val_score(make_probe(), bag, list(labels), cv=folds).mean())


def speaker_probe(tokenizer, corpus, seqs: Sequence[torch.Tensor] | None = None) -> float:
    """How well a bag of units names the speaker among the 4 held-out voices (test split, 5-fold; chance 0.25).

    ``tokenizer``: a speech tokenizer (``encode(wav).ids``, ``vocab_size``); ``corpus``: its test split is
    probed; ``seqs``: the test utterances' unit sequences, if already encoded.
    """
    utts = corpus.split("test")
    if seqs is None:
        seqs = [tokenizer.encode(corpus.wav(u)).ids for u in utts]
    elif len(seqs) != len(utts):
        raise ValueError(f"seqs must be the {len(utts)} test utterances' units, in corpus.split('test') order "
                         f"(e.g. unit_data(...)['test']); got {len(seqs)}")
    return bag_probe(seqs, [u.speaker for u in utts], tokenizer.vocab_size)
