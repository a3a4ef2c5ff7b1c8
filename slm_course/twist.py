"""TWIST (Hassid et al., 2023) at toy scale (notebook 05): a unit LM warm-started from the text LM vs a cold start.

The mechanism is :func:`slm_course.ulm.warm_start` (copy the text LM's Transformer body into a unit
LM, optionally "shrink and perturb"). This file is the experiment: the same unit LM recipe, short
budget, cold and warm, three seeds (:func:`twist_comparison`), on one voice's units
(:func:`reference_unit_data`) or a tokenizer's; cached by :func:`load_twist_comparison` and reported
by ``slm-course bench twist``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from slm_course.corpus import corpus_version
from slm_course.lm import LM
from slm_course.runtime import digest, recipe_config
from slm_course.speech_tokens import tokenizer_key
from slm_course.textlm import TextLMConfig
from slm_course.ulm import UlmConfig
from slm_course.ulm_recipe import RECIPE, UNITS, load_tokenizer, train_unit_lm, unit_data

__all__ = [
    "TWIST_CONFIG",
    "TWIST_SEEDS",
    "TWIST_SHRINK",
    "TWIST_UNITS",
    "bench_twist",
    "load_twist_comparison",
    "reference_unit_data",
    "twist_comparison",
]

TWIST_UNITS = "reference"  # TWIST's headline comparison: one voice's units (reference_unit_data); "ssl" beside it
# the warm-vs-cold comparison: a short budget, where a warm start matters most; no dropout, as the text LM it
# copies: 300 steps do not over-fit, and dropout on the attention probabilities needs the unfused attention
TWIST_CONFIG = UlmConfig(steps=300, dropout=0.0)
TWIST_SEEDS = (0, 1, 2)
TWIST_SHRINK = 0.5  # "shrink and perturb" the copied matrices (see warm_start)
# Shrinking keeps the copied structure at a scale the new, random unit embeddings can still move, so the shrunk
# copy learns faster than TWIST's plain one (results/05_normaliser_twist.md); notebook 05 compares it with a cold
# start. TWIST copies notebook 01's text LM. It reads 128-character windows, the unit LM's window, so every position
# embedding the unit LM uses was trained.


def twist_comparison(
    data: dict[str, list[torch.Tensor]], n_units: int, text_model: LM, config: UlmConfig = TWIST_CONFIG,
    seeds: Sequence[int] = TWIST_SEEDS, progress: bool = True, shrink: float = TWIST_SHRINK,
) -> dict:
    """Cold start vs TWIST warm start (the text LM's body, see :func:`warm_start` for ``shrink``) at equal steps.

    Returns the validation losses per seed (``cold``, ``warm``), their means, and the training-loss
    curves of the first seed (``cold_curve``, ``warm_curve``).
    """
    from dataclasses import replace

    out: dict = {"cold": [], "warm": [], "seeds": list(seeds), "steps": config.steps, "shrink": shrink}
    for i, seed in enumerate(seeds):
        for kind, init in (("cold", None), ("warm", text_model)):
            ulm, history = train_unit_lm(data["train"], n_units, replace(config, seed=seed), valid_seqs=data["valid"],
                                         init=init, progress=progress, shrink=shrink)
            out[kind].append(ulm.metrics["val_loss"])
            if i == 0:
                out[f"{kind}_curve"] = list(history.loss)
    out["cold_loss"], out["warm_loss"] = float(np.mean(out["cold"])), float(np.mean(out["warm"]))
    return out


def reference_unit_data(corpus, progress: bool = False) -> dict[str, list[torch.Tensor]]:
    """Units of one voice: the reference voice (notebook 05) saying the corpus' ``train`` and ``valid`` texts.

    eSpeak's voice m00 says every utterance's words at its own, neutral speed; the tiny HuBERT's K=100
    units of that, repeats merged (:func:`slm_course.normalizer.reference_units` with ``match_speed=False``).
    Units of one voice at one speed carry the words and little else: no speaker, no style, no speed.
    Cached (eSpeak and HuBERT on every ``train`` and ``valid`` utterance: slow only the first time).
    """
    from slm_course.normalizer import NormalizerConfig, reference_units
    from slm_course.runtime import cached

    ssl = load_tokenizer("ssl")
    voice = NormalizerConfig().reference  # the normaliser's reference voice, m00

    def build() -> dict:
        return {split: [u.long() for u in reference_units(corpus, ssl, corpus.split(split), voice, match_speed=False,
                                                           progress=progress)]
                for split in ("train", "valid")}

    version = corpus_version(corpus)
    return cached(f"reference-units-r{RECIPE}-c{version}-{voice}-{tokenizer_key(ssl)}", build)


def load_twist_comparison(kind: str = TWIST_UNITS, config: UlmConfig | None = None, *,
                          seeds: Sequence[int] = TWIST_SEEDS, shrink: float = TWIST_SHRINK,
                          text_config: TextLMConfig | None = None, corpus=None, rebuild: bool = False,
                          progress: bool = True) -> dict:
    """:func:`twist_comparison` on the corpus's ``kind`` units, from the cache or run now.

    ``kind``: ``"reference"`` (default), one voice's units (:func:`reference_unit_data`), or the units
    of a tokenizer over all the voices (``"ssl"``, ``"norm"``, ``"mel"``: :func:`load_tokenizer`).
    The text LM is :func:`slm_course.textlm.load_text_lm` with ``text_config`` (default ``None``: notebook
    01's LM, whose 128-character window is the unit LM's). Six short trainings (cold and warm, three
    seeds): a few minutes the first time, then instant.
    """
    from slm_course.runtime import cached
    from slm_course.textlm import load_text_lm

    if kind not in ("reference", "ssl", "norm", "mel"):
        raise ValueError(f"kind must be 'reference' (one voice's units) or a tokenizer kind ('ssl', 'norm', 'mel'), "
                         f"got {kind!r}")
    config = recipe_config(config, TWIST_CONFIG)
    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    tokenizer = load_tokenizer("ssl" if kind == "reference" else kind)
    text_lm = load_text_lm(text_config or TextLMConfig(), progress=progress)

    def build() -> dict:
        data = reference_unit_data(corpus, progress) if kind == "reference" else unit_data(corpus, tokenizer, progress)
        return twist_comparison(data, tokenizer.vocab_size, text_lm.model, config, seeds, progress, shrink)

    text_key = digest(*text_lm.model.state_dict().values())  # another text LM gets its own comparison
    name = (f"twist-r{RECIPE}-{kind}-{tokenizer_key(tokenizer)}-{digest(config)}-"
            f"s{'-'.join(map(str, seeds))}-shrink{shrink:g}-text{text_key}")
    return cached(name, build, rebuild=rebuild)


def bench_twist() -> dict:
    """TWIST (notebook-05 recipe): unit LM validation loss from a text-LM warm start vs a cold start.

    The headline keys are on one voice's units (:data:`TWIST_UNITS`); ``*_hubert``: the same on the HuBERT
    units of all the voices, the units of the notebook's unit LM.
    """
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    out: dict = {"units": TWIST_UNITS}
    for kind, suffix in ((TWIST_UNITS, ""), (UNITS, "_hubert")):
        result = load_twist_comparison(kind, progress=False, corpus=corpus)  # cached, or run now
        out.update({
            f"warm_loss{suffix}": round(result["warm_loss"], 4), f"cold_loss{suffix}": round(result["cold_loss"], 4),
            f"ratio{suffix}": round(result["warm_loss"] / result["cold_loss"], 4),
            f"warm_losses{suffix}": [round(x, 4) for x in result["warm"]],
            f"cold_losses{suffix}": [round(x, 4) for x in result["cold"]],
        })
        out["seeds"], out["steps"] = result["seeds"], result["steps"]
    return out
