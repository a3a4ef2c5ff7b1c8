"""The `slm-course` command line and the benchmark registry."""

from __future__ import annotations

import json

import pytest

from slm_course import bench, cli


def test_bench_list_names_the_corpus_benchmark(capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "corpus" in capsys.readouterr().out


def test_unknown_benchmark_is_an_error(capsys):
    assert cli.main(["bench", "nope"]) == 2
    assert "bench --list" in capsys.readouterr().err


def test_bench_prints_json_last(monkeypatch, capsys):
    monkeypatch.setitem(bench.BENCHMARKS, "toy", (lambda: {"accuracy": 0.5}, "a toy"))
    assert cli.main(["bench", "toy", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["accuracy"] == 0.5 and result["benchmark"] == "toy" and "seconds" in result
    env = result["environment"]  # what the numbers depend on beyond the recipe
    assert env["torch"].startswith("2.") and env["torch_cpu_capability"] and isinstance(env["cpu_features"], list)
    assert env["lock_mismatches"] == []
    assert len(lines) == 1


def test_every_benchmark_names_a_bench_function_that_exists():
    import importlib

    for name, (target, about) in bench.BENCHMARKS.items():
        module, fn = target.split(":")
        assert fn == "bench_" + name.replace("-", "_"), f"{name}: one naming scheme, bench_<name>"
        assert callable(getattr(importlib.import_module(module), fn)) and about


def test_corpus_build_prints_summary_json(tmp_path, capsys):
    assert cli.main(["corpus", "build", "--out", str(tmp_path / "c"), "--utterances", "12",
                     "--pairs-per-set", "1", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["utterances"] == 12 + 8 and len(summary["sha256"]) == 64
    assert (tmp_path / "c" / "manifest.json").exists()


def test_corpus_build_needs_out():
    with pytest.raises(SystemExit):
        cli.main(["corpus", "build"])


def test_bench_seed_reaches_the_benchmark_and_its_json(monkeypatch, capsys):
    monkeypatch.setitem(bench.BENCHMARKS, "toy", (lambda seed=0: {"drawn": seed * 10}, "a toy"))
    assert cli.main(["bench", "toy", "--json", "--seed", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["seed"] == 2 and result["drawn"] == 20
    assert bench.run("toy")["seed"] == 0


def test_a_seed_for_a_benchmark_with_one_model_is_refused_with_the_ones_that_take_it(monkeypatch, capsys):
    monkeypatch.setitem(bench.BENCHMARKS, "toy", (lambda: {"accuracy": 0.5}, "a toy"))
    assert cli.main(["bench", "toy", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "one seed" in err and "asr" in err and "toy" not in bench.seeded()
    with pytest.raises(ValueError, match="int >= 0"):
        bench.run("asr", seed=-1)


def test_the_headline_models_can_be_retrained_from_another_seed():
    assert {"asr", "fsdd-asr", "units", "codec", "spiritlm"} <= set(bench.seeded())
