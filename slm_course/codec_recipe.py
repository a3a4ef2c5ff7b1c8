"""The codec's recipe (notebook 03): random crops, training, the cached codec, bitrate vs quality, the benchmark.

The model is :class:`slm_course.codec.CodecModel`, wrapped as the tokenizer :class:`slm_course.codec.Codec`.
It trains with the course's one loop, :func:`slm_course.train.train`, on random crops of the
corpus's training utterances (:class:`CropBatches`). Later notebooks call :func:`load_codec`, which
loads the trained codec from the cache or trains it with the same recipe and seed.
``slm-course bench codec`` reports bitrate against quality on held-out speakers.

>>> codec = load_codec()                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slm_course import audio
from slm_course.codec import SR, Codec, CodecConfig, CodecModel, codebook_usage, match_length
from slm_course.metrics import MEL_FLOOR, mel_distance, si_snr
from slm_course.runtime import cached, recipe_config, seed_everything
from slm_course.train import History, TrainConfig, model_record, restore, train

if TYPE_CHECKING:
    from slm_course.asr import CtcAsr
    from slm_course.corpus import Corpus

__all__ = [
    "CONFIG",
    "RECIPE",
    "CropBatches",
    "bench_codec",
    "evaluate_levels",
    "load_codec",
    "train_codec",
]

RECIPE = 1  # bump when the model or the losses change in a way CodecConfig does not show
CONFIG = CodecConfig()  # the course's codec

# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class CropBatches:
    """Random crops of training utterances: ``batches(step)`` is a ``(batch_size, segment)`` tensor.

    The crops of a step depend only on ``(seed, step)``. Utterances shorter than a crop are
    zero-padded; audio is kept as 16-bit integers (as the corpus stores it) to save memory.
    """

    def __init__(self, wavs: Sequence[torch.Tensor], batch_size: int, segment: int, seed: int = 0) -> None:
        if len(wavs) == 0:
            raise ValueError("CropBatches needs at least one training waveform")
        self.lengths = torch.tensor([len(w) for w in wavs])
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.pcm = torch.cat([(audio.check_wav(w) * 32767).round().clamp(-32768, 32767).short() for w in wavs])
        self.batch_size, self.segment, self.seed = batch_size, segment, seed

    def __call__(self, step: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        which = torch.randint(len(self.lengths), (self.batch_size,), generator=gen)
        out = torch.zeros(self.batch_size, self.segment)
        for row, i in enumerate(which.tolist()):
            n = int(self.lengths[i])
            off = int(torch.randint(max(n - self.segment, 0) + 1, (), generator=gen))
            piece = self.pcm[self.starts[i] + off : self.starts[i] + min(off + self.segment, n)]
            out[row, : len(piece)] = piece.float() / 32768
        return out  # (B, segment)


def train_codec(
    data: Corpus | Sequence[torch.Tensor], config: CodecConfig = CONFIG, progress: bool = True,
    device: torch.device | str | None = None,
) -> tuple[Codec, History]:
    """Train a codec on a corpus's ``train`` split (or on a list of 16 kHz waveforms); return it and its History."""
    if not isinstance(config, CodecConfig):
        raise TypeError(f"config must be a CodecConfig, got {type(config).__name__}")
    if hasattr(data, "split") and hasattr(data, "wav"):
        if getattr(data, "sr", SR) != SR:
            raise ValueError(f"the corpus is sampled at {data.sr} Hz; the codec needs {SR} Hz")
        wavs = [data.wav(u) for u in data.split("train")]
    else:
        wavs = list(data)
    segment = config.segment - config.segment % config.hop  # a whole number of frames
    batches = CropBatches(wavs, config.batch_size, segment, config.seed)
    seed_everything(config.seed)  # initial weights and codebooks depend on the seed only
    model = CodecModel(config)
    train_config = TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                               seed=config.seed, progress=progress, desc="codec")
    history = train(model, batches, train_config, device=device)
    return Codec(model.cpu().eval()), history


def _cache_name(config: CodecConfig, corpus: Corpus | None = None) -> str:
    from slm_course.corpus import corpus_version

    name = f"codec-r{RECIPE}-corpus{corpus_version()}-{config.key()}"
    return name if corpus is None else f"{name}-{corpus.manifest['sha256'][:10]}"  # another corpus: named by content


