"""Quizzes, and the written answer of an open-ended experiment, checked in words.

Each chapter's checks module (``ch00``, ``ch01``, ...) defines ``QUIZ``, a tuple of :class:`Question` s.
The exercise notebook shows the questions; the learner fills in ``answers = {1: "b", 2: 0.25, ...}``
and runs ``checks.check_quiz("01", answers)``, which says for each question whether the answer is
right and, when it is not, what to look at again. The explanations of the right answers are in the
solutions notebook, beside the answers.

>>> q = Question("How many samples per second does the course's audio have?", answer=16000, tolerance=0,
...              hint="notebook 00, section 1")
>>> _check_one(1, q, 16000)
(True, '1: right')
>>> _check_one(1, Question("Which is a speech LM?", choices=("a) GSLM", "b) BERT"), answer="a", hint="the map"), "b")
(False, '1: not b; look again at the map')
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import Any

from ._common import _fail, _ok

__all__ = ["Question", "check_explanation", "check_quiz", "show_quiz"]


@dataclass(frozen=True)
class Question:
    """One quiz question: multiple choice (``choices`` and the letter of the right one) or a number."""

    text: str
    answer: str | float  # the letter of the right choice ("a", "b", ...), or the number
    choices: tuple[str, ...] = ()  # "a) ...", "b) ...": empty for a numeric question
    tolerance: float = 0.0  # a numeric answer is right within this absolute distance
    hint: str = ""  # where to look again: a section, a cell, a formula

    def __post_init__(self) -> None:
        if self.choices:
            letters = [c.split(")", 1)[0].strip() for c in self.choices]
            if not (isinstance(self.answer, str) and self.answer in letters):
                raise ValueError(f"answer {self.answer!r} must be one of the choices' letters {letters}")
        elif isinstance(self.answer, str) or not math.isfinite(float(self.answer)):
            raise ValueError(f"a question without choices takes a finite number as its answer, got {self.answer!r}")


def _check_one(number: int, q: Question, given: Any) -> tuple[bool, str]:
    if given is None or given is ...:
        return False, f"{number}: not answered yet"
    if q.choices:
        letter = str(given).strip().lower().rstrip(")")
        ok = letter == q.answer
        shown = letter
    else:
        try:
            value = float(given)
        except (TypeError, ValueError):
            return False, f"{number}: {given!r} is not a number; answer with a number"
        ok = math.isfinite(value) and abs(value - float(q.answer)) <= q.tolerance + 1e-12
        shown = f"{value:g}"
    if ok:
        return True, f"{number}: right"
    return False, f"{number}: not {shown}" + (f"; look again at {q.hint}" if q.hint else "")


def _quiz_of(chapter: str) -> tuple[Question, ...]:
    name = f"{int(chapter):02d}" if str(chapter).isdigit() else str(chapter)
    try:
        module = importlib.import_module(f"slm_course.checks.ch{name}")
    except ModuleNotFoundError:
        raise ValueError(f"no chapter {chapter!r}: use the notebook's number, e.g. check_quiz('01', answers)") from None
    quiz = getattr(module, "QUIZ", None)
    if not quiz:
        raise ValueError(f"chapter {name} has no quiz yet")
    return quiz


def show_quiz(chapter: str) -> None:
    """Print chapter ``chapter`` 's questions, numbered as ``check_quiz`` expects them."""
    for number, q in enumerate(_quiz_of(chapter), start=1):
        print(f"{number}. {q.text}")
        for choice in q.choices:
            print(f"   {choice}")
        if not q.choices:
            print("   (a number)")


def check_quiz(chapter: str, answers: dict[int, Any]) -> None:
    """Check ``answers`` (question number -> a letter or a number) to chapter ``chapter`` 's quiz.

    Prints a ✓ line when every answer is right; otherwise raises ``AssertionError`` listing, for each
    question, "right", "not answered yet" or where to look again.
    """
    if not isinstance(answers, dict):
        _fail(f"answers must be a dict of question number -> answer, e.g. {{1: 'b', 2: 0.25}}; got {type(answers).__name__}")
    quiz = _quiz_of(chapter)
    answers = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in answers.items()}
    unknown = sorted(k for k in answers if k not in range(1, len(quiz) + 1))
    if unknown:
        _fail(f"the quiz has questions 1..{len(quiz)}; there is no question {unknown[0]}")
    results = [_check_one(n, q, answers.get(n)) for n, q in enumerate(quiz, start=1)]
    if all(ok for ok, _ in results):
        _ok(f"all {len(quiz)} answers are right")
        return
    right = sum(ok for ok, _ in results)
    _fail(f"{right} of {len(quiz)} right:\n" + "\n".join(line for _, line in results))


def check_explanation(explanation: Any, mentions: tuple[str, ...] = (), min_words: int = 30) -> None:
    """Check the written answer of an open-ended experiment: real sentences that name what matters.

    ``mentions``: the ideas an answer must name, each as alternatives separated by ``|`` (e.g.
    ``("PNMI", "context|neighbour")``), matched without regard to case. This cannot tell a right
    explanation from a wrong one; it makes sure there is one, about the right things, to compare
    with the model answer in the solutions notebook.

    >>> check_explanation("The error falls with more levels because each level codes what the "
    ...                   "previous ones left over, so the residual shrinks " * 2, mentions=("level", "residual"))
    ✓ explanation recorded (40 words, naming levels, residual); this check does not grade it: compare it with the model answer in the solutions notebook
    """
    if not isinstance(explanation, str):
        _fail(f"explanation must be a string of sentences (explanation = \"\"\"...\"\"\"), got {type(explanation).__name__}")
    words = explanation.replace("...", " ").split()
    if len(words) < min_words:
        _fail(f"the explanation has {len(words)} words; write at least {min_words}: what you measured, what changed, "
              "and why you think it changed")
    distinct = {w.strip(".,;:!?()\"'`").lower() for w in words} - {""}
    if len(distinct) < min_words // 2:
        _fail(f"the explanation uses only {len(distinct)} different words; write sentences in your own words "
              f"(at least {min_words // 2} different ones), not a phrase repeated")
    lowered = explanation.lower()
    # an idea is named where a word starts with it ("level" in "levels", not "end" in "spend")
    missing = [m for m in mentions
               if not any(re.search(rf"\b{re.escape(alt.lower())}", lowered) for alt in m.split("|"))]
    if missing:
        _fail(f"the explanation does not name {', '.join(m.replace('|', ' or ') for m in missing)}: "
              "say how your results bear on it")
    # the words the answer used for each idea ("recurrent" for "GRU|state|recurren"), as written
    found = [re.search(rf"\b(?:{'|'.join(re.escape(a.lower()) for a in m.split('|'))})\w*", lowered) for m in mentions]
    named = ", ".join(hit.group(0) for hit in found)
    _ok(f"explanation recorded ({len(words)} words" + (f", naming {named}" if mentions else "")
        + "); this check does not grade it: compare it with the model answer in the solutions notebook")
