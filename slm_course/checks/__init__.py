"""Checks for the exercises: run the learner's function on several cases and say in words what is wrong.

Each ``check_*`` function takes the learner's function, runs it on a few cases with known answers
(computed with torch/torchaudio or from a formula), and either prints a line starting with ``✓`` or
raises ``AssertionError`` with a message that names the case, what came back, what was expected,
and the most likely reason. The exercises of notebook 00 (``solutions/00_audio_exercises.ipynb``):

- :func:`check_aliased_frequency` - the frequency a sampled tone is heard at
- :func:`check_hz_to_mel`, :func:`check_mel_filterbank` - the HTK mel scale and a mel filterbank
- :func:`check_frames`, :func:`check_power_spectrum` - framing and the power spectrum of the STFT
- :func:`check_autocorrelation_f0` - F0 of a voiced frame from its autocorrelation

>>> import torch
>>> check_hz_to_mel(lambda f: 2595 * torch.log10(1 + f / 700))
✓ hz_to_mel is correct: 0, 700, 1000 and 8000 Hz give 0.0, 781.2, 1000.0 and 2840.0 mel

Later notebooks: ``ch01`` (CTC decoding, WER, question intonation, temperature sampling), ``ch02``
(k-means assignment and update, de-duplication, PNMI), ``ch03`` (the RVQ loop, bitrate, SI-SNR),
``ch04`` (sequence log-likelihood, a bigram LM, TWIST's warm start), ``ch05`` (AudioLM's flattening
with offsets, aligning frame rates, unit durations).

One module per notebook (``ch00``, ``ch01``, ...); every check is importable from here::

    from slm_course import checks
    checks.check_hz_to_mel(hz_to_mel)
"""

from __future__ import annotations

from . import ch02, ch03, ch04, ch05
from .ch00 import (
    check_aliased_frequency,
    check_autocorrelation_f0,
    check_frames,
    check_hz_to_mel,
    check_mel_filterbank,
    check_power_spectrum,
)
from .ch01 import (
    check_ctc_greedy_decode,
    check_question_classifier,
    check_sample_with_temperature,
    check_wer,
    question_cases,
)
from .ch02 import *  # noqa: F403
from .ch03 import *  # noqa: F403
from .ch04 import *  # noqa: F403
from .ch05 import *  # noqa: F403

__all__ = [
    "check_aliased_frequency",
    "check_autocorrelation_f0",
    "check_ctc_greedy_decode",
    "check_frames",
    "check_hz_to_mel",
    "check_mel_filterbank",
    "check_power_spectrum",
    "check_question_classifier",
    "check_sample_with_temperature",
    "check_wer",
    "question_cases",
]
__all__ += ch02.__all__ + ch03.__all__ + ch04.__all__ + ch05.__all__
