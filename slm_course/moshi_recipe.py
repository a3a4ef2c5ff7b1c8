"""How the course builds, trains and measures its Moshi-style model (notebook 08).

- :func:`load_moshi_data`: the dialogues (:mod:`slm_course.corpus.dialogues`) as frame-level token
  streams at 12.5 Hz: the acoustic quantiser (:class:`~slm_course.frame_codec.MelRVQ`) fitted on the
  training turns, the semantic units (notebook 05's speaker-normalised units, one per frame,
  one more id, ``data["silence"]``, outside the turns), the system's words on its text stream;
- :func:`train_moshi` (one training loop, :func:`slm_course.train.train`) and :func:`load_moshi`,
  the trained variants: ``"full"`` (inner monologue, acoustic delay 1, depth transformer) and the
  ablations ``"no_monologue"``, ``"delay0"``, ``"independent"``; the delay swap ``"asr"`` (text two
  frames after the audio) and ``"tts"`` (audio two frames after the text), on one channel;
- the measurements, in :mod:`slm_course.moshi_eval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from slm_course.frame_codec import MelRVQ, frame_units, n_frames
from slm_course.moshi import EPAD, PAD, MoshiConfig, MoshiLM, align_text, delay
from slm_course.runtime import cached, digest
from slm_course.speech_tokens import expand

__all__ = ["ONE_CHANNEL_STEPS", "STEPS", "VARIANTS", "config_for", "grids", "load_moshi", "load_moshi_data", "pad_grids", "train_moshi"]

RECIPE = 1  # bump when the recipe changes in a way MoshiConfig does not show: cached models are rebuilt
DATA = 1  # the layout of load_moshi_data's cached dict
FIT_TURNS = 600  # training turns whose patches fit the acoustic quantiser
STEPS = 800  # training steps of each two-channel variant: the held-out loss stops falling about here
ONE_CHANNEL_STEPS = 400  # the delay-swap models: one channel, no dialogue to follow
MAX_FRAMES = 144  # the longest dialogue (about 10.5 s) and its delays
VARIANTS = {  # name -> what differs from the full model
    "full": {},
    "no_monologue": {"inner_monologue": False},
    "delay0": {"acoustic_delay": 0},
    "independent": {"depth": False},
    "asr": {"user_streams": False, "text_delay": 2},
    "tts": {"user_streams": False, "text_delay": -2},
}
ONE_CHANNEL = ("asr", "tts")  # trained on each channel alone, its own words on its text stream


def _semantic(tokenizer, dset, turns: Sequence, frames: int, silence: int) -> torch.Tensor:
    """One channel's semantic stream: the normalised units of each turn at its place, ``silence`` elsewhere."""
    units = torch.full((frames * 4,), silence, dtype=torch.long)  # 50 Hz
    for turn in turns:
        tok = tokenizer.encode(dset.turn_wav(turn))
        u = expand(tok.ids, tok.durations)
        s = round(turn.start * 50)
        u = u[: max(0, len(units) - s)]
        units[s : s + len(u)] = u
    return frame_units(units, frames)


def _words(turns: Sequence, vocab: dict[str, int], frames: int) -> torch.Tensor:
    spans = [(vocab[w.label.lower()], w.start) for t in turns for w in t.word_spans]
    return align_text(sorted(spans, key=lambda x: x[1]), frames)


def encode_dialogues(dset, tokenizer, levels: int = 3, codebook_size: int = 64, progress: bool = True) -> dict:
    """What :func:`load_moshi_data` caches, for any :class:`~slm_course.corpus.dialogues.DialogueSet`: ``levels``
    acoustic codebooks of ``codebook_size`` codes, ``tokenizer``'s units as the semantic stream."""
    from tqdm.auto import tqdm

    train = dset.split("train")
    if not train:
        raise ValueError("the dialogue set has no training dialogues to fit the acoustic quantiser on")
    turns = [t for d in train for t in d.turns][:FIT_TURNS]
    rvq = MelRVQ.fit(torch.cat([MelRVQ.patches(dset.turn_wav(t)) for t in turns]), levels, codebook_size)
    words = sorted({w.label.lower() for d in dset.dialogues for t in d.turns for w in t.word_spans})
    vocab = {w: i + 2 for i, w in enumerate(words)}  # after PAD and EPAD
    silence = tokenizer.vocab_size
    out = {"rvq": {"codebooks": rvq.codebooks, "mean": rvq.mean}, "words": words, "silence": silence,
           "n_semantic": silence + 1}
    bar = tqdm(total=len(dset), desc="dialogues -> streams", disable=not progress)
    for split in ("train", "valid", "test"):
        recs = []
        for d in dset.split(split):
            T = n_frames(round(d.duration * dset.sr))
            wav = dset.channels(d)
            rec = {"id": d.id}
            for c, name in enumerate(("user", "system")):
                turns = [t for t in d.turns if t.channel == name]
                sem = _semantic(tokenizer, dset, turns, T, silence)
                rec[name] = torch.cat([sem[None], rvq.encode(wav[c], T)]).short()
                rec[f"{name}_text"] = _words(turns, vocab, T).short()
            recs.append(rec)
            bar.update(1)
        out[split] = recs
    bar.close()
    return out


