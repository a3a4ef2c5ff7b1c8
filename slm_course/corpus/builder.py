"""Building the synthetic spoken corpus: plan -> synthesise -> resample -> store (notebook 00).

1. `plan()` draws every utterance's text, speaker, style and split from a seeded generator, plus
   four zero-shot evaluation sets spoken by held-out speakers (lexical, syntactic, story ending,
   acoustic consistency), at least 300 pairs each.
2. `tts.synth_many()` speaks a fixed chunk of the plan in a *fresh* process (eSpeak keeps state
   between calls, so a fresh process per chunk makes the output independent of what ran before).
3. The parent resamples 22.05 kHz -> 16 kHz, adds a faint seeded noise floor (raw eSpeak has long
   runs of exact zeros), and writes `audio.npy` (int16), `metadata.jsonl` and `manifest.json` (with
   SHA-256 digests) into a temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from slm_course.corpus.grammar import TOPICS, Grammar, words_of
from slm_course.corpus.voices import SPEAKER_BY_NAME, SPEAKERS, STYLE_BY_NAME, STYLES, espeak_settings
from slm_course.tts import synth_many

SR = 16000  # the course's sampling rate
VERSION = 8  # bump when the corpus recipe changes: cached corpora of another version are rebuilt
DEFAULT_UTTERANCES = 3000  # training/validation/test utterances (the evaluation sets come on top)
PAIRS_PER_SET = 320  # pairs in each zero-shot evaluation set
CHUNK = 400  # utterances per synthesis process (fixed, so the output does not depend on workers)
GAP_S = 0.06  # silence between the two parts of an acoustic-consistency utterance
NOISE_STD = 10 ** (-60 / 20)  # the noise floor: -60 dB re full scale
EVAL_SETS = ("lexical", "syntactic", "story", "acoustic")


def plan(n_utterances: int = DEFAULT_UTTERANCES, seed: int = 0, pairs_per_set: int = PAIRS_PER_SET) -> list[dict]:
    """Every utterance to synthesise, as dicts with text, speaker, style, split and labels."""
    if n_utterances < 10:
        raise ValueError(f"n_utterances={n_utterances}: the corpus needs at least 10 utterances.")
    if pairs_per_set < 1:
        raise ValueError("pairs_per_set must be at least 1.")
    rng = random.Random(seed)
    g = Grammar()
    train_spk = [s for s in SPEAKERS if not s.held_out]
    test_spk = [s for s in SPEAKERS if s.held_out]
    items: list[dict] = []

    def add(text, kind, topic, speaker, style, split, parts=None, **extra):
        items.append({
            "id": f"{split}-{len(items):05d}", "text": text, "kind": kind, "topic": topic,
            "speaker": speaker.name, "style": style.name, "split": split,
            "parts": parts or [[text, speaker.name, style.name]], **extra,
        })

    for _ in range(n_utterances):
        s = g.sentence(rng)
        if rng.random() < 0.15:
            speaker, split = rng.choice(test_spk), "test"
        else:
            speaker, split = rng.choice(train_spk), ("valid" if rng.random() < 0.1 else "train")
        add(s.text, s.kind, s.topic, speaker, rng.choice(STYLES), split)

    def pair(set_name, k, good, bad, kind, topic, speaker, style, variant, parts_good=None, parts_bad=None):
        for member, text, parts in (("good", good, parts_good), ("bad", bad, parts_bad)):
            add(text, kind, topic, speaker, style, f"eval_{set_name}", parts=parts,
                pair=k, good=member == "good", variant=variant)

    # Lexical (sWUGGY-style): a word vs an onset-swapped non-word, both said alone by one voice.
    lex = [(w, nw) for w in g.content_words() for nw in g.nonwords(w, rng)]
    rng.shuffle(lex)
    for k in range(pairs_per_set):
        w, nw = lex[k % len(lex)]
        pair("lexical", k, w + ".", nw + ".", "short", None, rng.choice(test_spk), rng.choice(STYLES), "nonword")

    # Syntactic (sBLIMP-style): agreement violations and word-order swaps.
    for k in range(pairs_per_set):
        topic = rng.choice(g.topics)
        plural = rng.random() < 0.5
        agent = rng.choice(TOPICS[topic]["agents"])[int(plural)]
        verbs = rng.choice(TOPICS[topic]["verbs"])
        obj = g._np(rng, topic, rng.random() < 0.3)
        good = f"the {agent} {verbs[int(plural)]} {obj}."
        if k % 2 == 0:
            bad, variant = f"the {agent} {verbs[1 - int(plural)]} {obj}.", "agreement"
        else:
            w = good[:-1].split()
            bad, variant = " ".join([w[1], w[0], *w[2:]]) + ".", "word_order"
            if rng.random() < 0.5:
                bad = " ".join([*w[:2], w[3], w[2], *w[4:]]) + "."
        pair("syntactic", k, good, bad, "statement", topic, rng.choice(test_spk), rng.choice(STYLES), variant)

    # Story ending (tStoryCloze-like): the same first sentence, an ending on or off its topic.
    for k in range(pairs_per_set):
        topic = rng.choice(g.topics)
        other = rng.choice([t for t in g.topics if t != topic])
        first = g.clause(rng, topic) + "."
        good, bad = (f"{first} {ending}" for ending in g.story_endings(rng, topic, other, first))
        pair("story", k, good, bad, "story", topic, rng.choice(test_spk), rng.choice(STYLES), "topic")

    # Acoustic consistency (SALMon-style): the second half by the same or by a switched voice or style.
    for k in range(pairs_per_set):
        text, topic = g.story(rng)
        first, second = text.split(". ", 1)
        a = rng.choice(test_spk)
        sa = rng.choice(STYLES)
        if k % 2 == 0:
            b, sb, variant = rng.choice([s for s in test_spk if s.gender != a.gender]), sa, "speaker_switch"
        else:
            b, sb, variant = a, rng.choice([s for s in STYLES if s != sa]), "style_switch"
        pair("acoustic", k, text, text, "story", topic, a, sa, variant,
             parts_good=[[first + ".", a.name, sa.name], [second, a.name, sa.name]],
             parts_bad=[[first + ".", a.name, sa.name], [second, b.name, sb.name]])
    return items


QUESTION_BOOST = "+50%"  # extra pitch on a question's last word, on top of eSpeak's own final rise


def question_ssml(text: str) -> str:
    """'is the cow old?' -> SSML that raises the last word: eSpeak's own rise is faint in calm or low voices."""
    *head, last = text.rstrip("?").split(" ")
    return f'<speak>{" ".join(head)} <prosody pitch="{QUESTION_BOOST}">{last}</prosody>?</speak>'


