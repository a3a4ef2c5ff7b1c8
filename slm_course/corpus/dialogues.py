"""Two-channel spoken dialogues with checkable answers, for the full-duplex chapter (notebook 08, Moshi).

A full-duplex speech LM such as Moshi (Défossez et al., 2024) hears the user and speaks at the same
time: it models two audio streams, the user's and its own, frame by frame, and must learn *when* to
talk as well as what to say. This module makes toy data for that: a USER asks a question on channel
0 and the SYSTEM answers on channel 1, with every word's time span known on both channels.

**A world that makes answers checkable.** Each object of the corpus language (`grammar.TOPICS`) has
one colour, one property and one place, fixed once for all (`WORLD`). A question then has exactly
one right answer, and a model's spoken answer can be scored: transcribe it, pick the nearest of the
question's `answer_candidates` (they differ only in the answer words), and compare with `answer()`:

>>> answer("what is three plus four?")
'three plus four is seven.'
>>> answer("where are the cows?")
'the cows are on the farm.'
>>> WORLD["cups"].colour == WORLD["cup"].colour  # a plural shares its singular's facts
True
>>> nearest_answer("the cows are on the form", answer_candidates("where are the cows?"))
'the cows are on the farm.'

**Timing.** Moshi was fine-tuned on about 2,000 hours of Fisher telephone conversations, where each
speaker is recorded on a channel of their own. Real turn-taking is not "silence, then the other
speaker": the next speaker usually starts within a few hundred milliseconds, sometimes before the
first has finished, and listeners say "okay" or "right" while the other talks (backchannels). The
dialogues copy these habits at toy scale:

- the user starts 0.2-0.6 s in;
- the system answers after a gap of 0.1-0.5 s, or, one time in seven or so (p = 0.15), starts up to
  0.15 s *before* the question ends (an overlap);
- with p = 0.25 per exchange the user backchannels ("okay." / "right.") 0.3-1.0 s after the answer
  starts, usually over it: the system keeps talking, so a model must not stop at every sound on the
  user's channel;
- half of the dialogues have a second exchange, whose question starts 0.3-0.8 s after the previous
  answer (and backchannel) ends; the dialogue ends 0.5 s after its last turn.

Turns are timed from where their speech ends (eSpeak's trailing silence is cut), so a gap is a gap
between voices. On one channel turns never overlap; across channels they may.

**Voices.** Moshi speaks with one voice (its synthetic instruction dialogues give it a single,
consistent voice), so the SYSTEM is always the corpus' reference voice `SYSTEM_SPEAKER` in the
neutral style, with its eSpeak rate jittered per dialogue (x0.9-1.1) so that the same answer is not
always the same audio. The USER is one speaker per dialogue in any style: the corpus' training
speakers for train and valid dialogues, its held-out speakers for test dialogues.

**Storage** is the corpus' layout: only the turns' audio (int16, 16 kHz) in one `audio.npy`,
`metadata.jsonl` (one dialogue a line, turns with their start times and word spans) and
`manifest.json` with SHA-256 digests. `DialogueSet.channels()` lays the turns out on two channels.

Usage::

    dialogues = load_dialogues()                 # builds into the cache on first use, once
    d = dialogues.split("train")[0]
    [(t.channel, t.text, t.start) for t in d.turns]
    stereo = dialogues.channels(d)               # (2, T) float32: row 0 user, row 1 system
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slm_course.corpus import builder as _build
from slm_course.corpus.corpus import CorpusError, read_manifest
from slm_course.corpus.grammar import COLOURS, NUMBERS, TOPICS, words_of
from slm_course.corpus.voices import SPEAKER_BY_NAME, SPEAKERS, STYLE_BY_NAME, STYLES, Speaker, espeak_settings
from slm_course.runtime import cache_dir, lock
from slm_course.tts import Span

if TYPE_CHECKING:
    import torch

SR = _build.SR  # 16 kHz, the course's sampling rate
VERSION = 1  # bump when the dialogue recipe changes: cached dialogue sets of another version are rebuilt
SPLITS = ("train", "valid", "test")
KINDS = ("arithmetic", "colour", "where", "yes_no")  # the four question kinds
CHANNELS = ("user", "system")  # channel 0, channel 1

SYSTEM_SPEAKER = "m00"  # the system's one voice: the corpus' reference speaker (a training speaker)
SYSTEM_STYLE = "neutral"
SYSTEM_RATE_JITTER = (0.9, 1.1)  # the system's eSpeak rate is multiplied by a factor from this range per dialogue

PLACES = {"kitchen": "in the kitchen", "farm": "on the farm", "school": "at the school", "sea": "in the sea",
          "park": "in the park"}
BACKCHANNELS = ("okay.", "right.")

# Timing, in seconds (see the module docstring).
LEAD_S = (0.2, 0.6)  # silence before the user's first question
OVERLAP_P = 0.15  # probability that the answer starts before the question ends
OVERLAP_S = (0.0, 0.15)  # ... by this much
GAP_S = (0.1, 0.5)  # otherwise, the silence between question and answer
BACKCHANNEL_P = 0.25  # probability of a backchannel per exchange
BACKCHANNEL_DELAY_S = (0.3, 1.0)  # from the start of the answer to the start of the backchannel
TWO_EXCHANGES_P = 0.5  # probability of a second question
PAUSE_S = (0.3, 0.8)  # from the end of an exchange (answer and backchannel) to the next question
TAIL_S = 0.5  # silence after the last turn
VALID_FRACTION = 0.1  # of the training speakers' dialogues

DIALOGUES_PER_CHUNK = 150  # dialogues per synthesis process (fixed, so the audio does not depend on the workers)
SILENCE_INT16 = 33  # eSpeak samples at or below this (about -60 dB re full scale) count as silence
TAIL_PAD_S = 0.03  # kept after the last non-silent sample when a turn's trailing silence is cut
PLURAL_P = 0.4  # probability that a question asks about the plural noun

# --- the world ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thing:
    """What is true of one object noun ("cup" or "cups"): the facts the answers report."""

    noun: str  # the word as asked about: "cups"
    singular: str  # "cup"
    plural: bool  # True for "cups"
    topic: str  # "kitchen"
    colour: str  # one of grammar.COLOURS
    property: str  # one of the topic's adjectives
    place: str  # "in the kitchen": the topic's place, PLACES[topic]


WORLD_SEED = 2024  # the seed of the one shuffle that hands out colours and properties
NOT_PROPERTIES = frozenset({"brown"})  # an adjective that names a colour would contradict the object's colour


def _world() -> dict[str, Thing]:
    """Every object noun, singular and plural, -> its `Thing`; the same on every call and in every process.

    Within a topic the six objects get six different colours, and the topic's adjectives in turn as
    properties (each used about equally often), in an order shuffled once with `WORLD_SEED`. "brown"
    (a farm adjective) is never a property: "the cow is brown" would contradict "the cow is white".
    """
    rng = random.Random(WORLD_SEED)
    world: dict[str, Thing] = {}
    for topic, t in TOPICS.items():
        n = len(t["objects"])
        colours = [COLOURS[i % len(COLOURS)] for i in range(n)]
        adjectives = [a for a in t["adjectives"] if a not in NOT_PROPERTIES]
        properties = [adjectives[i % len(adjectives)] for i in range(n)]
        rng.shuffle(colours)
        rng.shuffle(properties)
        for (singular, plural), colour, prop in zip(t["objects"], colours, properties):
            for noun, is_plural in ((singular, False), (plural, True)):
                world[noun] = Thing(noun, singular, is_plural, topic, colour, prop, PLACES[topic])
    return world


WORLD: dict[str, Thing] = _world()

# --- questions and answers -----------------------------------------------------------------

QUESTION_FORMS = (
    "'what is A plus B?' or 'what is A minus B?' (A and B spelled out, zero to ten; for minus A >= B)",
    "'what colour is the NOUN?'",
    "'where is the NOUN?'",
    "'is the NOUN ADJECTIVE?' (an adjective of the noun's topic)",
)


def _copula(noun: str) -> str:
    return "are" if WORLD[noun].plural else "is"


def ask(rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    """A random question of `kind` (any of `KINDS` when None) -> (question, kind).

    Nouns are plural 40% of the time; a yes/no question asks about the object's true property half
    of the time and about another adjective of its topic otherwise, so "yes" and "no" are equally likely.

    >>> ask(random.Random(0), "where")
    ('where are the nets?', 'where')
    """
    if kind is None:
        kind = rng.choice(KINDS)
    if kind not in KINDS:
        raise ValueError(f"unknown question kind {kind!r}; choose one of {', '.join(KINDS)} (or None for any).")
    if kind == "arithmetic":
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        if rng.random() < 0.5:
            return f"what is {NUMBERS[a]} plus {NUMBERS[b]}?", kind
        return f"what is {NUMBERS[max(a, b)]} minus {NUMBERS[min(a, b)]}?", kind
    topic = rng.choice(list(TOPICS))
    noun = rng.choice(TOPICS[topic]["objects"])[int(rng.random() < PLURAL_P)]
    be = _copula(noun)
    if kind == "colour":
        return f"what colour {be} the {noun}?", kind
    if kind == "where":
        return f"where {be} the {noun}?", kind
    thing = WORLD[noun]
    if rng.random() < 0.5:
        adjective = thing.property
    else:
        adjective = rng.choice([a for a in TOPICS[topic]["adjectives"] if a != thing.property])
    return f"{be} the {noun} {adjective}?", kind


def _parse(question: str) -> tuple[str, list[str], str]:
    """question -> (kind, every candidate answer, the right answer); ValueError for anything else."""

    def fail(why: str) -> ValueError:
        return ValueError(f"cannot answer {question!r}: {why}. Ask one of: {'; '.join(QUESTION_FORMS)}; "
                          "with 'are' for a plural noun ('where are the cows?'). A NOUN is an object of a "
                          "topic in grammar.TOPICS (every key of dialogues.WORLD).")

    if not isinstance(question, str):
        raise TypeError(f"answer() takes the question as a string, got {type(question).__name__}.")
    w = words_of(question)

    def noun_of(word: str, be: str) -> Thing:
        if word not in WORLD:
            raise fail(f"{word!r} is not an object of the world")
        if be != _copula(word):
            raise fail(f"{word!r} takes {_copula(word)!r}, not {be!r}")
        return WORLD[word]

    if len(w) == 5 and w[:2] == ["what", "is"] and w[3] in ("plus", "minus"):
        a, op, b = w[2], w[3], w[4]
        small = NUMBERS[:11]
        if a not in small or b not in small:
            raise fail("the numbers must be spelled-out words from zero to ten")
        i, j = small.index(a), small.index(b)
        if op == "minus" and i < j:
            raise fail("the answer would be negative: put the larger number first")
        right = NUMBERS[i + j if op == "plus" else i - j]
        return "arithmetic", [f"{a} {op} {b} is {n}." for n in NUMBERS], f"{a} {op} {b} is {right}."
    if len(w) == 5 and w[:2] == ["what", "colour"] and w[3] == "the":
        thing = noun_of(w[4], w[2])
        head = f"the {thing.noun} {w[2]}"
        return "colour", [f"{head} {c}." for c in COLOURS], f"{head} {thing.colour}."
    if len(w) == 4 and w[0] == "where" and w[2] == "the":
        thing = noun_of(w[3], w[1])
        head = f"the {thing.noun} {w[1]}"
        return "where", [f"{head} {p}." for p in PLACES.values()], f"{head} {thing.place}."
    if len(w) == 4 and w[0] in ("is", "are") and w[1] == "the":
        thing = noun_of(w[2], w[0])
        adjectives = TOPICS[thing.topic]["adjectives"]
        if w[3] not in adjectives:
            raise fail(f"{w[3]!r} is not an adjective of the {thing.topic} topic ({', '.join(adjectives)})")
        head = f"the {thing.noun} {w[0]}"
        candidates = [f"yes, {head} {w[3]}."] + [f"no, {head} {a}." for a in adjectives if a != w[3]]
        right = f"yes, {head} {w[3]}." if w[3] == thing.property else f"no, {head} {thing.property}."
        return "yes_no", candidates, right
    raise fail("it has none of the accepted forms")


def answer(question: str) -> str:
    """The one right answer to a question of one of the four forms, as a full sentence.

    >>> answer("what is nine minus nine?")
    'nine minus nine is zero.'
    >>> thing = WORLD["cake"]
    >>> answer(f"is the cake {thing.property}?") == f"yes, the cake is {thing.property}."
    True
    """
    return _parse(question)[2]


def question_kind(question: str) -> str:
    """The kind of a question (one of `KINDS`): "where are the cows?" -> "where"."""
    return _parse(question)[0]


def answer_candidates(question: str) -> list[str]:
    """Every answer of the right form to `question`, the right one among them exactly once.

    The candidates differ only in the answer words (the number, colour, place, or yes/no and the
    adjective), so picking the one nearest to a transcript measures whether the answer was right,
    not how well the rest was said.

    >>> answer_candidates("where is the cup?")[:2]
    ['the cup is in the kitchen.', 'the cup is on the farm.']
    """
    return _parse(question)[1]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and substitutions from a to b.

    >>> edit_distance("kitten", "sitting")
    3
    """
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _plain(text: str) -> str:
    return " ".join(words_of(text))


