"""What notebook 08 measures on its Moshi-style models, all on the held-out speakers' test dialogues.

- :func:`stream_nll`: the per-stream negative log-likelihood (text, semantic, acoustic) of the true
  tokens: how the acoustic delay and the depth transformer are judged;
- :func:`answer_test`: the model listens to a spoken question and answers in its own audio, frame by
  frame; the course's recogniser transcribes that audio and the nearest of the question's candidate
  answers is taken as what it said (right or wrong); the same run times when it starts to speak
  after the user stops (turn-taking latency) and how often it talks over the user;
- :func:`streaming_asr` and :func:`streaming_tts`: the delay swap, one architecture read two ways;
- :func:`real_time_factor`: seconds of compute per second of dialogue, on one core;
- :func:`cascade_latency`: notebook 01's cascade on the same questions, timed the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from slm_course.frame_codec import FRAME_S
from slm_course.moshi import MoshiLM
from slm_course.moshi_recipe import grids, pad_grids, rvq_of, words_of_text

__all__ = ["ENDPOINT_S", "answer_test", "cascade_latency", "real_time_factor", "stream_nll", "streaming_asr",
           "streaming_tts"]

ENDPOINT_S = 0.5  # the silence a cascade waits for before it decides that the user has finished


@torch.no_grad()
def stream_nll(model: MoshiLM, data: dict, split: str = "test", batch_size: int = 32) -> dict[str, float]:
    """Mean NLL (nats per token) of each stream of the true dialogues: ``text_nll``, ``semantic_nll``, ``acoustic_nll``."""
    gs = grids(data[split], model.cfg)
    if not gs:
        raise ValueError(f"no {split!r} dialogues in data")
    totals: dict[str, float] = {}
    n = 0
    for i in range(0, len(gs), batch_size):
        chunk = gs[i : i + batch_size]
        out = model({"grid": pad_grids(chunk, model.cfg.initial)})
        for k, v in out.items():
            if k.endswith("_nll"):
                totals[k] = totals.get(k, 0.0) + v * len(chunk)
        n += len(chunk)
    return {k: v / n for k, v in totals.items()}


def _silent_user(record: dict, frames: int) -> torch.Tensor:
    """The user's streams with silence after ``frames``: the tokens of the dialogue's first (silent) frame."""
    user = record["user"].long()
    return torch.cat([user[:, :frames], user[:, :1].expand(-1, max(0, user.shape[1] - frames))], 1)


def answer_test(model: MoshiLM, data: dict, dset, asr, n: int = 60, listen_s: float = 3.5,
                temperature: float = 0.8, seed: int = 0, progress: bool = False) -> dict:
    """Ask ``n`` held-out questions; transcribe what the model says back; score it, time it.

    For each test dialogue's first question the model hears the user's streams up to the end of the
    question (silence after it) and runs ``listen_s`` seconds past it. Returns ``accuracy`` (the
    nearest candidate answer to the transcript is the right one), ``by_kind``, ``latency_ms`` (median
    time from the end of the question to the first frame the model speaks in, over the dialogues
    where it answers), ``answered`` (share that answered at all), ``overlap_rate`` (share where it
    started speaking more than 2 frames before the question ended) and ``examples``.
    """
    from tqdm.auto import tqdm

    from slm_course.corpus.dialogues import answer_candidates, nearest_answer

    rvq, silence = rvq_of(data), data["silence"]
    g = torch.Generator().manual_seed(seed)
    recs = data["test"][:n]
    rows = []
    for rec in tqdm(recs, desc="answer test", disable=not progress):
        d = dset[rec["id"]]
        q, a = d.exchanges[0]
        end = int(np.ceil(q.end / FRAME_S))
        frames = min(end + int(listen_s / FRAME_S), model.cfg.max_frames - max(model.cfg.delays))
        user = _silent_user(rec, end)
        user = torch.cat([user, user[:, :1].expand(-1, max(0, frames - user.shape[1]))], 1)[:, :frames]
        out = model.generate(frames, user=user, temperature=temperature, generator=g)
        speaking = (out[1] != silence).nonzero().flatten().tolist()
        onset = next((f for f in speaking if f >= end - 2), None)
        wav = rvq.decode(out[2:, end - 1 :])
        heard = asr.transcribe([wav])[0]
        said = nearest_answer(heard, answer_candidates(q.text))
        rows.append({"question": q.text, "kind": q.kind, "answer": a.text, "heard": heard, "said": said,
                     "right": said == a.text, "monologue": words_of_text(out[0].tolist(), data["words"]),
                     "latency_s": None if onset is None else onset * FRAME_S - q.end,
                     "overlap": any(f < end - 2 for f in speaking if f * FRAME_S > q.start), "tokens": out})
    lat = [r["latency_s"] for r in rows if r["latency_s"] is not None]
    kinds = sorted({r["kind"] for r in rows})
    return {"accuracy": float(np.mean([r["right"] for r in rows])),
            "by_kind": {k: float(np.mean([r["right"] for r in rows if r["kind"] == k])) for k in kinds},
            "latency_ms": float(np.median(lat) * 1000) if lat else float("nan"),
            "answered": len(lat) / len(rows), "overlap_rate": float(np.mean([r["overlap"] for r in rows])),
            "examples": rows}


def _cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    from slm_course.metrics import cer

    return float(cer(list(refs), list(hyps)))


def streaming_asr(model: MoshiLM, data: dict, n: int = 60, channel: str = "user") -> float:
    """CER of the text the text-late model writes while it reads a held-out channel's audio."""
    if model.cfg.user_streams or model.cfg.text_delay <= 0:
        raise ValueError("streaming ASR needs a one-channel model whose text comes after the audio (variant 'asr')")
    refs, hyps = [], []
    for rec in data["test"][:n]:
        audio_tokens = rec[channel].long()
        forced = torch.cat([torch.full_like(audio_tokens[:1], -1), audio_tokens])
        out = model.generate(audio_tokens.shape[1], forced=forced, temperature=0.0)
        refs.append(words_of_text(rec[f"{channel}_text"].tolist(), data["words"]))
        hyps.append(words_of_text(out[0].tolist(), data["words"]))
    return _cer(refs, hyps)


