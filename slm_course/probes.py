"""Probing classifiers: what an utterance's audio carries beyond its words (notebooks 00 and 01).

`utterance_features` pools a whole utterance into one vector: the mean and spread of its log-mel
spectrum (voice quality, formants), statistics of its pitch contour (level, range, final rise), and
how fast the spectrum changes (speaking rate). A linear classifier on these vectors, trained on
some speakers and tested on others, tells whether a label (gender, speaking style, question
intonation) can be *heard*: the corpus' labels are checked this way, and notebook 01 uses the same
probe to show what a text cascade throws away.

>>> x = utterance_features(wav)              # (D,) numpy vector
>>> acc = probe_accuracy(X_train, y_train, X_test, y_test)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slm_course.audio import SR, check_wav, log_mel, pitch

N_MELS = 40  # mel bands pooled into the feature vector


def utterance_features(wav: torch.Tensor | np.ndarray, sr: int = SR) -> np.ndarray:
    """One pooled vector per utterance: log-mel mean/std, pitch statistics, rate of change. (D,)"""
    x = check_wav(wav, sr, expected_sr=SR)
    mel = log_mel(x, sr, n_mels=N_MELS)  # (N_MELS, frames)
    energy = mel.exp().sum(dim=0)
    speech = energy > energy.max() * 1e-3  # frames within 30 dB of the loudest
    m = mel[:, speech] if speech.sum() > 2 else mel
    delta = (m[:, 1:] - m[:, :-1]).abs().mean()  # spectral change per frame: faster speech, more change
    _, f0 = pitch(x, sr)
    voiced = ~torch.isnan(f0)
    if voiced.sum() >= 8:
        lf0 = torch.log2(f0[voiced])  # octaves
        end = lf0[-6:].median()  # the last ~60 ms of voicing: a question rises here
        before = lf0[-30:-10].median() if len(lf0) >= 16 else lf0[: len(lf0) // 2].median()
        stats = [lf0.median(), lf0.std(), torch.quantile(lf0, 0.1), torch.quantile(lf0, 0.9),
                 end - before, end - lf0.median(), lf0[-6:].max() - lf0[-16:-6].min() if len(lf0) >= 16 else 0.0]
        stats = [float(s) for s in stats] + [float(voiced.float().mean())]
    else:
        stats = [0.0] * 7 + [float(voiced.float().mean())]
    duration = x.numel() / sr
    return np.concatenate([m.mean(dim=1).numpy(), m.std(dim=1).numpy(),
                           np.array([*stats, float(delta), np.log(duration), float(speech.float().mean())])]).astype(np.float32)


def features_of(wavs: Sequence[torch.Tensor], sr: int = SR, progress: bool = False) -> np.ndarray:
    """`utterance_features` for many utterances: (N, D)."""
    from tqdm.auto import tqdm

    return np.stack([utterance_features(w, sr) for w in tqdm(wavs, desc="features", disable=not progress)])


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
        raise ValueError("each feature matrix needs exactly one label per row.")
    if len(set(y_train)) < 2:
        raise ValueError("the training labels hold a single class; a probe needs at least two.")
    probe = make_probe().fit(X_train, list(y_train))
    return float((probe.predict(X_test) == np.asarray(list(y_test))).mean())
