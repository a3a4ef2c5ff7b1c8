"""`slm-course prepare`: the step table is a DAG over known steps, and a failing step stops the run."""

from __future__ import annotations

import pytest

from slm_course import prepare
from slm_course.prepare import STEPS, Step


def test_every_need_is_a_step_and_the_table_is_ordered():
    names = [s.name for s in STEPS]
    assert len(names) == len(set(names)), "step names must be unique"
    for step in STEPS:
        assert set(step.needs) <= set(names), f"{step.name} needs an unknown step"
    order = [s.name for s in prepare._order(STEPS)]
    for step in STEPS:
        for need in step.needs:
            assert order.index(need) < order.index(step.name)


def test_a_cycle_is_refused():
    with pytest.raises(ValueError, match="need each other"):
        prepare._order([Step("a", ("b",), ""), Step("b", ("a",), "")])


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_jobs_must_be_a_positive_int(jobs):
    with pytest.raises(ValueError, match="jobs"):
        prepare.prepare(jobs=jobs, steps=())


def test_unknown_step_fails_in_its_worker_and_is_reported():
    lines: list[str] = []
    with pytest.raises(ValueError, match="no step 'nonsense'"):
        prepare.prepare(jobs=1, steps=(Step("nonsense", (), "a step no builder knows"),), log=lines.append,
                        have_fsdd=False, heartbeat=0.05)  # a fresh process imports torch first: > 0.05 s
    assert any("nonsense FAILED" in line for line in lines)
    assert any(line.startswith("prepare: running nonsense (") for line in lines), "no heartbeat while it ran"


def test_fsdd_steps_are_skipped_without_fsdd():
    lines: list[str] = []
    done = prepare.prepare(jobs=1, steps=(Step("only-fsdd", (), "", fsdd=True),), log=lines.append, have_fsdd=False)
    assert done == {}
    assert "skipping only-fsdd" in lines[0]