def streaming_tts(model: MoshiLM, data: dict, asr, n: int = 60, channel: str = "system", seed: int = 0) -> float:
    """CER of the recogniser on the audio the audio-late model speaks from a held-out channel's text stream."""
    if model.cfg.user_streams or model.cfg.text_delay >= 0:
        raise ValueError("streaming TTS needs a one-channel model whose audio comes after the text (variant 'tts')")
    rvq, g = rvq_of(data), torch.Generator().manual_seed(seed)
    refs, wavs = [], []
    for rec in data["test"][:n]:
        text = rec[f"{channel}_text"].long()
        forced = torch.cat([text[None], torch.full((1 + model.cfg.levels, len(text)), -1)])
        out = model.generate(len(text), forced=forced, temperature=0.8, generator=g)
        wavs.append(rvq.decode(out[2:]))
        refs.append(words_of_text(text.tolist(), data["words"]))
    return _cer(refs, asr.transcribe(wavs))


def real_time_factor(model: MoshiLM, data: dict, frames: int = 100, repeats: int = 3) -> float:
    """Seconds of compute per second of generated dialogue, on the threads torch has (set 1 for one core)."""
    rec = data["test"][0]
    frames = min(frames, rec["user"].shape[1], model.cfg.max_frames - max(model.cfg.delays))
    user = rec["user"][:, :frames].long() if model.cfg.user_streams else None
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.generate(frames, user=user, generator=torch.Generator().manual_seed(0))
        best = min(best, time.perf_counter() - t0)
    return best / (frames * FRAME_S)


def cascade_latency(cascade, data: dict, dset, n: int = 20) -> dict:
    """The cascade on the same held-out questions: from the end of the question to its first answering sample.

    It must first wait :data:`ENDPOINT_S` of silence to know that the user has finished (a pause
    inside a sentence is shorter; a shorter wait would cut users off), then run its ASR, its LM and
    its TTS up to the first sample. Returns the mean of each part in ms.
    """
    compute = []
    for rec in data["test"][:n]:
        q, _ = dset[rec["id"]].exchanges[0]
        result = cascade(dset.turn_wav(q))
        compute.append(result.latency_s)
    return {"endpoint_ms": ENDPOINT_S * 1000, "compute_ms": float(np.mean(compute) * 1000),
            "latency_ms": float((ENDPOINT_S + np.mean(compute)) * 1000)}
