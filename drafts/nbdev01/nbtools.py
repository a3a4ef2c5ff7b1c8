"""Throw-away helpers to write notebooks with nbformat (not committed)."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}

COLAB = '''import sys

if "google.colab" in sys.modules:  # on Colab: install the course package first (about a minute)
    get_ipython().run_line_magic("pip", 'install -q "slm-course @ git+https://github.com/slm-course/slm-course"')'''


def badge(path):
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/slm-course/slm-course/blob/main/{path})")


def build(cells, prefix):
    nb = new_notebook(metadata=dict(KERNEL))
    for i, (kind, src) in enumerate(cells):
        src = src.strip("\n")
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell["id"] = f"{prefix}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def write(nb, path):
    with open(path, "w", encoding="utf-8") as f:
        f.write(nbformat.writes(nb) + "\n")
