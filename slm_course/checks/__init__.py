"""Checks for the exercises: run the learner's function on several cases and say in words what is wrong.

Each ``check_*`` function takes the learner's function, runs it on a few cases with known answers
(computed with torch/torchaudio or from a formula), and either prints a line starting with ``✓`` or
raises ``AssertionError`` with a message that names the case, what came back, what was expected,
and the most likely reason.

>>> import torchaudio
>>> check_mu_law_encode(lambda wav, n: torchaudio.functional.mu_law_encoding(wav, n))
✓ mu_law_encode matches torchaudio's mu_law_encoding: 0.0 -> id 128, 0.01 -> 157, 0.5 -> 239 of 0..255

Each chapter's quiz is ``QUIZ`` in its module, shown by :func:`show_quiz` and checked by
:func:`check_quiz` (:mod:`slm_course.checks.quiz`).

One module per notebook (``ch00``, ``ch01``, ...); every check is importable from here::

    from slm_course import checks
    checks.check_mu_law_encode(mu_law_encode)
"""

from __future__ import annotations

from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09
from .ch00 import *  # noqa: F403
from .ch01 import *  # noqa: F403
from .ch02 import *  # noqa: F403
from .ch03 import *  # noqa: F403
from .ch04 import *  # noqa: F403
from .ch05 import *  # noqa: F403
from .ch06 import *  # noqa: F403
from .ch07 import *  # noqa: F403
from .ch08 import *  # noqa: F403
from .ch09 import *  # noqa: F403
from .quiz import Question, check_explanation, check_quiz, show_quiz

__all__ = ["Question", "check_explanation", "check_quiz", "show_quiz"]
for _chapter in (ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09):
    __all__ += _chapter.__all__
