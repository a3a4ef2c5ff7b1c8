"""Build every model the notebooks load, ahead of time and two at a time: ``slm-course prepare``.

The notebooks train what they need on first use and cache it (:func:`slm_course.runtime.cached`).
``prepare`` builds the same artifacts, with the same recipes and seeds, in ``jobs`` worker
processes of **one thread each**, each step starting as soon as what it needs is built. It prints
each step's time. The longest step is the unit LM on speaker-normalised units (4x the speech at
width 256); TWIST on one voice's units, the ASR and the GSLM unit LM come next. One thread per
worker, for two reasons:

- speed: small models gain little from a second thread, so two one-thread trainings side by side
  do nearly twice the work of one two-thread training;
- reproducibility: the same model, bit for bit, whatever the machine's core count (a different
  thread count changes the order of floating-point sums), so the numbers the notebooks print
  match the README's: ``slm-course bench`` also trains on one thread.

It is optional: a notebook run without it builds what it misses itself. ``make test`` runs it
before the notebooks. Already-cached artifacts load in a second, so a second run is quick.

Usage::

    slm-course prepare            # everything, 2 workers
    slm-course prepare --jobs 1   # one at a time
    slm-course prepare --list     # the steps and what each needs
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["STEPS", "Step", "prepare", "run_step"]


@dataclass(frozen=True)
class Step:
    """One cached artifact (or a few small ones) and the steps whose artifacts it loads."""

    name: str
    needs: tuple[str, ...]
    about: str
    fsdd: bool = False  # needs the FSDD recordings (skipped, with a message, where they are absent)


STEPS: tuple[Step, ...] = (
    Step("corpus", (), "the synthetic spoken corpus (notebook 00)"),
    Step("extra-corpus", (), "a second corpus draw, more training speech for the normalised-unit LM (notebook 05)"),
    Step("mel-units", ("corpus",), "log-mel k-means units, K = 50 / 100 / 200 (notebook 02)"),
    Step("hubert", ("mel-units",), "the tiny HuBERT (notebook 02)"),
    Step("ssl-units", ("hubert",), "k-means units of each HuBERT layer, K = 50 / 100 / 200 (notebook 02)"),
    Step("asr", ("corpus",), "the CTC recogniser (notebook 01)"),
    Step("unit-data", ("ssl-units",), "the corpus as de-duplicated HuBERT units (notebook 04)"),
    Step("normalizer", ("ssl-units",), "the speech normaliser: any voice -> a reference voice's units (notebook 05)"),
    Step("norm-unit-lm", ("normalizer", "extra-corpus"), "the unit LM on speaker-normalised units (notebook 05)"),
    Step("text-lm", (), "the character text LM (notebook 01; TWIST copies it in notebook 05)"),
    Step("twist-reference", ("ssl-units", "text-lm"), "TWIST on one voice's units, 3 seeds (notebook 05)"),
    Step("salmonn", ("asr", "text-lm", "extra-corpus"),
         "the speech-aware text LM (a frozen text LM, an adapter, LoRA), its activation tuning (on utterances of "
         "the second corpus draw too), and its Q-Former "
         "and task-tag variants, trained to step 1,000 of its schedule (notebook 09)"),
    Step("unit-lm", ("unit-data",), "the GSLM unit LM (notebook 04)"),
    Step("codec", ("corpus",), "the neural codec (notebook 03)"),
    Step("audiolm", ("normalizer", "codec"), "AudioLM's tokens and acoustic stage (notebook 06)"),
    Step("spiritlm", ("normalizer", "extra-corpus", "text-lm"), "the speech+text LM, interleaved (notebook 07)"),
    Step("spiritlm-no-interleave", ("normalizer", "extra-corpus", "text-lm"),
         "the speech+text LM without interleaving, the ablation (notebook 07)"),
    Step("spiritlm-speech-only", ("normalizer", "extra-corpus", "text-lm"),
         "the speech+text LM's recipe on speech alone (notebook 07)"),
    Step("spiritlm-expressive", ("normalizer", "extra-corpus", "text-lm"),
         "the speech+text LM on expressive tokens: units, pitch and style (notebook 07)"),
    Step("moshi-data", ("normalizer",), "two-channel dialogues and their token streams at 12.5 Hz (notebook 08)"),
    Step("moshi", ("moshi-data",), "the Moshi-style model with and without its inner monologue (notebook 08)"),
    Step("moshi-ablations", ("moshi-data",), "its acoustic-delay and depth-transformer ablations (notebook 08)"),
    Step("moshi-delay-swap", ("moshi-data",), "the same model as streaming ASR and streaming TTS (notebook 08)"),
    Step("vocoder", ("ssl-units",), "the unit-to-speech decoder (notebook 02)"),
    Step("fsdd-asr", (), "the recogniser trained on FSDD digits (notebook 01)", fsdd=True),
    Step("fsdd-unit-lm", ("ssl-units",), "FSDD digits as units and their unit LM (notebook 04)", fsdd=True),
)  # in order of priority: long trainings with long chains behind them first, short ones last to fill the gaps.
# The text LM (no needs) starts at once beside the corpus. With this order 2 workers come close to the best
# they can do, half the sum of the step times: the longest chain (corpus -> mel-units -> hubert -> ssl-units ->
# normalizer -> norm-unit-lm) is shorter than that half-sum, so the sum of the work sets the time.


def _build(name: str) -> None:
    from slm_course import asr_recipe, audiolm_recipe, codec_recipe, textlm, twist, ulm_recipe, units_recipe
    from slm_course.corpus import load_corpus
    from slm_course.fsdd import load_fsdd

    if name == "corpus":
        load_corpus(progress=False)
    elif name == "mel-units":
        for k in (50, 100, 200):
            units_recipe.load_mel_units(k=k)
    elif name == "hubert":
        units_recipe.load_hubert(progress=False)
    elif name == "ssl-units":
        from slm_course.hubert import HubertConfig

        for layer in range(HubertConfig().n_layers + 1):
            units_recipe.load_ssl_units(layer=layer, progress=False)
        for k in (50, 200):
            units_recipe.load_ssl_units(k=k, progress=False)
    elif name == "unit-data":
        ulm_recipe.unit_data(load_corpus(progress=False), ulm_recipe.load_tokenizer(ulm_recipe.UNITS))
    elif name == "unit-lm":
        ulm_recipe.load_unit_lm(ulm_recipe.UNITS, progress=False)
    elif name == "normalizer":
        ulm_recipe.load_tokenizer("norm")
    elif name == "extra-corpus":
        load_corpus(n_utterances=ulm_recipe.NORM_CONFIG.extra_speech, seed=ulm_recipe.EXTRA_SEED, pairs_per_set=1, progress=False)
    elif name == "norm-unit-lm":
        ulm_recipe.unit_data(load_corpus(progress=False), ulm_recipe.load_tokenizer("norm"))
        ulm_recipe.load_unit_lm("norm", progress=False)
    elif name == "asr":
        asr_recipe.load_asr(progress=False)
    elif name == "codec":
        codec_recipe.load_codec(progress=False)
    elif name == "text-lm":
        textlm.load_text_lm(progress=False)
    elif name == "twist-reference":
        twist.load_twist_comparison("reference", progress=False)
    elif name == "audiolm":
        audiolm_recipe.load_stages(progress=False)  # the acoustic stages; the semantic LM is norm-unit-lm
    elif name.startswith("spiritlm"):
        from slm_course import spiritlm_recipe
        from slm_course.spiritlm import SpiritConfig

        if name == "spiritlm-expressive":
            from slm_course import expressive_recipe
            from slm_course.corpus import load_corpus

            corpus = load_corpus(progress=False)
            spiritlm_recipe.load_spiritlm(expressive=True, corpus=corpus, progress=False)
            expressive_recipe.style_table(expressive_recipe.load_expressive_tokens(corpus=corpus), corpus)
            expressive_recipe.style_probe(corpus)
            return
        mix = {"spiritlm": "interleaved", "spiritlm-no-interleave": "no_interleave",
               "spiritlm-speech-only": "speech_only"}[name]
        spiritlm_recipe.load_spiritlm(SpiritConfig(mix=mix), progress=False)
    elif name.startswith("moshi"):
        from slm_course import moshi_recipe

        variants = {"moshi-data": (), "moshi": ("full", "no_monologue"), "moshi-ablations": ("delay0", "independent"),
                    "moshi-delay-swap": ("asr", "tts")}[name]
        data = moshi_recipe.load_moshi_data(progress=False)
        for variant in variants:
            moshi_recipe.load_moshi(variant, data=data, progress=False)
    elif name == "salmonn":
        from slm_course import salmonn_recipe

        data = salmonn_recipe.load_salmonn_data(progress=False)  # the speech encoded once, for every variant
        for variant in salmonn_recipe.VARIANTS:
            salmonn_recipe.load_salmonn(variant, data=data, progress=False)
        salmonn_recipe.load_activated("pool", data=data, progress=False)
    elif name == "vocoder":
        units_recipe.load_unit_vocoder(ulm_recipe.load_tokenizer(ulm_recipe.UNITS), progress=False)
    elif name == "fsdd-asr":
        asr_recipe.load_fsdd_asr(fsdd=load_fsdd(), progress=False)
    elif name == "fsdd-unit-lm":
        fsdd = load_fsdd()
        ulm_recipe.fsdd_unit_data(ulm_recipe.load_tokenizer(ulm_recipe.UNITS), fsdd)
        ulm_recipe.load_fsdd_unit_lm(ulm_recipe.UNITS, fsdd=fsdd, progress=False)
    else:
        raise ValueError(f"no step {name!r}; `slm-course prepare --list` shows them")


def run_step(name: str, threads: int = 1) -> float:
    """Build (or load) step ``name``'s artifacts with ``threads`` torch threads; returns the seconds it took."""
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    _build(name)
    return time.perf_counter() - t0


