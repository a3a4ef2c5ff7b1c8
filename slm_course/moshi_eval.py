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
from slm_course.moshi import PAD, MoshiLM
from slm_course.moshi_recipe import grids, pad_grids, rvq_of, words_of_text

__all__ = ["ENDPOINT_S", "answer_test", "cascade_latency", "real_time_factor", "stream_nll", "streaming_asr",
           "streaming_tts", "transcript_nll", "bench_moshi"]

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


def _silent_user(record: dict, end: int, frames: int) -> torch.Tensor:
    """The user's streams ``(1 + levels, frames)``, silent from frame ``end`` on: the tokens of the dialogue's
    first (silent) frame."""
    user = record["user"].long()
    return torch.cat([user[:, :end], user[:, :1].expand(-1, max(0, frames - end))], 1)[:, :frames]


def answer_test(model: MoshiLM, data: dict, dset, asr, n: int = 60, listen_s: float = 3.5,
                temperature: float = 0.8, seed: int = 0, give_text: bool = False, batch_size: int = 20,
                progress: bool = False) -> dict:
    """Ask ``n`` held-out questions; transcribe what the model says back; score it, time it.

    For each test dialogue's first question the model hears the user's streams up to the end of the
    question (silence after it) and runs ``listen_s`` seconds past it. Returns ``accuracy`` (the
    nearest candidate answer to the transcript is the right one), ``by_kind``, ``latency_ms`` (median
    time from the end of the question to the first frame the model speaks in, over the dialogues
    where it answers), ``answered`` (share that answered at all), ``overlap_rate`` (share where it
    speaks in any frame from the question's start to 2 frames before its end) and ``examples``.

    ``give_text=True`` writes the true answer's words on the model's text stream, at their true
    frames (PAD elsewhere), and lets it write only the audio: how well it *speaks* a known answer,
    apart from whether it understood the question.
    """
    from tqdm.auto import tqdm

    from slm_course.corpus.dialogues import answer_candidates, nearest_answer

    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not listen_s > 0 or not temperature >= 0:
        raise ValueError(f"need n >= 1 questions, listen_s > 0 and temperature >= 0; got n={n!r}, "
                         f"listen_s={listen_s!r}, temperature={temperature!r}")
    if give_text and not model.cfg.inner_monologue:
        raise ValueError("give_text=True needs a model with an inner monologue to write the text on")
    rvq, silence, cfg = rvq_of(data), data["silence"], model.cfg
    g = torch.Generator().manual_seed(seed)
    recs = data["test"][:n]
    rows = []
    bar = tqdm(total=len(recs), desc="answer test", disable=not progress)
    for i in range(0, len(recs), batch_size):  # a batch of dialogues at once: the same tokens, faster
        chunk = recs[i : i + batch_size]
        asked = [dset[rec["id"]].exchanges[0] for rec in chunk]
        ends = [int(np.ceil(q.end / FRAME_S)) for q, _ in asked]
        lengths = [min(end + int(listen_s / FRAME_S), cfg.max_frames - max(cfg.delays)) for end in ends]
        frames = max(lengths)
        user = torch.stack([_silent_user(rec, end, frames) for rec, end in zip(chunk, ends)])
        forced = None
        if give_text:
            forced = torch.full((len(chunk), cfg.n_system, frames), -1)
            forced[:, 0] = PAD
            for b, (rec, (_, a)) in enumerate(zip(chunk, asked)):
                stop = min(frames, int(np.ceil(a.end / FRAME_S)), rec["system_text"].numel())
                forced[b, 0, :stop] = rec["system_text"][:stop].long()
        outs = model.generate(frames, user=user, forced=forced, temperature=temperature, generator=g)
        wavs = [rvq.decode(out[2:, end - 1 : length]) for out, end, length in zip(outs, ends, lengths)]
        for out, (q, a), end, length, heard in zip(outs, asked, ends, lengths, asr.transcribe(wavs)):
            out = out[:, :length]
            speaking = (out[1] != silence).nonzero().flatten().tolist()
            onset = next((f for f in speaking if f >= end - 2), None)
            said = nearest_answer(heard, answer_candidates(q.text))
            rows.append({"question": q.text, "kind": q.kind, "answer": a.text, "heard": heard, "said": said,
                         "right": said == a.text, "monologue": words_of_text(out[0].tolist(), data["words"]),
                         "latency_s": None if onset is None else onset * FRAME_S - q.end,
                         "overlap": any(f < end - 2 for f in speaking if f * FRAME_S > q.start), "tokens": out})
        bar.update(len(chunk))
    bar.close()
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