def _espeak_parts(item: dict) -> list[dict]:
    parts = []
    for text, spk, sty in item["parts"]:
        settings = espeak_settings(SPEAKER_BY_NAME[spk], STYLE_BY_NAME[sty])
        if text.endswith("?"):
            parts.append({"text": question_ssml(text), "ssml": True, **settings})
        else:
            parts.append({"text": text, **settings})
    return parts


def synth_chunks(chunks: list[list[list[dict]]], workers: int):
    """Speak each chunk of utterances (lists of eSpeak parts) in a fresh process; yields each chunk's results in order.

    eSpeak keeps state between calls, so each chunk gets a new process (``max_tasks_per_child=1``): the
    audio then depends only on the chunk, not on which worker spoke what before it.
    """
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = [pool.submit(synth_many, chunk, GAP_S) for chunk in chunks]
        for future in futures:
            yield future.result()


def finish_audio(wav22: np.ndarray, noise_seed: list[int]) -> np.ndarray:
    """eSpeak's int16 22.05 kHz output -> the corpus' int16 16 kHz audio, with its faint seeded noise floor."""
    import torch

    from slm_course.audio import resample

    y = resample(torch.from_numpy(wav22.astype(np.float32) / 32768.0), 22050, SR).numpy()
    y = np.clip(y + NOISE_STD * np.random.default_rng(noise_seed).standard_normal(len(y)), -1.0, 32767 / 32768)
    return np.round(y * 32768).astype(np.int16)


def build(out: str | os.PathLike, n_utterances: int = DEFAULT_UTTERANCES, seed: int = 0,
          pairs_per_set: int = PAIRS_PER_SET, workers: int | None = None, progress: bool = True) -> dict:
    """Build the corpus into folder `out` (replaced atomically) and return its manifest."""
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = Path(out)
    items = plan(n_utterances, seed, pairs_per_set)
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = workers or min(2, os.cpu_count() or 1)
    tmp = scratch(out)
    audio_chunks: list[np.ndarray] = []
    offset = 0
    hasher = hashlib.sha256()
    bar = tqdm(total=len(items), desc="synthesising corpus", unit="utt", disable=not progress)
    with open(tmp / "metadata.jsonl", "w") as meta:
        for chunk, results in zip(chunks, synth_chunks([[_espeak_parts(it) for it in chunk] for chunk in chunks], workers)):
            for it, (wav22, words) in zip(chunk, results):
                pcm = finish_audio(wav22, [seed, int(it["id"].split("-")[-1])])
                rec = {k: v for k, v in it.items() if k != "parts"}
                rec["speakers"] = sorted({p[1] for p in it["parts"]})
                rec["styles"] = sorted({p[2] for p in it["parts"]})
                rec["words"] = words_of(it["text"])
                rec["word_spans"] = [[w, round(s, 4), round(e, 4)] for w, s, e, _ in words]
                rec["phone_spans"] = [[p, round(s, 4), round(e, 4)] for *_, ph in words for p, s, e in ph]
                rec["phonemes"] = " ".join(p for p, _, _ in rec["phone_spans"])
                rec["gender"] = SPEAKER_BY_NAME[it["speaker"]].gender
                rec["question"] = it["text"].rstrip().endswith("?")
                rec["duration"] = round(len(pcm) / SR, 4)
                rec["offset"], rec["length"] = offset, len(pcm)
                offset += len(pcm)
                line = json.dumps(rec, sort_keys=True)
                meta.write(line + "\n")
                hasher.update(pcm.tobytes())
                hasher.update(line.encode())
                audio_chunks.append(pcm)
                bar.update(1)
    bar.close()
    audio = np.concatenate(audio_chunks)
    np.save(tmp / "audio.npy", audio)
    manifest = {
        "version": VERSION, "seed": seed, "sr": SR, "utterances": len(items),
        "n_utterances": n_utterances, "pairs_per_set": pairs_per_set,
        "speakers": len(SPEAKERS), "held_out_speakers": sum(s.held_out for s in SPEAKERS),
        "styles": len(STYLES), "hours": round(len(audio) / SR / 3600, 4),
        "sha256": hasher.hexdigest(),
    }
    return publish(tmp, out, manifest, t_start)


def scratch(out: Path) -> Path:
    """An empty folder beside ``out`` to build in; :func:`publish` renames it to ``out`` when the build is done."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path, manifest: dict, t_start: float) -> dict:
    """Finish a built folder: the files' digests and the build time into ``manifest.json``, then ``tmp`` -> ``out``.

    The rename is atomic, so a reader never sees a half-built folder.
    """
    from slm_course.runtime import file_sha256

    manifest = {**manifest, "files": {name: file_sha256(tmp / name) for name in ("audio.npy", "metadata.jsonl")},
                "build_seconds": round(time.perf_counter() - t_start, 2)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return manifest
