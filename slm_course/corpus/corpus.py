"""The corpus as a Python object: utterances with labels and alignments, audio on demand (notebook 00).

Usage::

    corpus = load_corpus()                       # builds into the cache on first use, once
    utt = corpus.split("test")[0]
    wav = corpus.wav(utt)                        # float32 tensor at 16 kHz
    utt.text, utt.speaker, utt.style, utt.word_spans[0]
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slm_course.corpus import builder as _build
from slm_course.corpus.voices import SPEAKER_BY_NAME, SPEAKERS, STYLES, Speaker
from slm_course.runtime import cache_dir, file_sha256, lock
from slm_course.tts import Span

SPLITS = ("train", "valid", "test", *(f"eval_{s}" for s in _build.EVAL_SETS))


def corpus_version(corpus: Corpus | None = None) -> int:
    """The corpus recipe's version, for cache names: ``corpus``'s own (its manifest), else the builder's current one."""
    return _build.VERSION if corpus is None else int(corpus.manifest.get("version", 0))


class CorpusError(RuntimeError):
    """The corpus folder is missing, incomplete or corrupted."""


@dataclass(frozen=True)
class Utterance:
    id: str  # "train-00042"
    text: str  # as spoken, with punctuation: "does the cook cut the cake?"
    words: tuple[str, ...]  # lower-case words without punctuation
    phonemes: str  # IPA phones separated by spaces, from eSpeak
    speaker: str  # speaker id (for a switched acoustic pair: the first part's speaker)
    gender: str  # "male" | "female"
    style: str  # "neutral" | "excited" | "calm"
    question: bool  # said with question intonation (the text ends in "?")
    duration: float  # seconds
    split: str  # train | valid | test | eval_lexical | eval_syntactic | eval_story | eval_acoustic
    kind: str  # statement, story, short, yes_no, wh_question, declarative_question, arithmetic, copula
    topic: str | None  # kitchen | farm | school | sea | park, where the sentence has one
    word_spans: tuple[Span, ...]  # (word, start s, end s) from eSpeak's word events
    phone_spans: tuple[Span, ...]  # (phone, start s, end s) from eSpeak's phoneme events
    pair: int | None = None  # evaluation sets: the pair this utterance belongs to
    good: bool | None = None  # evaluation sets: the real / grammatical / fitting / consistent member
    variant: str | None = None  # evaluation sets: nonword, agreement, word_order, topic, speaker_switch, style_switch
    offset: int = 0  # first sample in audio.npy
    length: int = 0  # samples


def read_manifest(root: Path, what: str, loader: str, verify: bool = True) -> dict:
    """A built folder's ``manifest.json``; with ``verify``, every file's SHA-256 checked against it.

    ``what`` names the folder's kind and ``loader`` the function that rebuilds it, for the error messages.
    """
    path = root / "manifest.json"
    if not path.exists():
        raise CorpusError(f"{root} holds no {what} (no manifest.json). Build one with `{loader}()`.")
    manifest = json.loads(path.read_text())
    if verify:
        for name, digest in manifest["files"].items():
            file = root / name
            if not file.exists() or file_sha256(file) != digest:
                raise CorpusError(f"{file} is missing or corrupted (its SHA-256 does not match manifest.json); "
                                  f"delete the folder and rebuild it ({loader}(rebuild=True)).")
    return manifest


class Corpus:
    """A built corpus folder: `audio.npy` (int16, memory-mapped), `metadata.jsonl`, `manifest.json`."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root, "corpus", "load_corpus", verify)
        self.sr: int = self.manifest["sr"]
        self._audio = np.load(self.root / "audio.npy", mmap_mode="r")
        self.utterances: list[Utterance] = []
        with open(self.root / "metadata.jsonl") as f:
            for line in f:
                r = json.loads(line)
                self.utterances.append(Utterance(
                    id=r["id"], text=r["text"], words=tuple(r["words"]), phonemes=r["phonemes"],
                    speaker=r["speaker"], gender=r["gender"], style=r["style"], question=r["question"],
                    duration=r["duration"], split=r["split"], kind=r["kind"], topic=r["topic"],
                    word_spans=tuple(Span(*s) for s in r["word_spans"]),
                    phone_spans=tuple(Span(*s) for s in r["phone_spans"]),
                    pair=r.get("pair"), good=r.get("good"), variant=r.get("variant"),
                    offset=r["offset"], length=r["length"],
                ))
        self._by_id = {u.id: u for u in self.utterances}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int | str) -> Utterance:
        return self._by_id[i] if isinstance(i, str) else self.utterances[i]

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Corpus({len(self)} utterances, {m['hours']:.2f} h, {m['speakers']} speakers "
                f"({m['held_out_speakers']} held out), {m['styles']} styles, at {self.root})")

    @property
    def speakers(self) -> tuple[Speaker, ...]:
        return SPEAKERS

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(s.name for s in STYLES)

    def wav(self, utt: Utterance | int | str) -> torch.Tensor:
        """The utterance's audio: float32 tensor (T,) in [-1, 1] at `self.sr`."""
        if not isinstance(utt, Utterance):
            utt = self[utt]
        pcm = np.asarray(self._audio[utt.offset : utt.offset + utt.length], dtype=np.float32)
        return torch.from_numpy(pcm / 32768.0)

    def split(self, name: str) -> list[Utterance]:
        """Utterances of one split: train, valid, test or eval_{lexical,syntactic,story,acoustic}."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        return [u for u in self.utterances if u.split == name]

    def pairs(self, set_name: str) -> list[tuple[Utterance, Utterance]]:
        """(good, bad) pairs of an evaluation set: lexical, syntactic, story or acoustic ("eval_lexical" works too)."""
        set_name = set_name.removeprefix("eval_")
        if set_name not in _build.EVAL_SETS:
            raise ValueError(f"unknown evaluation set {set_name!r}; choose one of {', '.join(_build.EVAL_SETS)}.")
        by_pair: dict[int, dict[bool, Utterance]] = {}
        for u in self.split(f"eval_{set_name}"):
            by_pair.setdefault(u.pair, {})[u.good] = u
        return [(p[True], p[False]) for _, p in sorted(by_pair.items())]

    def gender_of(self, speaker: str) -> str:
        return SPEAKER_BY_NAME[speaker].gender


def load_corpus(n_utterances: int = _build.DEFAULT_UTTERANCES, seed: int = 0, rebuild: bool = False,
                progress: bool = True, pairs_per_set: int = _build.PAIRS_PER_SET) -> Corpus:
    """The course corpus from the cache; built (once, then cached) if missing, corrupted or outdated.

    A file lock makes two notebooks that ask at once build it once; a damaged copy is reported and
    rebuilt, never used.
    """
    name = f"corpus-v{_build.VERSION}-n{n_utterances}-s{seed}"
    if pairs_per_set != _build.PAIRS_PER_SET:
        name += f"-p{pairs_per_set}"
    root = cache_dir() / name
    with lock(root):
        if root.exists() and not rebuild:
            try:
                return Corpus(root)
            except (CorpusError, json.JSONDecodeError, KeyError, ValueError) as err:
                print(f"cache: {root.name} is damaged ({err}); rebuilding it")
                shutil.rmtree(root, ignore_errors=True)
        print(f"Building the corpus into {root} (about a minute, once; it is cached afterwards)")
        _build.build(root, n_utterances=n_utterances, seed=seed, progress=progress, pairs_per_set=pairs_per_set)
        return Corpus(root)
