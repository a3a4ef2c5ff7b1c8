"""The front door: every file the README, CONTRIBUTING and the results appendix link to exists, and the
course map lists every chapter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "CONTRIBUTING.md", "results/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS)
def test_local_links_resolve(doc):
    text = (ROOT / doc).read_text()
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target) or target.startswith("#") or target.startswith("mailto:"):
            continue
        path = (ROOT / doc).parent / target.split("#", 1)[0]
        if not path.exists():
            missing.append(target)
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_course_map_lists_every_chapter():
    readme = (ROOT / "README.md").read_text()
    chapters = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert chapters, "no notebooks found"
    absent = [name for name in chapters if f"(notebooks/{name})" not in readme]
    assert not absent, f"the README's course map does not link to {absent}"