def _padded(rows: Sequence[torch.Tensor], fill: Sequence[torch.Tensor]) -> torch.Tensor:
    """Token rows ``(S, T_i)`` as one batch ``(B, S, max T_i)``, each row continued with its ``fill`` column."""
    T = max(r.shape[1] for r in rows)
    return torch.stack([torch.cat([r, f[:, None].expand(-1, T - r.shape[1])], 1) for r, f in zip(rows, fill)])


def streaming_asr(model: MoshiLM, data: dict, n: int = 60, channel: str = "user", batch_size: int = 20) -> float:
    """CER of the text the text-late model writes while it reads a held-out channel's audio."""
    if model.cfg.user_streams or model.cfg.text_delay <= 0:
        raise ValueError("streaming ASR needs a one-channel model whose text comes after the audio (variant 'asr')")
    refs, hyps = [], []
    recs = data["test"][:n]
    for i in range(0, len(recs), batch_size):
        chunk = recs[i : i + batch_size]
        audio = [rec[channel].long() for rec in chunk]
        grid = _padded([torch.cat([torch.full_like(a[:1], -1), a]) for a in audio],
                       [torch.cat([torch.tensor([-1]), a[:, 0]]) for a in audio])  # silence after the end
        outs = model.generate(grid.shape[2], forced=grid, temperature=0.0)
        for rec, a, out in zip(chunk, audio, outs):
            refs.append(words_of_text(rec[f"{channel}_text"].tolist(), data["words"]))
            hyps.append(words_of_text(out[0, : a.shape[1]].tolist(), data["words"]))
    return _cer(refs, hyps)


def streaming_tts(model: MoshiLM, data: dict, asr, n: int = 60, channel: str = "system", seed: int = 0,
                  batch_size: int = 20) -> float:
    """CER of the recogniser on the audio the audio-late model speaks from a held-out channel's text stream."""
    if model.cfg.user_streams or model.cfg.text_delay >= 0:
        raise ValueError("streaming TTS needs a one-channel model whose audio comes after the text (variant 'tts')")
    rvq, g = rvq_of(data), torch.Generator().manual_seed(seed)
    refs, wavs = [], []
    recs = data["test"][:n]
    free = torch.full((model.cfg.levels + 2,), -1)
    free[0] = PAD
    for i in range(0, len(recs), batch_size):
        chunk = recs[i : i + batch_size]
        texts = [rec[f"{channel}_text"].long() for rec in chunk]
        grid = _padded([torch.cat([t[None], torch.full((1 + model.cfg.levels, len(t)), -1)]) for t in texts],
                       [free] * len(texts))
        outs = model.generate(grid.shape[2], forced=grid, temperature=0.8, generator=g)
        for t, out in zip(texts, outs):
            wavs.append(rvq.decode(out[2:, : len(t)]))
            refs.append(words_of_text(t.tolist(), data["words"]))
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


@torch.no_grad()
def transcript_nll(text_lm, texts: Sequence[str]) -> float:
    """Mean NLL per character that notebook 01's text LM gives ``texts`` (what the system was heard to say).

    Each text is normalised first (lower case, punctuation as spaces: ``metrics.normalize_text``), so
    written answers ("the duck is in the park.") score as their transcripts would. Empty texts are
    left out; the answer is ``nan`` if all are empty.
    """
    from slm_course.metrics import normalize_text

    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it, [text]")
    losses, weights = [], []
    for text in map(normalize_text, texts):
        if not text:
            continue
        ids = torch.tensor(text_lm.tokenizer.encode(text, bos=True))[None, : text_lm.model.cfg.max_len]
        losses.append(float(text_lm.model({"tokens": ids})["loss"]) * (ids.shape[1] - 1))
        weights.append(ids.shape[1] - 1)
    return sum(losses) / sum(weights) if weights else float("nan")


