"""Exercise notebooks are generated from solution notebooks (every chapter's exercises).

The solution notebook ``solutions/X.ipynb`` is the source. In its code cells, the learner's part
sits between two marker lines, the nbgrader way::

    def hz_to_mel(f):
        ### BEGIN SOLUTION
        return 2595 * torch.log10(1 + f / 700)
        ### END SOLUTION

:func:`make_exercise` replaces each such region, markers included, by ``# YOUR CODE HERE`` and a
``raise NotImplementedError(...)`` at the indentation of the ``### BEGIN SOLUTION`` line, and drops
all outputs. Markdown is left alone, except that a Colab link to ``solutions/X.ipynb`` is pointed at
``exercises/X.ipynb``. :func:`sync` writes ``exercises/X.ipynb`` for every solution notebook;
CI runs ``python -m slm_course.exercises --check`` to catch an exercise that is out of date.

The output is deterministic: the same solution gives the same JSON text (sorted keys, no execution
counts, the solution's cell ids), so the generated files diff cleanly in git.

>>> python -m slm_course.exercises           # doctest: +SKIP
>>> python -m slm_course.exercises --check   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = "# YOUR CODE HERE"
RAISE = 'raise NotImplementedError("write your code here, then run the check cell below")'
GENERATED_KEY = "slm_course_generated_from"  # notebook metadata: the solution this exercise was made from

__all__ = ["BEGIN", "END", "PLACEHOLDER", "main", "make_exercise", "strip_solutions", "sync"]


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region of ``source`` by a stub.

    The stub keeps the indentation of the BEGIN line. Raises ``ValueError`` (naming ``where``) for a
    BEGIN without END, an END without BEGIN, or a nested BEGIN.

    >>> print(strip_solutions("def f():\\n    ### BEGIN SOLUTION\\n    return 1\\n    ### END SOLUTION"))
    def f():
        # YOUR CODE HERE
        raise NotImplementedError("write your code here, then run the check cell below")
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: '{BEGIN}' inside another solution region; close it first")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + PLACEHOLDER, indent + RAISE]
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out)


def make_exercise(nb: nbformat.NotebookNode, solution_path: str | None = None) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook (a new notebook; ``nb`` is not changed).

    Code cells: solution regions replaced (:func:`strip_solutions`), outputs and execution counts
    dropped. Markdown and raw cells: unchanged, except Colab links from ``/solutions/`` to ``/exercises/``.
    ``solution_path`` (e.g. ``"solutions/00_audio_exercises.ipynb"``) is recorded in the metadata.
    """
    ex = copy.deepcopy(nb)
    for i, cell in enumerate(ex.cells):
        cell_id = cell.get("id", i)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"code cell {i} (id {cell_id})")
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown" and "colab.research.google.com" in cell.source:
            cell.source = cell.source.replace("/blob/main/solutions/", "/blob/main/exercises/")
        cell.metadata.pop("execution", None)  # timing metadata left by some front-ends
    if solution_path is not None:
        ex.metadata[GENERATED_KEY] = solution_path
    return ex


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "solutions").is_dir():
        raise FileNotFoundError(
            f"no solutions/ folder next to the package ({root}); run from a clone of the course "
            "repository or pass root=Path('path/to/slm-course')"
        )
    return root


def _render(solution: Path, root: Path) -> str:
    nb = nbformat.read(solution, as_version=4)
    ex = make_exercise(nb, solution_path=solution.relative_to(root).as_posix())
    nbformat.validate(ex)
    return nbformat.writes(ex) + "\n"  # nbformat.writes sorts keys and indents by 1


def sync(root: Path | None = None, check: bool = False) -> list[Path]:
    """Write ``exercises/X.ipynb`` for every ``solutions/X.ipynb`` under ``root`` (the repo by default).

    Returns the exercise paths that were (or, with ``check=True``, would be) written or removed:
    those missing, different from what the solution gives, or generated from a solution that no
    longer exists. With ``check=True`` nothing is written, so ``sync(check=True) == []`` means in sync.
    """
    root = Path(root) if root is not None else _repo_root()
    solutions, exercises = root / "solutions", root / "exercises"
    changed: list[Path] = []
    expected: set[str] = set()
    for solution in sorted(solutions.glob("*.ipynb")):
        target = exercises / solution.name
        expected.add(target.name)
        text = _render(solution, root)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    for stale in sorted(exercises.glob("*.ipynb")) if exercises.is_dir() else []:
        if stale.name in expected:
            continue
        try:
            generated = GENERATED_KEY in nbformat.read(stale, as_version=4).metadata
        except Exception:  # an unreadable notebook is not ours to delete
            generated = False
        if generated:  # made by this script from a solution that is gone: remove it
            changed.append(stale)
            if not check:
                stale.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m slm_course.exercises [--check] [--root DIR]``; exit status 1 if ``--check`` finds changes."""
    parser = argparse.ArgumentParser(prog="python -m slm_course.exercises", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report exercise notebooks that are out of sync")
    parser.add_argument(
        "--root", type=Path, default=None, help="repository root (default: the one holding the package)"
    )
    args = parser.parse_args(argv)
    changed = sync(args.root, check=args.check)
    if args.check:
        for path in changed:
            print(f"out of sync: {path} (run `python -m slm_course.exercises` to regenerate it)")
        if not changed:
            print("exercise notebooks are in sync with their solutions")
        return 1 if changed else 0
    for path in changed:
        print(f"{'wrote' if path.exists() else 'removed'} {path}")
    if not changed:
        print("exercise notebooks were already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