def _order(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with every step after those it needs (a check that the table is a DAG)."""
    names = {s.name for s in steps}
    done: set[str] = set()
    out: list[Step] = []
    pending = list(steps)
    while pending:
        ready = [s for s in pending if all(n in done or n not in names for n in s.needs)]
        if not ready:
            raise ValueError(f"steps that need each other: {[s.name for s in pending]}")
        out.append(ready[0])
        done.add(ready[0].name)
        pending.remove(ready[0])
    return out


def prepare(jobs: int = 2, steps: Sequence[Step] = STEPS, log: Callable[[str], None] = print,
            have_fsdd: bool | None = None, heartbeat: float = 60.0) -> dict[str, float]:
    """Build ``steps`` in ``jobs`` one-thread processes (a fresh one per step), each when its needs are done.

    Logs each step's start and end, and every ``heartbeat`` seconds what is still running. Returns
    the seconds each step took. A step that fails stops the run with its error, once the steps
    already running have finished.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    _order(steps)
    if have_fsdd is None:
        from slm_course.fsdd import FsddMissing, load_fsdd

        try:
            load_fsdd()
            have_fsdd = True
        except FsddMissing:
            have_fsdd = False
    todo = [s for s in steps if have_fsdd or not s.fsdd]
    if len(todo) < len(steps):
        log(f"prepare: FSDD not found, skipping {', '.join(s.name for s in steps if s not in todo)}")
    names = {s.name for s in todo}
    done: dict[str, float] = {}
    running: dict[cf.Future, tuple[Step, float]] = {}
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        error: BaseException | None = None
        while todo or running:
            while error is None and len(running) < jobs:
                ready = [s for s in todo if all(n in done or n not in names for n in s.needs)]
                if not ready:
                    break
                step = ready[0]
                todo.remove(step)
                running[pool.submit(run_step, step.name)] = (step, time.perf_counter())
                log(f"prepare: {step.name} started ({step.about})")
            if not running:
                break
            finished, _ = cf.wait(running, timeout=heartbeat, return_when=cf.FIRST_COMPLETED)
            if not finished:  # a heartbeat: what is still training, and for how long
                now = time.perf_counter()
                log("prepare: running " + ", ".join(f"{st.name} ({now - t:.0f} s)" for st, t in running.values())
                    + f"; {len(done)}/{len(names)} done")
            for future in finished:
                step, _ = running.pop(future)
                try:
                    done[step.name] = future.result()
                except BaseException as err:  # noqa: BLE001 - reported, then raised below
                    log(f"prepare: {step.name} FAILED: {err!r}")
                    error = error or err
                    continue
                log(f"prepare: {step.name} done in {done[step.name]:.0f} s "
                    f"({len(done)}/{len(names)}, {time.perf_counter() - t0:.0f} s so far)")
    if error is not None:
        raise error
    return done
