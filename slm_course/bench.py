"""Benchmarks: each measures what a notebook builds, with the same recipe, and reports numbers.

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

# name -> ("module:function", what it measures). Every entry measures the model the notebooks use: it loads
# it from the cache (and trains it with the notebook's recipe and seed if it is missing), so `train_seconds`
# is always the recorded training time of that model. An entry that trains more than that says so.
BENCHMARKS: dict[str, tuple[str | Callable[[], dict], str]] = {
    "corpus": ("slm_course.bench:bench_corpus",
               "builds the default corpus twice in fresh processes (determinism) and probes its labels"),
    "asr": ("slm_course.asr_recipe:bench_asr", "the cached CTC ASR (notebook 01): CER/WER on held-out speakers"),
    "fsdd-asr": ("slm_course.asr_recipe:bench_fsdd_asr",
                 "the cached FSDD recogniser (notebook 01), then trains one per left-out speaker: digit accuracy"),
    "textlm": ("slm_course.textlm:bench_textlm",
               "the cached text LM (notebook 01); trains an untrained copy and transformers' Llama for throughput"),
    "cascade": ("slm_course.cascade:bench_cascade",
                "ASR -> text LM -> TTS (notebook 01): what its text keeps and loses, and its latency"),
    "units": ("slm_course.units_recipe:bench_units", "the cached mel and HuBERT units (notebook 02): PNMI, ABX, resynthesis"),
    "codec": ("slm_course.codec_recipe:bench_codec", "the cached neural codec (notebook 03): bitrate vs quality per level"),
    "ulm": ("slm_course.ulm_recipe:bench_ulm", "the cached unit LMs (notebooks 04-05): zero-shot sWUGGY/sBLIMP/tStoryCloze-style"),
    "twist": ("slm_course.twist:bench_twist", "the cached TWIST comparison (notebook 05): warm vs cold start, 3 seeds"),
    "audiolm": ("slm_course.audiolm_recipe:bench_audiolm",
                "the cached AudioLM (notebook 06): speaker of continuations with vs without an acoustic prompt"),
    "audiolm-ssl": ("slm_course.audiolm_recipe:bench_audiolm_ssl",
                    "the same with HuBERT units as semantic tokens: they carry the voice (notebook 06)"),
    "spiritlm": ("slm_course.spiritlm_recipe:bench_spiritlm",
                 "the cached speech+text LMs (notebook 07): interleaved, no interleaving, speech only, in 4 settings"),
    "moshi": ("slm_course.moshi_eval:bench_moshi",
              "the cached Moshi-style models (notebook 08): inner monologue, delays, depth transformer, full duplex"),
    "salmonn": ("slm_course.salmonn_recipe:bench_salmonn",
                "the cached speech-aware text LMs (notebook 09): tasks, phrasings, over-fitting, adapters, the cascade"),
}


def _resolve(name: str) -> Callable[[], dict]:
    import importlib

    target = BENCHMARKS[name][0]
    if callable(target):
        return target
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)


def available() -> dict[str, str]:
    """Benchmark name -> what it measures."""
    return {name: about for name, (_, about) in BENCHMARKS.items()}


def seeded() -> list[str]:
    """The benchmarks that take ``seed``: their models retrained from another seed, to show the spread."""
    import inspect

    return sorted(name for name in BENCHMARKS if "seed" in inspect.signature(_resolve(name)).parameters)


def run(name: str, seed: int = 0) -> dict:
    """Run one benchmark on one torch thread: its metrics, then `benchmark`, `seed`, `seconds` and `environment`.

    ``seed`` (default 0, the notebooks' models) retrains the benchmark's own models from another seed
    (cached like the others), for the spread of its headline over seeds; only :func:`seeded`
    benchmarks take one. What the models are measured with (the recogniser that scores speech, the
    corpus) keeps seed 0.

    `environment` records what the numbers depend on beyond the recipe: Python, torch and numpy
    versions, the CPU's vector extensions (kernels differ in their order of sums), and whether the
    installed packages match the lock.
    """
    if name not in BENCHMARKS:
        raise KeyError(f"no benchmark {name!r}; `slm-course bench --list` shows: {', '.join(sorted(available()))}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if seed and name not in seeded():
        raise ValueError(f"benchmark {name!r} has one seed; --seed applies to: {', '.join(seeded())}.")
    import torch

    from slm_course.environment import describe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what it trains is then the same model as `slm-course prepare` builds, on any machine
    t0 = time.perf_counter()
    try:
        metrics = _resolve(name)(seed=seed) if seed else _resolve(name)()
    finally:
        torch.set_num_threads(threads)
    return {"benchmark": name, "seed": seed, **metrics, "seconds": round(time.perf_counter() - t0, 1), "environment": describe()}


def _build_in_fresh_process(out: Path, n_utterances: int, seed: int) -> dict:
    cmd = [sys.executable, "-m", "slm_course.cli", "corpus", "build", "--out", str(out),
           "--utterances", str(n_utterances), "--seed", str(seed), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"corpus build failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