def nearest_answer(transcript: str, candidates: list[str]) -> str:
    """The candidate with the smallest character edit distance to `transcript` (the first one on a tie).

    Both sides are compared as lower-case words without punctuation, so a recogniser's "Yes the
    cake is hot" matches "yes, the cake is hot." exactly.

    >>> nearest_answer("three plus for is seven", answer_candidates("what is three plus four?"))
    'three plus four is seven.'
    """
    if not candidates:
        raise ValueError("nearest_answer needs at least one candidate; pass answer_candidates(question).")
    heard = _plain(transcript)
    distances = [edit_distance(heard, _plain(c)) for c in candidates]
    return candidates[distances.index(min(distances))]


# --- planning dialogues ----------------------------------------------------------------------


def _uniform(rng: random.Random, low_high: tuple[float, float]) -> float:
    return round(rng.uniform(*low_high), 3)  # millisecond resolution keeps metadata readable


def _turn(channel: str, text: str, kind: str, after: list[int], at: str, delay: float) -> dict:
    """A planned turn: it starts `delay` s after the latest `at` ("start" or "end") of the turns `after`."""
    return {"channel": channel, "text": text, "kind": kind, "after": after, "at": at, "delay": delay}


def _plan_one(rng: random.Random, ident: str, split: str, users: list[Speaker]) -> dict:
    user = rng.choice(users)
    system = SPEAKER_BY_NAME[SYSTEM_SPEAKER]
    turns: list[dict] = []
    n_exchanges = 2 if rng.random() < TWO_EXCHANGES_P else 1
    for k in range(n_exchanges):
        question, kind = ask(rng)
        if k == 0:
            turns.append(_turn("user", question, kind, [], "end", _uniform(rng, LEAD_S)))
        else:  # after the previous answer and its backchannel, if any: every turn since the last question
            last_q = max(i for i, t in enumerate(turns) if t["channel"] == "user" and t["kind"] != "backchannel")
            turns.append(_turn("user", question, kind, list(range(last_q + 1, len(turns))), "end",
                               _uniform(rng, PAUSE_S)))
        q = len(turns) - 1
        if rng.random() < OVERLAP_P:
            delay = -_uniform(rng, OVERLAP_S)
        else:
            delay = _uniform(rng, GAP_S)
        turns.append(_turn("system", answer(question), kind, [q], "end", delay))
        if rng.random() < BACKCHANNEL_P:
            turns.append(_turn("user", rng.choice(BACKCHANNELS), "backchannel", [q + 1], "start",
                               _uniform(rng, BACKCHANNEL_DELAY_S)))
    rate = round(espeak_settings(system, STYLE_BY_NAME[SYSTEM_STYLE])["rate"] * rng.uniform(*SYSTEM_RATE_JITTER))
    return {"id": ident, "split": split, "user": user.name, "user_style": rng.choice(STYLES).name,
            "system": SYSTEM_SPEAKER, "system_style": SYSTEM_STYLE, "system_rate": rate, "turns": turns}