def bench_moshi(n_answers: int = 100, n_stream: int = 60, seed: int = 0, sampling_seeds: int = 3) -> dict:
    """Every variant of notebook 08 (cached, or trained with its recipe), measured on held-out users' dialogues.

    ``seed``: every variant retrained from that seed (the dialogues and their tokens keep seed 0).
    ``sampling_seeds``: the answer test is also run with sampling seeds 1, 2, ... up to this many in all, and
    the lift averaged over them (``answer_lift_mean``): one draw of 100 answers has a standard error of about 0.04.
    """
    if isinstance(sampling_seeds, bool) or not isinstance(sampling_seeds, int) or sampling_seeds < 1:
        raise ValueError(f"sampling_seeds must be a positive int (1: the answer test's seed 0 only), "
                         f"got {sampling_seeds!r}")
    from slm_course.asr_recipe import load_asr
    from slm_course.cascade import Cascade
    from slm_course.corpus.dialogues import answer_candidates, load_dialogues
    from slm_course.moshi_recipe import VARIANTS, config_for, load_moshi, load_moshi_data
    from slm_course.textlm import load_text_lm

    data, dset = load_moshi_data(progress=False), load_dialogues(progress=False)
    asr, text_lm = load_asr(progress=False), load_text_lm(progress=False)
    models = {v: load_moshi(v, config_for(data, v, seed=seed), data=data, progress=False) for v in VARIANTS}
    full = models["full"]
    out: dict = {"params": full.num_params(), "steps": full.cfg.steps,
                 "train_seconds": round(sum(m.metrics["train_seconds"] for m in models.values()), 1)}
    for v in ("full", "no_monologue"):
        res = answer_test(models[v], data, dset, asr, n=n_answers)
        key = "inner_monologue" if v == "full" else "no_monologue"
        out[f"answer_acc_{key}"] = round(res["accuracy"], 3)
        out[f"answer_acc_{key}_by_sampling_seed"] = [round(res["accuracy"], 3)] + [
            round(answer_test(models[v], data, dset, asr, n=n_answers, seed=s)["accuracy"], 3)
            for s in range(1, sampling_seeds)]
        out[f"answer_acc_by_kind_{key}"] = {k: round(a, 3) for k, a in res["by_kind"].items()}
        out["answer_chance"] = round(float(np.mean([1 / len(answer_candidates(r["question"]))
                                                     for r in res["examples"]])), 3)
        out[f"transcript_nll_{key}"] = round(transcript_nll(text_lm, [r["heard"] for r in res["examples"]]), 3)
        if v == "full":
            given = answer_test(models[v], data, dset, asr, n=n_answers, give_text=True)
            out["answer_acc_given_text"] = round(given["accuracy"], 3)
            out |= {"turn_latency_ms": round(res["latency_ms"]), "answered": round(res["answered"], 3),
                    "overlap_rate": round(res["overlap_rate"], 3)}
    out["answer_lift_mean"] = float(np.mean(out["answer_acc_inner_monologue_by_sampling_seed"])
                                    - np.mean(out["answer_acc_no_monologue_by_sampling_seed"]))
    nll = {v: stream_nll(models[v], data) for v in ("full", "delay0", "independent", "no_monologue")}
    out |= {"acoustic_nll_delay1": nll["full"]["acoustic_nll"], "acoustic_nll_delay0": nll["delay0"]["acoustic_nll"],
            "acoustic_nll_depth": nll["full"]["acoustic_nll"],
            "acoustic_nll_independent": nll["independent"]["acoustic_nll"],
            "semantic_nll_inner_monologue": nll["full"]["semantic_nll"],
            "semantic_nll_no_monologue": nll["no_monologue"]["semantic_nll"]}
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
    out["streaming_asr_cer"] = round(streaming_asr(models["asr"], data, n=n_stream), 3)
    out["streaming_tts_cer"] = round(streaming_tts(models["tts"], data, asr, n=n_stream), 3)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["real_time_factor"] = round(real_time_factor(full, data), 3)
    finally:
        torch.set_num_threads(torch_threads)
    # live, the first answering sample plays once its frame's acoustic tokens exist (the acoustic delay), plus a step
    out["first_audio_ms"] = round(out["turn_latency_ms"] + (full.cfg.acoustic_delay + out["real_time_factor"])
                                  * FRAME_S * 1000)
    out |= {f"cascade_{k}": round(v) for k, v in cascade_latency(Cascade(asr, text_lm), data, dset).items()}
    return out
