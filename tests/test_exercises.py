"""Exercise notebooks are generated from the solutions (slm_course.exercises), and the checks
(slm_course.checks) accept correct code and explain wrong code in words."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from slm_course import checks
from slm_course.exercises import BEGIN, END, GENERATED_KEY, PLACEHOLDER, main, make_exercise, strip_solutions, sync

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
RAISE = "raise NotImplementedError("


# ---------------------------------------------------------------------------------------------
# The committed exercise notebooks
# ---------------------------------------------------------------------------------------------


def test_exercises_are_in_sync_with_solutions():
    assert SOLUTIONS, "no solution notebooks found under solutions/"
    out_of_sync = sync(ROOT, check=True)
    assert out_of_sync == [], f"regenerate with `python -m slm_course.exercises`: {out_of_sync}"


def _solution_lines(source: str) -> tuple[set[str], set[str]]:
    """(stripped lines inside solution regions, stripped lines outside them) of a cell's source."""
    inside, outside, in_region = set(), set(), False
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            in_region = True
        elif line.strip() == END:
            in_region = False
        elif line.strip():
            (inside if in_region else outside).add(line.strip())
    return inside, outside


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_notebook_has_no_solution_code(solution: Path):
    sol = nbformat.read(solution, as_version=4)
    ex = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    assert len(ex.cells) == len(sol.cells)
    regions = 0
    for s_cell, e_cell in zip(sol.cells, ex.cells):
        assert (e_cell.cell_type, e_cell.get("id")) == (s_cell.cell_type, s_cell.get("id"))
        assert BEGIN not in e_cell.source and END not in e_cell.source
        if s_cell.cell_type != "code":
            continue
        n = s_cell.source.count(BEGIN)
        regions += n
        assert e_cell.source.count(PLACEHOLDER) == n and e_cell.source.count(RAISE) == n
        inside, outside = _solution_lines(s_cell.source)
        leaked = {line for line in inside - outside if line in {x.strip() for x in e_cell.source.split("\n")}}
        assert not leaked, f"solution lines left in exercise cell {e_cell.id}: {leaked}"
        assert e_cell.outputs == [] and e_cell.execution_count is None
    assert regions >= 3, f"{solution.name} should hold at least 3 exercises, found {regions} solution regions"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_every_exercise_ends_in_a_check(solution: Path):
    nb = nbformat.read(solution, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    for i, source in enumerate(code):
        if BEGIN in source:
            later = "\n".join(code[i + 1 : i + 3])
            assert "checks.check_" in later, f"the solution cell {source[:60]!r}... is not followed by a check cell"


# ---------------------------------------------------------------------------------------------
# make_exercise / strip_solutions / sync on small notebooks
# ---------------------------------------------------------------------------------------------


def _small_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell(
            "Write `f`. [badge](https://colab.research.google.com/github/o/r/blob/main/solutions/x.ipynb)\n"
            f"{BEGIN} in markdown is text",
            id="md",
        ),
        new_code_cell(
            "import math\n"
            "\n"
            "def f(x):\n"
            "    y = 2\n"
            f"    {BEGIN}\n"
            "    z = x * y\n"
            "    return z\n"
            f"    {END}\n"
            "\n"
            f"{BEGIN}\n"
            "top = 1\n"
            f"{END}\n"
            "print('after')",
            id="solution",
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="after\n")],
        ),
        new_code_cell(
            "check(f)", id="check", execution_count=4, outputs=[new_output("stream", name="stdout", text="✓ ok\n")]
        ),
        new_raw_cell("raw text", id="raw"),
    ]
    return nb


def test_make_exercise_replaces_exactly_the_solution_regions():
    nb = _small_notebook()
    before = nbformat.writes(nb)
    ex = make_exercise(nb)
    assert nbformat.writes(nb) == before, "make_exercise must not change its input"
    stub = f'{PLACEHOLDER}\nraise NotImplementedError("write your code here, then run the check cell below")'
    indented = "\n".join("    " + line for line in stub.split("\n"))
    assert ex.cells[1].source == f"import math\n\ndef f(x):\n    y = 2\n{indented}\n\n{stub}\nprint('after')"
    assert ex.cells[1].outputs == [] and ex.cells[1].execution_count is None
    assert ex.cells[2].source == "check(f)" and ex.cells[2].outputs == [] and ex.cells[2].execution_count is None
    assert ex.cells[0].source == nb.cells[0].source.replace("/solutions/", "/exercises/")  # only the Colab link
    assert ex.cells[3].source == "raw text"
    assert [c.id for c in ex.cells] == [c.id for c in nb.cells]
    compile(ex.cells[1].source, "exercise", "exec")  # the stub is valid Python


def test_exercise_stub_raises_not_implemented():
    source = make_exercise(_small_notebook()).cells[1].source.replace("print('after')", "")
    namespace: dict = {}
    with pytest.raises(NotImplementedError, match="write your code here"):
        exec(source, namespace)  # the top-level region raises at once


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (f"x = 1\n{BEGIN}\ny = 2", "never closed"),
        (f"x = 1\n{END}", "without a"),
        (f"{BEGIN}\n{BEGIN}\n{END}\n{END}", "inside another"),
    ],
)
def test_strip_solutions_rejects_broken_markers(source: str, message: str):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source)


