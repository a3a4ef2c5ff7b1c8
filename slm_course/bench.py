"""Benchmarks: each trains or builds what a notebook builds, with the same recipe, and reports numbers.

`slm-course bench --list` names them; `slm-course bench NAME --json` runs one and prints, as its
last line, one JSON object with its metrics and `seconds` (wall time). Performance is measured here,
never by timed asserts in the tests. The README's results table is filled from these numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCHMARKS: dict[str, tuple[Callable[[], dict], str]] = {}

# Benchmarks that live beside the model they measure, imported only when run: name -> (module:function, about).
LAZY: dict[str, tuple[str, str]] = {
    "asr": ("slm_course.asr:benchmark", "train the course's CTC ASR (notebook 01 recipe); CER/WER on held-out speakers"),
    "fsdd-asr": ("slm_course.asr:benchmark_fsdd", "the same ASR recipe on real speech (FSDD digits)"),
    "textlm": ("slm_course.lm:benchmark", "train the course's text LM; its throughput beside transformers' Llama"),
    "cascade": ("slm_course.cascade:benchmark", "ASR -> text LM -> TTS: what its text keeps and loses, and its latency"),
    "units": ("slm_course.units:benchmark", "mel and self-supervised k-means units (notebook 02): PNMI, ABX, resynthesis CER"),
    "codec": ("slm_course.codec:benchmark", "the course's neural codec (notebook 03): bitrate vs quality per RVQ level"),
    "ulm": ("slm_course.ulm:benchmark", "GSLM unit LM (notebook 04): zero-shot sWUGGY/sBLIMP/StoryCloze-style pairs"),
    "twist": ("slm_course.ulm:benchmark_twist", "TWIST (notebook 04): text-LM warm start vs cold start, 3 seeds"),
    "audiolm": ("slm_course.audiolm:benchmark",
                "AudioLM (notebook 05): speaker of continuations with vs without an acoustic prompt; CER"),
    "audiolm-ssl": ("slm_course.audiolm:benchmark_ssl",
                    "the same AudioLM with HuBERT units as semantic tokens: they carry the voice (notebook 05, section 5)"),
}


def _resolve(name: str) -> Callable[[], dict]:
    if name in BENCHMARKS:
        return BENCHMARKS[name][0]
    import importlib

    module, fn = LAZY[name][0].split(":")
    return getattr(importlib.import_module(module), fn)


def available() -> dict[str, str]:
    """Benchmark name -> what it measures."""
    return {**{k: v[1] for k, v in LAZY.items()}, **{k: v[1] for k, v in BENCHMARKS.items()}}


def benchmark(name: str, about: str) -> Callable[[Callable[[], dict]], Callable[[], dict]]:
    """Register a benchmark function (no arguments, returns a dict of metrics) under `name`."""

    def register(fn: Callable[[], dict]) -> Callable[[], dict]:
        BENCHMARKS[name] = (fn, about)
        return fn

    return register


def run(name: str) -> dict:
    """Run one benchmark on one torch thread; its metrics plus `benchmark` and `seconds`."""
    if name not in BENCHMARKS and name not in LAZY:
        raise KeyError(f"no benchmark {name!r}; `slm-course bench --list` shows: {', '.join(sorted(available()))}.")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what it trains is then the same model as `slm-course prepare` builds, on any machine
    t0 = time.perf_counter()
    try:
        metrics = _resolve(name)()
    finally:
        torch.set_num_threads(threads)
    return {"benchmark": name, **metrics, "seconds": round(time.perf_counter() - t0, 1)}


def _build_in_fresh_process(out: Path, n_utterances: int, seed: int) -> dict:
    cmd = [sys.executable, "-m", "slm_course.cli", "corpus", "build", "--out", str(out),
           "--utterances", str(n_utterances), "--seed", str(seed), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"corpus build failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@benchmark("corpus", "build the default corpus twice in fresh processes (determinism), probe its labels")
def bench_corpus(n_utterances: int | None = None, seed: int = 0) -> dict:
    from slm_course.corpus import DEFAULT_UTTERANCES, EVAL_SETS, Corpus
    from slm_course.probes import features_of, probe_accuracy, speaker_normalise

    n_utterances = n_utterances or DEFAULT_UTTERANCES
    with tempfile.TemporaryDirectory() as tmp:
        first = _build_in_fresh_process(Path(tmp) / "a", n_utterances, seed)
        second = _build_in_fresh_process(Path(tmp) / "b", n_utterances, seed)
        corpus = Corpus(Path(tmp) / "a")
        train, test = corpus.split("train"), corpus.split("test")
        x_train = speaker_normalise(features_of([corpus.wav(u) for u in train]), [u.speaker for u in train])
        x_test = speaker_normalise(features_of([corpus.wav(u) for u in test]), [u.speaker for u in test])
        probes = {
            f"{label}_acc_held_out": round(probe_accuracy(x_train, [getattr(u, label) for u in train],
                                                          x_test, [getattr(u, label) for u in test]), 3)
            for label in ("gender", "style", "question")
        }
        pairs = {f"pairs_{s}": len(corpus.pairs(s)) for s in EVAL_SETS}
    return {
        "utterances": first["utterances"], "speakers": first["speakers"],
        "held_out_speakers": first["held_out_speakers"], "styles": first["styles"],
        "hours": first["hours"], "build_seconds": first["seconds"], "sha256": first["sha256"],
        "deterministic": first["sha256"] == second["sha256"], **pairs, **probes,
    }
