"""Quizzes: questions are well formed, right answers pass, wrong or missing ones are named with a hint."""

import pytest

from slm_course.checks import quiz
from slm_course.checks.quiz import Question, check_explanation, check_quiz

TOY = (
    Question("Which family models p(speech)?", answer="a", choices=("a) pure speech LMs", "b) speech-aware text LMs"),
             hint="the map in notebook 00"),
    Question("How many frames per second at a 20 ms hop?", answer=50, tolerance=0.5, hint="the frame rate"),
)


@pytest.fixture
def toy_chapter(monkeypatch):
    monkeypatch.setattr(quiz, "_quiz_of", lambda chapter: TOY)


def test_right_answers_pass(toy_chapter, capsys):
    check_quiz("99", {1: "a", 2: 50.2})
    assert "✓ all 2 answers are right" in capsys.readouterr().out
    check_quiz("99", {1: "A)", 2: 50})  # a letter in any case, with its parenthesis
    check_quiz("99", {"1": "a", "2": 50})  # keys typed as strings


def test_wrong_and_missing_answers_are_named_with_where_to_look(toy_chapter):
    with pytest.raises(AssertionError, match=r"1 of 2 right:\n1: not b; look again at the map in notebook 00\n2: right"):
        check_quiz("99", {1: "b", 2: 50})
    with pytest.raises(AssertionError, match="2: not answered yet"):
        check_quiz("99", {1: "a"})
    with pytest.raises(AssertionError, match="not a number"):
        check_quiz("99", {1: "a", 2: "fifty"})
    with pytest.raises(AssertionError, match="no question 3"):
        check_quiz("99", {3: "a"})
    with pytest.raises(AssertionError, match="must be a dict"):
        check_quiz("99", ["a", 50])


def test_questions_are_checked_when_written():
    with pytest.raises(ValueError, match="one of the choices"):
        Question("?", answer="c", choices=("a) x", "b) y"))
    with pytest.raises(ValueError, match="finite number"):
        Question("?", answer="a")


def _chapter_quizzes():
    """(chapter number, its QUIZ) for every chapter whose checks module has one."""
    import importlib

    for n in range(10):
        try:
            module = importlib.import_module(f"slm_course.checks.ch{n:02d}")
        except ModuleNotFoundError:
            continue
        if getattr(module, "QUIZ", ()):
            yield n, module.QUIZ


def test_every_chapter_quiz_is_well_formed_and_its_key_passes():
    chapters = list(_chapter_quizzes())
    assert len(chapters) >= 10
    for n, questions in chapters:
        for q in questions:
            assert isinstance(q, Question) and q.text.strip() and q.hint.strip()
        check_quiz(f"{n:02d}", {i: q.answer for i, q in enumerate(questions, start=1)})
    with pytest.raises(ValueError, match="no chapter"):
        check_quiz("77", {})


def test_no_quiz_can_be_passed_by_picking_one_letter_or_the_longest_choice():
    for n, questions in _chapter_quizzes():
        choices = [q for q in questions if q.choices]
        if len(choices) < 3:
            continue
        letters = [q.answer for q in choices]
        assert len(set(letters)) > 1, f"chapter {n:02d}'s quiz: every right choice is {letters[0]!r}; vary them"
        longest = sum(max(q.choices, key=len)[0] == q.answer for q in choices)
        assert longest <= len(choices) / 2, (
            f"chapter {n:02d}'s quiz: the right choice is the longest in {longest} of {len(choices)} questions; "
            "lengthen a wrong one")


def test_an_explanation_must_be_sentences_that_name_what_matters(capsys):
    text = ("More levels lower the error because each level quantises the residual that the levels before it left. "
            "With one codebook the mel loss was high; with four it fell by half, and after that the curve flattened, "
            "since the last levels only code noise that the ear hardly hears.")
    check_explanation(text, mentions=("level", "residual|remainder"))
    assert "naming levels, residual); this check does not grade it" in capsys.readouterr().out  # the words used
    check_explanation(text.replace("residual", "remainder"), mentions=("level", "residual|remainder"))
    assert "naming levels, remainder)" in capsys.readouterr().out  # the alternative the answer used, not the first
    with pytest.raises(AssertionError, match="only 3 different words"):
        check_explanation("pitch state word " * 10, mentions=("pitch", "state", "word"))
    with pytest.raises(AssertionError, match="different words"):
        check_explanation("level residual " + "lorem ipsum dolor sit amet " * 6, mentions=("level", "residual"))
    spend = text.replace("residual", "leftover") + " We spend a weekend on it."
    with pytest.raises(AssertionError, match="does not name end"):  # a word that starts with the idea, not one that holds it
        check_explanation(spend, mentions=("end",))
    with pytest.raises(AssertionError, match="has 0 words"):
        check_explanation("...")
    with pytest.raises(AssertionError, match="does not name bitrate"):
        check_explanation(text, mentions=("bitrate",))
    with pytest.raises(AssertionError, match="must be a string"):
        check_explanation(None)


def test_no_chapter_exports_its_quiz_under_the_shared_name():
    from slm_course import checks

    assert "QUIZ" not in checks.__all__, "a chapter's __all__ lists QUIZ: checks.QUIZ would be whichever came last"


def test_a_failed_check_shows_its_message_alone_in_jupyter():
    from slm_course.checks._common import CheckFailed, _fail

    with pytest.raises(AssertionError) as info:  # still an AssertionError for pytest and nbval
        _fail("row 3 is NaN\ngive an unseen unit all its mass at duration 1")
    assert isinstance(info.value, CheckFailed)
    assert info.value._render_traceback_() == ["✗ row 3 is NaN", "  give an unseen unit all its mass at duration 1"]