def load_codec(config: CodecConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False,
               progress: bool = True) -> Codec:
    """The course's codec: loaded from the cache, or trained now with ``config`` (same recipe and seed) and cached.

    >>> codec = load_codec()                             # doctest: +SKIP
    """
    config = recipe_config(config, CONFIG)

    def build() -> dict[str, Any]:
        from slm_course.corpus import load_corpus

        data = corpus if corpus is not None else load_corpus(progress=progress)
        codec, history = train_codec(data, config, progress=progress)
        return model_record(codec.model, config, history)

    record = cached(_cache_name(config, corpus), build, rebuild=rebuild)
    model = restore(CodecModel(record["config"]), record)
    codec = Codec(model)
    codec.history = model.history  # {"loss": [...], "seconds": s, and each loss term per step}
    return codec


# ---------------------------------------------------------------------------------------------
# Evaluation: bitrate vs quality
# ---------------------------------------------------------------------------------------------


def evaluate_levels(
    codec: Codec, wavs: Sequence[torch.Tensor], texts: Sequence[str] | None = None, asr: CtcAsr | None = None,
    levels: Sequence[int] | None = None,
) -> list[dict[str, float]]:
    """Bitrate and quality of ``codec`` at each number of levels (default 1, 2, 4, 8): one dict per level.

    Each dict holds ``n_levels``, ``bitrate_bps``, ``si_snr_db`` and ``mel_distance`` (means over
    the waveforms), and ``cer`` (the ASR's character error rate on the decoded audio) when ``asr``
    and ``texts`` are given.
    """
    from slm_course.metrics import cer

    if not isinstance(codec, Codec):
        raise TypeError(f"codec must be a Codec (from load_codec or train_codec), got {type(codec).__name__}")
    if len(wavs) == 0:
        raise ValueError("wavs is empty: pass some 16 kHz waveforms to evaluate on")
    if (asr is None) != (texts is None):
        raise ValueError("pass both asr and texts to measure the CER, or neither")
    levels = list(levels) if levels is not None else [k for k in (1, 2, 4, 8, 16, 32) if k <= codec.n_levels]
    for k in levels:
        codec.check_levels(k)
    wavs = [audio.check_wav(w, name=f"wavs[{i}]") for i, w in enumerate(wavs)]
    codes = [codec.encode(w).ids for w in wavs]  # (n_levels, frames) each, encoded once
    rows = []
    for k in levels:
        decoded = [match_length(codec.decode(c[:k]), len(w)) for c, w in zip(codes, wavs)]
        row = {
            "n_levels": k,
            "bitrate_bps": codec.bitrate(n_levels=k),
            "si_snr_db": float(np.mean([si_snr(d, w) for d, w in zip(decoded, wavs)])),
            "mel_distance": float(np.mean([mel_distance(d, w) for d, w in zip(decoded, wavs)])),
        }
        if asr is not None:
            row["cer"] = cer(list(texts), asr.transcribe(decoded))
        rows.append(row)
    return rows


def bench_codec(n_test: int = 120, seed: int = 0) -> dict:
    """The notebook's codec (cached, or trained with the same recipe): bitrate vs quality on held-out speakers.

    ``n_test`` held-out utterances (the first of the test split, which cycles through its speakers)
    are encoded, decoded with 1, 2, 4 and 8 levels, and scored; the ASR's CER on the originals is
    reported beside them. ``seed``: the same recipe from another seed (weights, codebooks, crops).
    """
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.metrics import cer

    corpus = load_corpus(progress=False)
    codec = load_codec(replace(CONFIG, seed=seed), progress=False)
    asr = load_asr(progress=False)
    test = corpus.split("test")[:n_test]
    wavs, texts = [corpus.wav(u) for u in test], [u.text for u in test]
    rows = evaluate_levels(codec, wavs, texts, asr)
    used, _ = codebook_usage(torch.cat([codec.encode(w).ids for w in wavs], dim=1), codec.vocab_size)
    return {
        "levels": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "cer_original": round(cer(texts, asr.transcribe(wavs)), 4),
        "mel_floor": MEL_FLOOR,
        "codes_used_per_level": used.tolist(),
        "utterances": len(test),
        "params": sum(p.numel() for p in codec.model.parameters()),
        "steps": codec.config.steps,
        "train_seconds": round(codec.history["seconds"], 1),
    }