def test_sync_writes_checks_and_removes_stale(tmp_path: Path):
    (tmp_path / "solutions").mkdir()
    nbformat.write(_small_notebook(), tmp_path / "solutions" / "x.ipynb")
    assert sync(tmp_path, check=True) == [tmp_path / "exercises" / "x.ipynb"]
    assert not (tmp_path / "exercises").exists(), "check=True must not write"
    assert sync(tmp_path) == [tmp_path / "exercises" / "x.ipynb"]
    text = (tmp_path / "exercises" / "x.ipynb").read_text()
    assert sync(tmp_path) == [] and sync(tmp_path, check=True) == []
    assert (tmp_path / "exercises" / "x.ipynb").read_text() == text, "the output must be deterministic"
    ex = nbformat.reads(text, as_version=4)
    assert ex.metadata[GENERATED_KEY] == "solutions/x.ipynb"
    assert "z = x * y" not in text and "top = 1" not in text and PLACEHOLDER in text
    # A hand-written exercise notebook is left alone; a generated one without its solution is removed.
    nbformat.write(new_notebook(), tmp_path / "exercises" / "hand_written.ipynb")
    (tmp_path / "solutions" / "x.ipynb").rename(tmp_path / "solutions" / "y.ipynb")
    stale = tmp_path / "exercises" / "x.ipynb"
    assert set(sync(tmp_path, check=True)) == {stale, tmp_path / "exercises" / "y.ipynb"}
    sync(tmp_path)
    assert not stale.exists() and (tmp_path / "exercises" / "hand_written.ipynb").exists()
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_main_check_reports_out_of_sync(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "solutions").mkdir()
    nbformat.write(_small_notebook(), tmp_path / "solutions" / "x.ipynb")
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of sync" in capsys.readouterr().out
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0


# ---------------------------------------------------------------------------------------------
# The checks: a correct implementation passes, plausible mistakes are explained
# ---------------------------------------------------------------------------------------------


def _passes(check, fn, capsys, *args) -> None:
    check(fn, *args)
    assert capsys.readouterr().out.startswith("✓")


def _f0(
    frame: torch.Tensor,
    sr: int,
    fmin: float = 60.0,
    fmax: float = 400.0,
    first_lag: int | None = None,
    hz: bool = True,
    fixed_sr: int | None = None,
) -> float:
    sr = fixed_sr or sr
    x = frame - frame.mean()
    n = len(x)
    lo, hi = (int(sr / fmax) if first_lag is None else first_lag), min(int(sr / fmin), n - 1)
    r = torch.stack([(x[: n - k] * x[k:]).sum() for k in range(lo, hi + 1)])
    lag = lo + int(r.argmax())
    return sr / lag if hz else float(lag)


def test_check_autocorrelation_f0(capsys):
    _passes(checks.check_autocorrelation_f0, _f0, capsys)
    with pytest.raises(AssertionError, match="period in samples"):
        checks.check_autocorrelation_f0(lambda frame, sr: _f0(frame, sr, hz=False))
    with pytest.raises(AssertionError, match="lag of \\(almost\\) 0"):
        checks.check_autocorrelation_f0(lambda frame, sr: _f0(frame, sr, first_lag=1))
    with pytest.raises(AssertionError, match="16000 instead of the sr argument"):
        checks.check_autocorrelation_f0(lambda frame, sr: _f0(frame, sr, fixed_sr=16000))
    with pytest.raises(AssertionError, match="multiple of the period"):
        checks.check_autocorrelation_f0(lambda frame, sr: _f0(frame, sr) / 2)
    with pytest.raises(AssertionError, match="finite"):
        checks.check_autocorrelation_f0(lambda frame, sr: float("inf"))


class _TinyCorpus:
    """Stands in for the course corpus in the F0 check: one male and one female eSpeak utterance."""

    sr = 16000

    def __init__(self) -> None:
        import numpy as np

        from slm_course import audio, tts

        class Utt:
            def __init__(self, i, gender):
                self.id, self.gender, self.speaker, self.text, self.duration = f"test-{i}", gender, gender[0], "", 2.0

        espeak = tts.Espeak()
        self._wavs, self._utts = {}, []
        for i, (gender, voice, pitch) in enumerate([("male", "en-us+m1", 35), ("female", "en-us+f1", 70)]):
            out = espeak.synth("the farmer feeds the brown cow and the goat", voice=voice, pitch=pitch)
            wav = audio.resample(torch.from_numpy(out.wav.astype(np.float32) / 32768), out.sr, self.sr)
            utt = Utt(i, gender)
            self._utts.append(utt)
            self._wavs[utt.id] = audio.add_noise_floor(wav)

    def split(self, name: str):
        return self._utts

    def wav(self, utt):
        return self._wavs[utt.id]


def test_check_autocorrelation_f0_on_speech(capsys):
    corpus = _TinyCorpus()
    checks.check_autocorrelation_f0(_f0, corpus)
    out = capsys.readouterr().out
    assert out.startswith("✓") and "male test speaker" in out and "female test speaker" in out
