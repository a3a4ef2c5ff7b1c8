"""The environment is the locked one: torch and torchaudio load together, every pin is installed."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from slm_course import environment

LOCK = Path(__file__).resolve().parents[1] / environment.LOCK_NAME


def test_torchaudio_compiled_ops_run_beside_torch():
    versions = environment.check_torch_pair()
    assert set(versions) == {"torch", "torchaudio"}


def test_installed_packages_match_the_lock():
    pins = environment.read_lock(LOCK)
    assert {"torch", "torchaudio", "numpy", "transformers", "nbval"} <= set(pins)
    bad = environment.lock_mismatches(LOCK)
    assert not bad, f"{len(bad)} package(s) differ from {LOCK.name}: {[str(m) for m in bad]}. {environment.FIX}"


def test_the_lock_pins_torch_and_torchaudio_to_a_pair_that_loads():
    pins = environment.read_lock(LOCK)
    assert (pins["torch"], pins["torchaudio"]) == ("2.11.0", "2.11.0")


def test_a_mismatched_pin_is_reported_with_what_to_run(tmp_path):
    torch_version = importlib.metadata.version("torch")
    fake = tmp_path / "lock.txt"
    fake.write_text(f"torch=={torch_version} \\\n    --hash=sha256:00\n"
                    "torchaudio==0.0.1 \\\n    --hash=sha256:00\n"
                    "not-a-course-package==1.0 ; python_version >= '3'\n"
                    "skipped-here==1.0 ; python_version < '3'\n")
    bad = {m.name: m for m in environment.lock_mismatches(fake)}
    assert set(bad) == {"torchaudio", "not-a-course-package"}
    assert bad["torchaudio"].locked == "0.0.1" and bad["not-a-course-package"].installed is None
    with pytest.raises(environment.EnvironmentMismatch, match=r"torchaudio: locked 0\.0\.1.*rm -rf \.venv && make test"):
        environment.check_lock(fake)


def test_a_lock_without_exact_pins_or_missing_says_how_to_regenerate(tmp_path):
    loose = tmp_path / "loose.txt"
    loose.write_text("torch>=2.11\n")
    with pytest.raises(ValueError, match="make lock"):
        environment.read_lock(loose)
    with pytest.raises(FileNotFoundError, match="make lock"):
        environment.read_lock(tmp_path / "absent.txt")


def test_doctor_command_prints_versions_and_fails_on_a_bad_lock(tmp_path, capsys):
    from slm_course.cli import main

    assert main(["doctor", "--lock", str(LOCK)]) == 0
    out = capsys.readouterr().out
    assert "compiled ops load" in out and '"cpu_features"' in out
    bad = tmp_path / "bad.txt"
    bad.write_text("torch==0.0.1\n")
    assert main(["doctor", "--lock", str(bad)]) == 1
    assert "torch: locked 0.0.1" in capsys.readouterr().err