def load_moshi_data(*, corpus=None, rebuild: bool = False, progress: bool = True) -> dict:
    """Every dialogue as token streams (cached): ``{"rvq", "words", "n_semantic", "silence", split: [records]}``.

    A record holds, for one dialogue, ``"user"`` and ``"system"`` streams ``(1 + levels, T)`` (semantic,
    then acoustic) and ``"user_text"`` / ``"system_text"`` ``(T,)`` (PAD, EPAD, word ids), plus its id.
    ``corpus``: the main corpus the normaliser was trained on (default: the course's).
    """
    from slm_course.corpus.dialogues import load_dialogues
    from slm_course.normalizer import load_normalized_units

    dset = load_dialogues(progress=progress)
    tokenizer = load_normalized_units(corpus=corpus, progress=progress)

    def build() -> dict:
        return encode_dialogues(dset, tokenizer, progress=progress)

    name = f"moshi-data-r{RECIPE}-d{DATA}-{dset.root.name}-{tokenizer.cache_key}"
    return cached(name, build, rebuild=rebuild)


def config_for(data: dict, variant: str = "full", **overrides) -> MoshiConfig:
    """The course's config for one variant on ``data`` (its vocabulary sizes), with ``overrides``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    base = MoshiConfig(text_vocab=2 + len(data["words"]), n_semantic=data["n_semantic"],
                       levels=data["rvq"]["codebooks"].shape[0], codebook_size=data["rvq"]["codebooks"].shape[1],
                       max_frames=MAX_FRAMES, steps=ONE_CHANNEL_STEPS if variant in ONE_CHANNEL else STEPS)
    return replace(base, **{**VARIANTS[variant], **overrides})


def grids(records: Sequence[dict], cfg: MoshiConfig) -> list[torch.Tensor]:
    """Each record as the model's delayed grid ``(S, T + D)``; one-channel models get one grid per channel."""
    out = []
    for r in records:
        if cfg.user_streams:
            g = torch.cat([r["system_text"][None], r["system"], r["user"]]).long()
            out.append(delay(g, cfg.delays, cfg.initial))
        else:
            for name in ("user", "system"):
                g = torch.cat([r[f"{name}_text"][None], r[name]]).long()
                out.append(delay(g, cfg.delays, cfg.initial))
    return out


def pad_grids(grids: Sequence[torch.Tensor], fill: int) -> torch.Tensor:
    """Grids ``(S, T_i)`` as one batch ``(B, S, max T_i)``, the shorter ones filled with ``fill`` (never scored)."""
    T = max(g.shape[1] for g in grids)
    out = torch.full((len(grids), grids[0].shape[0], T), fill, dtype=torch.long)
    for b, g in enumerate(grids):
        out[b, :, : g.shape[1]] = g
    return out


class GridBatches:
    """``step -> {"grid": (B, S, T)}``: random dialogues, padded with ``initial``, reproducible per step."""

    def __init__(self, grids: Sequence[torch.Tensor], batch_size: int, fill: int, seed: int = 0) -> None:
        self.grids, self.batch_size, self.fill, self.seed = list(grids), batch_size, fill, seed

    def __call__(self, step: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        pick = torch.randint(0, len(self.grids), (self.batch_size,), generator=g).tolist()
        return {"grid": pad_grids([self.grids[i] for i in pick], self.fill)}


def train_moshi(data: dict, cfg: MoshiConfig, progress: bool = True) -> tuple[MoshiLM, object]:
    """Train one variant on the training dialogues (:func:`slm_course.train.train`)."""
    from slm_course.train import TrainConfig, train

    torch.manual_seed(cfg.seed)
    model = MoshiLM(cfg)
    train_grids = grids(data["train"], cfg)
    longest = max(g.shape[1] for g in train_grids)
    if longest > cfg.max_frames:
        raise ValueError(f"the longest training dialogue needs {longest} steps; raise max_frames ({cfg.max_frames})")
    history = train(model, GridBatches(train_grids, cfg.batch_size, cfg.initial, cfg.seed),
                    TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, eval_every=0,
                                seed=cfg.seed, progress=progress, desc="moshi"))
    return model.eval(), history


def load_moshi(variant: str = "full", config: MoshiConfig | None = None, *, data: dict | None = None, corpus=None,
               rebuild: bool = False, progress: bool = True) -> MoshiLM:
    """A trained variant (see :data:`VARIANTS`), from the cache or trained now.

    ``config``: a recipe of your own (e.g. ``config_for(data, "full", seed=1)``), trained in place of ``variant``'s,
    which is then not read. ``data``: what :func:`load_moshi_data` returned, if you have it (loading it again takes
    seconds).
    """
    from slm_course.train import model_record, restore

    data = data if data is not None else load_moshi_data(corpus=corpus, progress=progress)
    cfg = config if config is not None else config_for(data, variant)

    def build() -> dict:
        model, history = train_moshi(data, cfg, progress=progress)
        return model_record(model, cfg, history, {"params": model.num_params(), "train_seconds": history.seconds})

    name = f"moshi-r{RECIPE}-{digest(data['rvq']['codebooks'], data['words'])}-{digest(cfg)}"
    record = cached(name, build, rebuild=rebuild)
    return restore(MoshiLM(record["config"]), record).eval()


def rvq_of(data: dict) -> MelRVQ:
    return MelRVQ(data["rvq"]["codebooks"], data["rvq"]["mean"])


def words_of_text(ids: Sequence[int], words: Sequence[str]) -> str:
    """A text stream's words, PAD and EPAD left out: ``"the cup is red"``."""
    return " ".join(words[i - 2] for i in ids if i not in (PAD, EPAD) and 2 <= i < len(words) + 2)
