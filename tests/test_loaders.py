"""Every loader of a trained model follows one signature: load_x(inputs..., config=None, *, corpus=None,
rebuild=False, progress=True), so that a learner who knows one knows them all (CONTRIBUTING.md)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "slm_course"
# every recipe module (<model>_recipe.py), and the modules that are their own recipe
MODULES = sorted(p.stem for p in PACKAGE.glob("*_recipe.py")) + ["normalizer", "textlm", "twist"]
LOADERS = [(m, name, fn) for m in MODULES for name, fn in vars(importlib.import_module(f"slm_course.{m}")).items()
           if name.startswith("load_") and inspect.isfunction(fn) and fn.__module__ == f"slm_course.{m}"
           and name != "load_tokenizer"]  # load_tokenizer picks one of the loaders below by name


def test_there_are_loaders_to_check():
    assert len(LOADERS) >= 12


@pytest.mark.parametrize(("module", "name", "fn"), LOADERS, ids=[f"{m}.{n}" for m, n, _ in LOADERS])
def test_loader_signature(module, name, fn):
    params = inspect.signature(fn).parameters
    for keyword in ("rebuild", "progress"):
        assert keyword in params and params[keyword].kind is inspect.Parameter.KEYWORD_ONLY, \
            f"{module}.{name}: `{keyword}` must be keyword-only (after `*`)"
    assert params["rebuild"].default is False and params["progress"].default is True
    if "corpus" in params:
        assert params["corpus"].kind is inspect.Parameter.KEYWORD_ONLY and params["corpus"].default is None
    if "config" in params:
        assert params["config"].default is None, f"{module}.{name}: config=None means the course's recipe"
