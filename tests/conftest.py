"""Shared fixtures: a small corpus built once per test session, and the FSDD subset if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The tests train tiny models: one thread is as fast as two for them, and far faster when other
# work shares the cores (two contended threads were measured up to 13x slower than one).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_FSDD = REPO.parent / "shared" / "data" / "fsdd"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """60 utterances + 8 pairs per evaluation set, built once (a few seconds)."""
    from slm_course.corpus import Corpus, build

    root = tmp_path_factory.mktemp("corpus") / "small"
    build(root, n_utterances=60, seed=3, pairs_per_set=8, progress=False)
    return Corpus(root)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """The FSDD subset: $SLM_COURSE_FSDD, or ../shared/data/fsdd beside the repo; skipped if absent."""
    root = os.environ.get("SLM_COURSE_FSDD") or (SHARED_FSDD if SHARED_FSDD.exists() else None)
    if not root or not Path(root).exists():
        pytest.skip("FSDD is not on this machine: set SLM_COURSE_FSDD to an FSDD folder to run this test.")
    return Path(root)