def _check_args(n_dialogues: int, n_test: int, seed: int) -> None:
    for name, value, least in (("n_dialogues", n_dialogues, 1), ("n_test", n_test, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name}={value!r}: pass a whole number of dialogues, at least {least}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed={seed!r}: pass an int, e.g. seed=0.")


def plan_dialogues(n_dialogues: int = 2000, n_test: int = 300, seed: int = 0) -> list[dict]:
    """Every dialogue to synthesise, as dicts: id, split, voices, and turns with their timing rules.

    `n_dialogues` dialogues with the corpus' training speakers (10% of them "valid", the rest
    "train"), then `n_test` "test" dialogues with its held-out speakers. A turn's start is not known
    before its audio is, so each planned turn holds a rule instead: it starts `delay` seconds after
    the latest start or end (`at`) of the turns listed in `after` (none: the dialogue's start);
    `schedule` applies the rules once the turns' lengths are known.
    """
    _check_args(n_dialogues, n_test, seed)
    rng = random.Random(seed)
    train_users = [s for s in SPEAKERS if not s.held_out and s.name != SYSTEM_SPEAKER]
    test_users = [s for s in SPEAKERS if s.held_out]
    valid = set(rng.sample(range(n_dialogues), round(VALID_FRACTION * n_dialogues)))
    items = []
    for i in range(n_dialogues + n_test):
        if i >= n_dialogues:
            split, users = "test", test_users
        else:
            split, users = ("valid" if i in valid else "train"), train_users
        items.append(_plan_one(rng, f"{split}-{i:05d}", split, users))
    return items


def schedule(turns: list[dict], lengths: list[int]) -> tuple[list[int], int]:
    """Planned turns and their audio lengths (samples) -> (each turn's start sample, the dialogue's length).

    >>> turns = [{"after": [], "at": "end", "delay": 0.5}, {"after": [0], "at": "end", "delay": -0.1}]
    >>> schedule(turns, [16000, 8000])
    ([8000, 22400], 38400)
    """
    if len(turns) != len(lengths):
        raise ValueError(f"schedule needs one length per turn: got {len(lengths)} lengths for {len(turns)} turns.")
    starts: list[int] = []
    for turn in turns:
        base = max((starts[j] + (lengths[j] if turn["at"] == "end" else 0) for j in turn["after"]), default=0)
        starts.append(max(0, base + round(turn["delay"] * SR)))
    end = max(s + n for s, n in zip(starts, lengths))
    return starts, end + round(TAIL_S * SR)


# --- synthesis -----------------------------------------------------------------------------


def _espeak_part(item: dict, turn: dict) -> dict:
    """The eSpeak job of one turn: the user's voice and style, or the system's voice at the dialogue's rate."""
    if turn["channel"] == "system":
        settings = espeak_settings(SPEAKER_BY_NAME[item["system"]], STYLE_BY_NAME[item["system_style"]])
        settings["rate"] = item["system_rate"]
    else:
        settings = espeak_settings(SPEAKER_BY_NAME[item["user"]], STYLE_BY_NAME[item["user_style"]])
    if turn["text"].endswith("?"):
        return {"text": _build.question_ssml(turn["text"]), "ssml": True, **settings}
    return {"text": turn["text"], **settings}


def _trim_tail(wav22: np.ndarray, sr: int = 22050) -> np.ndarray:
    """eSpeak's int16 output without its trailing silence (a question's SSML adds about 0.35 s), plus a 30 ms pad."""
    loud = np.flatnonzero(np.abs(wav22.astype(np.int32)) > SILENCE_INT16)
    if len(loud) == 0:
        return wav22
    return wav22[: min(len(wav22), int(loud[-1]) + 1 + round(TAIL_PAD_S * sr))]


def _word_spans(words: list, text: str) -> list[tuple[str, float, float]]:
    """`synth_many`'s words of one turn -> (word, start, end), with the "the" that eSpeak merges away split off again.

    eSpeak reads "in the" and "on the" as one word: a single word event for "in", whose phones run
    on into "the" (ɪ n ð ə), so "the cup is in the kitchen." comes back with five spans for six
    words. Such a span is cut where its last "ð" starts, which gives every word of the answer its span.
    """
    expected = words_of(text)
    out: list[tuple[str, float, float]] = []
    for j, (word, start, end, phones) in enumerate(words):
        k = len(out)  # this word's place in the text, when every word before it has its span
        following = words[j + 1][0] if j + 1 < len(words) else None
        merged = expected[k : k + 2] == [word, "the"] and following != "the"
        cuts = [p_start for label, p_start, _ in phones[1:] if label == "ð"]
        if merged and cuts:
            out += [(word, start, cuts[-1]), ("the", cuts[-1], end)]
        else:
            out.append((word, start, end))
    return out


def build_dialogues(out: str | os.PathLike, n_dialogues: int = 2000, n_test: int = 300, seed: int = 0, *,
                    workers: int | None = None, progress: bool = True) -> dict:
    """Build the dialogue set into folder `out` (replaced atomically when complete) and return its manifest.

    Turns are spoken by eSpeak in fresh worker processes, a fixed chunk of dialogues each (as the
    corpus is), so the same arguments give the same bytes.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = Path(out)
    items = plan_dialogues(n_dialogues, n_test, seed)
    chunks = [items[i : i + DIALOGUES_PER_CHUNK] for i in range(0, len(items), DIALOGUES_PER_CHUNK)]
    jobs = [[[_espeak_part(it, turn)] for it in chunk for turn in it["turns"]] for chunk in chunks]
    workers = workers or min(2, os.cpu_count() or 1)
    tmp = _build.scratch(out)
    audio_chunks: list[np.ndarray] = []
    offset = 0
    n_samples = 0
    hasher = hashlib.sha256()
    bar = tqdm(total=len(items), desc="synthesising dialogues", unit="dialogue", disable=not progress)
    with open(tmp / "metadata.jsonl", "w") as meta:
        for chunk, results in zip(chunks, _build.synth_chunks(jobs, workers)):
            results = iter(results)
            for it in chunk:
                index = int(it["id"].split("-")[-1])
                pcms, spans = [], []
                for k in range(len(it["turns"])):
                    wav22, words = next(results)
                    pcm = _build.finish_audio(_trim_tail(wav22), [seed, index, k])
                    pcms.append(pcm)
                    spans.append(_word_spans(words, it["turns"][k]["text"]))
                starts, total = schedule(it["turns"], [len(p) for p in pcms])
                turns = []
                for turn, pcm, start, words in zip(it["turns"], pcms, starts, spans):
                    t0, t1 = start / SR, (start + len(pcm)) / SR
                    turns.append({
                        "channel": turn["channel"], "text": turn["text"], "kind": turn["kind"], "start": t0, "end": t1,
                        "word_spans": [[w, round(min(t0 + s, t1), 4), round(min(t0 + e, t1), 4)] for w, s, e in words],
                        "offset": offset, "length": len(pcm),
                    })
                    offset += len(pcm)
                    hasher.update(pcm.tobytes())
                    audio_chunks.append(pcm)
                rec = {k: v for k, v in it.items() if k != "turns"}
                rec.update(duration=total / SR, turns=turns)
                line = json.dumps(rec, sort_keys=True)
                meta.write(line + "\n")
                hasher.update(line.encode())
                n_samples += total
                bar.update(1)
    bar.close()
    audio = np.concatenate(audio_chunks)
    np.save(tmp / "audio.npy", audio)
    splits = {s: sum(it["split"] == s for it in items) for s in SPLITS}
    manifest = {
        "version": VERSION, "corpus_version": _build.VERSION, "seed": seed, "sr": SR,
        "n_dialogues": n_dialogues, "n_test": n_test, "dialogues": len(items), "splits": splits,
        "turns": sum(len(it["turns"]) for it in items), "system": SYSTEM_SPEAKER,
        "hours": round(n_samples / SR / 3600, 4), "speech_hours": round(len(audio) / SR / 3600, 4),
        "sha256": hasher.hexdigest(),
    }
    return _build.publish(tmp, out, manifest, t_start)


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    channel: str  # "user" (channel 0) | "system" (channel 1)
    text: str  # as spoken: "what colour are the cups?", "the cups are red.", "okay."
    kind: str  # a question's kind (arithmetic | colour | where | yes_no), its answer's too; or "backchannel"
    start: float  # seconds from the dialogue's start
    end: float  # seconds from the dialogue's start
    word_spans: tuple[Span, ...]  # (word, start s, end s), in seconds from the dialogue's start
    offset: int  # first sample in audio.npy
    length: int  # samples at 16 kHz


@dataclass(frozen=True)
class Dialogue:
    id: str  # "train-00042"
    split: str  # train | valid | test
    user: str  # the user's speaker id ("f03")
    user_style: str  # the user's style: neutral | excited | calm
    system: str  # the system's speaker id: always SYSTEM_SPEAKER
    turns: tuple[Turn, ...]  # in order of their start times
    duration: float  # seconds, 0.5 s after the last turn ends
    system_rate: int = 0  # the system's eSpeak rate (words per minute) in this dialogue

    @property
    def exchanges(self) -> list[tuple[Turn, Turn]]:
        """(question, answer) pairs in order; backchannels left out."""
        questions = [t for t in self.turns if t.channel == "user" and t.kind != "backchannel"]
        answers = [t for t in self.turns if t.channel == "system"]
        return list(zip(questions, answers, strict=True))


class DialogueSet:
    """A built dialogue folder: `audio.npy` (int16, memory-mapped), `metadata.jsonl`, `manifest.json`."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root, "dialogue set", "load_dialogues", verify)
        self.sr: int = self.manifest["sr"]
        self._audio = np.load(self.root / "audio.npy", mmap_mode="r")
        self.dialogues: list[Dialogue] = []
        with open(self.root / "metadata.jsonl") as f:
            for line in f:
                r = json.loads(line)
                turns = tuple(Turn(
                    channel=t["channel"], text=t["text"], kind=t["kind"], start=t["start"], end=t["end"],
                    word_spans=tuple(Span(*s) for s in t["word_spans"]), offset=t["offset"], length=t["length"],
                ) for t in r["turns"])
                self.dialogues.append(Dialogue(
                    id=r["id"], split=r["split"], user=r["user"], user_style=r["user_style"], system=r["system"],
                    turns=turns, duration=r["duration"], system_rate=r["system_rate"],
                ))
        self._by_id = {d.id: d for d in self.dialogues}

    def __len__(self) -> int:
        return len(self.dialogues)

    def __getitem__(self, i: int | str) -> Dialogue:
        if isinstance(i, str):
            if i not in self._by_id:
                raise KeyError(f"no dialogue {i!r} here; ids look like {self.dialogues[0].id!r}.")
            return self._by_id[i]
        return self.dialogues[i]

    def __repr__(self) -> str:
        m = self.manifest
        counts = ", ".join(f"{n} {s}" for s, n in m["splits"].items())
        return (f"DialogueSet({len(self)} dialogues ({counts}), {m['hours']:.2f} h, "
                f"system voice {m['system']}, at {self.root})")

    def split(self, name: str) -> list[Dialogue]:
        """Dialogues of one split: train, valid (training speakers) or test (held-out speakers)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        return [d for d in self.dialogues if d.split == name]

    def turn_wav(self, turn: Turn) -> torch.Tensor:
        """One turn's audio: float32 tensor (T,) in [-1, 1] at 16 kHz."""
        import torch

        pcm = np.asarray(self._audio[turn.offset : turn.offset + turn.length], dtype=np.float32)
        return torch.from_numpy(pcm / 32768.0)

    def channels(self, dialogue: Dialogue | int | str) -> torch.Tensor:
        """The dialogue as two channels: float32 (2, T) at 16 kHz, row 0 the user, row 1 the system.

        Each turn is placed at its start time; outside the turns a channel is silent (exact zeros).
        """
        import torch

        if not isinstance(dialogue, Dialogue):
            dialogue = self[dialogue]
        n = round(dialogue.duration * self.sr)
        out = torch.zeros(2, n)  # (2, T)
        for turn in dialogue.turns:
            row = CHANNELS.index(turn.channel)
            s = round(turn.start * self.sr)
            wav = self.turn_wav(turn)[: n - s]
            out[row, s : s + len(wav)] += wav
        return out


def load_dialogues(n_dialogues: int = 2000, n_test: int = 300, seed: int = 0, *, rebuild: bool = False,
                   progress: bool = True) -> DialogueSet:
    """The dialogue set from the cache; built (once, then cached) if missing, corrupted or outdated.

    A file lock makes two notebooks that ask at once build it once; a damaged copy is reported and
    rebuilt, never used. The cache name holds this module's `VERSION` and the corpus builder's (the
    voices and the audio finishing come from it), the sizes and the seed.
    """
    _check_args(n_dialogues, n_test, seed)
    name = f"dialogues-v{VERSION}-c{_build.VERSION}-n{n_dialogues}-t{n_test}-s{seed}"
    root = cache_dir() / name
    with lock(root):
        if root.exists() and not rebuild:
            try:
                return DialogueSet(root)
            except (CorpusError, json.JSONDecodeError, KeyError, ValueError, TypeError) as err:
                print(f"cache: {root.name} is damaged ({err}); rebuilding it")
                shutil.rmtree(root, ignore_errors=True)
        print(f"Building the dialogues into {root} (about a minute or two, once; cached afterwards)")
        build_dialogues(root, n_dialogues, n_test, seed, progress=progress)
        return DialogueSet(root)
