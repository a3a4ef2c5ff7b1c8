"""Every committed notebook is valid, small, free of embedded audio, opens in Colab, and starts the course way."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
MAX_OUTPUT_BYTES = 100_000
COLAB = "https://colab.research.google.com/github/slm-course/slm-course/blob/main/"


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert CHAPTERS, "no chapter notebooks under notebooks/"
    assert any(p.parent.name == "solutions" for p in NOTEBOOKS) and any(p.parent.name == "exercises" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_valid_nbformat_with_python3_kernel(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "set the kernelspec to python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_outputs_are_small_and_hold_no_audio(path: Path):
    for i, cell in enumerate(_read(path).cells):
        for output in cell.get("outputs", []):
            size = len(json.dumps(output))
            assert size <= MAX_OUTPUT_BYTES, f"cell {i} has a {size}-byte output: clear outputs before committing"
            data = output.get("data", {})
            assert not [m for m in data if m.startswith("audio/")], f"cell {i} embeds audio: clear outputs"
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            assert "<audio" not in html.lower(), f"cell {i} embeds an audio player: clear outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_colab_badge_opens_this_notebook(path: Path):
    first_markdown = next(c.source for c in _read(path).cells if c.cell_type == "markdown")
    assert "colab-badge.svg" in first_markdown, "the first markdown cell needs an 'Open In Colab' badge"
    assert COLAB + _id(path) in first_markdown, f"the Colab badge should open {COLAB}{_id(path)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_id)
def test_chapter_has_learning_goals_summary_and_reading(path: Path):
    text = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown").lower()
    for heading in ("learning goals", "summary", "further reading"):
        assert heading in text, f"a chapter notebook needs a '{heading}' section"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_first_code_cells_install_on_colab_then_seed(path: Path):
    code = _code(_read(path))
    assert code, "the notebook has no code"
    setup = code[0]
    if "pip" in code[0]:  # the install cell: only on Colab, then the setup cell
        assert re.search(r'if\s+"google\.colab"\s+in\s+sys\.modules', code[0]), "install the package only on Colab"
        assert "slm-course @ git+https://github.com/slm-course/slm-course" in code[0]
        assert len(code) > 1
        setup = code[1]
    assert "seed_everything(" in setup, "the first code cell (after the Colab install) must seed everything"
    assert "pick_device(" in setup, "the first code cell (after the Colab install) must pick the device"
