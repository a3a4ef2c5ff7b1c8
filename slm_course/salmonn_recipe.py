"""Notebook 09's recipe: instruction data from the corpus, training and measuring a speech-aware text LM.

- :func:`encode_speech`: the frozen ears. Each 33 Hz frame is notebook 01's recognizer's convolution
  output and GRU state (much about the words), next to the voice's pitch (:func:`pitch_frames`), as
  SALMONN puts Whisper's frames next to BEATs'.
- :data:`TASKS` and :data:`PROMPTS`: what a user may ask about an utterance, several phrasings per
  task in three families; the ``could`` family is never trained on. The ``continue`` task (go on
  with the story) and the combination "transcribe, then say whether it was a question" are never
  trained on either: they measure task over-fitting.
- :class:`Prompter`: an example as a token row, ``<bos> <audio> [slots] </audio> prompt [summary]
  <reply> answer <eos>``, with the loss on the answer only.
- :func:`load_salmonn_data` gives the encoder frames of the train and test utterances;
  :func:`train_salmonn` / :func:`load_salmonn` train an adapter, LoRA and the new tokens on a mix
  dominated by transcription; :func:`evaluate` scores each task and family of phrasing.
- :func:`activation_examples` and :func:`activation_tune`: SALMONN's remedy for task over-fitting, a
  few steps of LoRA on long answers that the model writes itself with its LoRA damped, beside
  :func:`rehearsal` rows (its own answers on :func:`unheard_utterances`) that keep what it does.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from slm_course.lm import IGNORE
from slm_course.runtime import artifact_record, cached, digest
from slm_course.salmonn import AUDIO, SUMMARY, PoolAdapter, SpeechAwareLM, WindowQFormer, add_lora, frozen_digest

__all__ = ["ACTIVATION", "ACTIVATION_REHEARSED", "ACTIVATION_SALMONN", "COMPARED_AT", "CONTEXT", "PROMPTS", "TASKS",
           "UNTRAINED", "VARIANTS", "Batches", "Prompter", "SalmonnConfig", "activation_examples", "activation_tune",
           "answer_of", "answers", "build_model", "collate", "encode_speech", "evaluate", "follows_continue",
           "on_topic", "pitch_frames", "load_activated", "load_salmonn", "load_salmonn_data", "rehearsal",
           "train_salmonn", "unheard_utterances"]

RECIPE = 4  # bump when the data or training changes in a way the configs do not show

TASKS = ("transcribe", "gender", "style", "question", "topic", "arithmetic")  # trained
UNTRAINED = ("continue", "transcribe_question")  # never trained on: over-fitting shows here

# Three families of phrasing per task. "tell" and "ask" are trained; "could" is held out, each of its
# phrasings sharing a key word with the task's trained ones (a character LM knows no synonyms). The text LM
# writes 27 characters (no "j", no punctuation): every prompt is spelled with them. No prompt names its
# task's answers ("male or female"): the frozen LM copies words it has just read, and a prompt that
# offers the answers drowns out what the audio says.
PROMPTS: dict[str, dict[str, tuple[str, ...]]] = {
    "transcribe": {"tell": ("transcribe the speech", "write down the words", "please write what is said"),
                   "ask": ("what words are said", "what does it say", "which words do you hear"),
                   "could": ("could you write out what is said",)},
    "gender": {"tell": ("name the speaker", "tell me who is talking", "please describe the speaker"),
               "ask": ("who is speaking", "who is the speaker", "who says this"),
               "could": ("could you tell who the speaker is",)},
    "style": {"tell": ("describe the tone", "name the style", "please say how it sounds"),
              "ask": ("how does it sound", "what is the mood", "what tone is it"),
              "could": ("could you describe how it sounds",)},
    "question": {"tell": ("name the kind of sentence", "say if it is asked or told", "please tell if it is asked"),
                 "ask": ("is it asked or told", "what kind of sentence is it", "was it asked"),
                 "could": ("could you tell if it was asked",)},
    "topic": {"tell": ("name the topic", "say what it is about", "please give the topic"),
              "ask": ("what is it about", "which topic is this", "what topic is it"),
              "could": ("could you say what it is about",)},
    "arithmetic": {"tell": ("work out the sum", "give the answer", "please solve the sum"),
                   "ask": ("what is the answer", "how much is it", "what does the sum give"),
                   "could": ("could you work out the answer",)},
    "continue": {"tell": ("continue the story", "go on with the story", "please tell what happens next"),
                 "ask": ("what happens next", "how does the story go on", "what comes next"),
                 "could": ("could you continue the story",)},
    "transcribe_question": {"tell": ("write it down then say if it is asked",),
                            "ask": ("what words are said and is it asked",),
                            "could": ("could you write out what is said and if it was asked",)},
}
SEEN_FAMILIES = ("tell", "ask")
HELD_OUT_FAMILY = "could"
NEW_TOKENS = ("<audio>", "</audio>", "<reply>") + tuple(f"<|{t}|>" for t in TASKS + UNTRAINED)
CONTEXT = 128  # positions the text LM was trained on (TextLMConfig.context): the rows' limit
# notebook 09's activation tuning: examples written at LoRA x `scale` on every
# utterance the model never heard (`examples_from`: the valid split and `unheard` of the second corpus draw, those
# of `max_frames` encoder frames or fewer), none with a word that starts as "female" or "male" does (`avoid`);
# `steps` steps of `per_step` of them drawn anew, beside `replay` rows of the training mix and `rehearse` rows of
# the model's own answers on the unheard utterances (`rehearse_tasks`: transcripts counted twice, the four labels),
# drawn in proportion to their length squared (`by_length`), each learning the model's whole distribution before
# tuning at its answer positions (`soft`)
ACTIVATION = {"n": None, "scale": 0.4, "examples_from": "unheard", "candidates": None, "max_frames": 140,
              "avoid": "fm", "per_step": 48, "steps": 48, "lr": 1e-3, "replay": 64, "rehearse": 512,
              "rehearse_tasks": ("transcribe", "transcribe", "gender", "style", "question", "topic"),
              "by_length": True, "soft": True, "unheard": 1000, "parts": 16}
# SALMONN's 12 examples, written at LoRA x 0.6 on training utterances (SALMONN tuned 12 steps on them alone; here
# all 12 are in each of 48 small steps, beside 64 rows of the training mix)
ACTIVATION_SALMONN = {"n": 12, "scale": 0.6, "steps": 48, "lr": 1e-3, "replay": 64}
# an activation tuning that rehearses transcripts only (compared in results/09_salmonn.md): n examples written at LoRA x scale
# from `candidates` training utterances of `max_frames` encoder frames or fewer, `steps` steps of them beside
# `replay` rows of the training mix and `rehearse` rows of the model's own transcripts of utterances it never heard
# (the valid split and `unheard` of the second corpus draw): load_activated(activation=ACTIVATION_REHEARSED)
ACTIVATION_REHEARSED = {"n": 80, "scale": 0.4, "candidates": 1500, "max_frames": 140, "steps": 48, "lr": 1e-3,
                        "replay": 64, "rehearse": 384, "unheard": 1000, "parts": 16}
ACTIVATION_RECIPE = 2  # bump when the choice of activation examples changes (the trained variants stay cached)
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")


def arithmetic_answer(words: Sequence[str]) -> str | None:
    """The result of a spoken sum: ``("what", "is", "two", "plus", "three")`` -> ``"five"``; None if there is none."""
    for i, w in enumerate(words):
        if w in ("plus", "minus") and 0 < i < len(words) - 1 and words[i - 1] in NUMBERS and words[i + 1] in NUMBERS:
            a, b = NUMBERS.index(words[i - 1]), NUMBERS.index(words[i + 1])
            c = a + b if w == "plus" else a - b
            return NUMBERS[c] if 0 <= c < len(NUMBERS) else None
    return None


def answer_of(utt, task: str) -> str | None:
    """The checkable answer of ``task`` for a corpus utterance (or one stored by :func:`load_salmonn_data`, a dict),
    or None when the task does not apply to it.

    A label's two answers differ in their first character ("male"/"female", "question"/"statement"): the
    decision is then the first token the LM writes, with the audio right before it. Behind a shared opening
    ("a man"/"a woman") it falls on a later character, after tokens the LM gets right for free, and some
    trainings never learn it."""
    utt = _Utt(utt) if isinstance(utt, dict) else utt
    words = tuple(utt.words)
    if task == "transcribe":
        return " ".join(words)
    if task == "gender":
        return utt.gender  # "male" / "female"
    if task == "style":
        return utt.style
    if task == "question":
        return "question" if utt.question else "statement"
    if task == "topic":
        return utt.topic
    if task == "arithmetic":
        return arithmetic_answer(words) if utt.kind == "arithmetic" else None
    if task == "transcribe_question":
        return " ".join(words) + (" question" if utt.question else " statement")
    if task == "continue":
        return None  # open-ended: judged by :func:`follows`, not by an answer
    raise ValueError(f"unknown task {task!r}; the tasks are {TASKS + UNTRAINED}")


class Prompter:
    """Token rows for the speech-aware LM: the text LM's characters, then the new tokens (:data:`NEW_TOKENS`)."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        V = tokenizer.vocab_size
        self.new = {name: V + i for i, name in enumerate(NEW_TOKENS)}

    def row(self, n_audio: int, prompt: str, answer: str | None = None, tag: str | None = None,
            n_summary: int = 0) -> tuple[list[int], list[int]]:
        """``(ids, targets)``; the prompt is text, or a task tag (Qwen-Audio style) when ``tag`` is given.

        Without ``answer`` the row ends at ``<reply>``, where generation starts.
        """
        audio = [self.new["<audio>"]] + [AUDIO] * n_audio + [self.new["</audio>"]]
        ask = [self.new[f"<|{tag}|>"]] if tag is not None else self.tok.encode(prompt)
        # SALMONN's order, the request just before the reply; then the utterance's summary, where the small
        # LM's attention, which mostly looks a few characters back, reads it first
        ids = [self.tok.bos_id] + audio + ask + [SUMMARY] * n_summary + [self.new["<reply>"]]
        if answer is None:
            return ids, [IGNORE] * len(ids)
        out = self.tok.encode(answer) + [self.tok.eos_id]
        targets = [IGNORE] * (len(ids) - 1) + out + [IGNORE]
        return ids + out, targets

    def text(self, ids: Sequence[int]) -> str:
        """The characters of a row (audio slots and new tokens left out)."""
        return self.tok.decode([i for i in ids if 0 <= i < self.tok.vocab_size])


# ---------------------------------------------------------------------------------------------
# The frozen ears
# ---------------------------------------------------------------------------------------------

def pitch_frames(wav: torch.Tensor, n: int, hop: int = 3) -> torch.Tensor:
    """``(n, 2)``: for each encoder frame (``hop`` pitch frames of 10 ms), the voiced share and the voice's log2 F0.

    The F0 channel holds the frame's mean voiced log2 F0, or the utterance's median where the frame is
    unvoiced, so that every frame says how high the voice is.
    """
    import numpy as np

    from slm_course.expressive import log_f0

    lf0 = log_f0(wav)
    lf0 = np.pad(lf0, (0, max(0, n * hop - len(lf0))), constant_values=np.nan)[: n * hop].reshape(n, hop)
    voiced = ~np.isnan(lf0)
    median = float(np.nanmedian(lf0)) if voiced.any() else 0.0
    sums = np.where(voiced, lf0, 0.0).sum(1)
    level = np.where(voiced.any(1), sums / np.maximum(voiced.sum(1), 1), median)
    return torch.tensor(np.stack([voiced.mean(1), level], 1), dtype=torch.float32)


@torch.no_grad()
def encode_speech(asr, wavs: Sequence[torch.Tensor], batch_size: int = 32, progress: bool = False
                  ) -> list[torch.Tensor]:
    """Each waveform's encoder frames ``(T', C + 2H + 2)`` at 33 Hz: the recognizer's conv output, its GRU states
    and the voice's pitch (:func:`pitch_frames`).

    Two ears, as SALMONN pairs Whisper with BEATs: the recognizer was trained to write words whoever
    speaks (its input is normalised per utterance), so what it keeps of the voice is partial; the pitch
    tracker hears how high the voice is, which is most of what tells a man from a woman.
    """
    from tqdm.auto import tqdm

    from slm_course.asr import asr_features, pad_features

    asr.eval()
    out: list[torch.Tensor] = []
    for i in tqdm(range(0, len(wavs), batch_size), desc="encoding speech", disable=not progress):
        chunk = wavs[i : i + batch_size]
        x, lengths = pad_features([asr_features(w) for w in chunk])
        conv, states, n = asr.encode(x, lengths)
        both = torch.cat([conv, states], -1)
        out += [torch.cat([both[b, : int(n[b])], pitch_frames(w, int(n[b]))], -1) for b, w in enumerate(chunk)]
    return out


_FRAMES: dict = {}  # (data key, split) -> raw encoder frames, kept for the life of the process


def load_salmonn_data(splits: Sequence[str] = ("train", "test"), *, limit: int | None = None, corpus=None,
                      rebuild: bool = False, progress: bool = True) -> dict:
    """The encoder frames of each split's utterances and what the tasks need to know of each utterance.

    Frames are standardised (each feature to zero mean and unit variance) with the training frames'
    ``mean`` and ``std``, which are cached. The frames themselves are computed now, once per process
    (about 2 s per 100 utterances): cached, they would take a few hundred MB. ``limit``: only the first
    ``limit`` utterances of each split (a notebook that needs a few).
    """
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import corpus_version, load_corpus

    if isinstance(splits, str) or not set(splits) <= {"train", "valid", "test"}:
        raise ValueError(f"splits must be a list drawn from 'train', 'valid', 'test', got {splits!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int (utterances per split) or None for all, got {limit!r}")
    asr = load_asr(corpus=corpus, progress=progress)  # the default corpus's recognizer when corpus is None
    corpus = corpus if corpus is not None else load_corpus()
    key = f"salmonn-norm-r{RECIPE}-c{corpus_version(corpus)}-{digest(next(iter(asr.state_dict().values())))}"

    def frames_of(split: str, n: int | None = None) -> list[torch.Tensor]:
        if (key, split) in _FRAMES:  # all of the split, computed before
            return _FRAMES[key, split][:n]
        if n is not None:  # the first n only, not kept
            return [f.half() for f in encode_speech(asr, [corpus.wav(u) for u in corpus.split(split)[:n]],
                                                    progress=progress)]
        wavs = [corpus.wav(u) for u in corpus.split(split)]
        _FRAMES[key, split] = [f.half() for f in encode_speech(asr, wavs, progress=progress)]
        return _FRAMES[key, split]

    def build() -> dict:
        every = torch.cat([f.float() for f in frames_of("train")])
        return {"mean": every.mean(0), "std": every.std(0).clamp(min=1e-3)}

    norm = cached(key, build, rebuild=rebuild)
    data: dict = dict(norm)
    for split in splits:
        utts = corpus.split(split)[:limit]
        data[split] = {"frames": [((f.float() - norm["mean"]) / norm["std"]) for f in frames_of(split, limit)],
                       "utts": [_record(u) for u in utts]}
    return data


def _record(u) -> dict:
    """What the tasks need to know of a corpus utterance, as :func:`load_salmonn_data` keeps it."""
    return {"id": u.id, "words": list(u.words), "speaker": u.speaker, "gender": u.gender, "style": u.style,
            "question": u.question, "kind": u.kind, "topic": u.topic}


class _Utt:
    """A stored utterance's fields as attributes (what :func:`answer_of` reads)."""

    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

@artifact_record
@dataclass(frozen=True)
class SalmonnConfig:
    adapter: str = "pool"  # "pool" (Qwen-Audio: mean of `stride` frames) or "qformer" (SALMONN: learned queries per window)
    prompts: str = "free"  # "free" (natural-language prompts) or "tags" (one task tag per task, Qwen-Audio style)
    window: int = 4  # Q-Former: frames per window (4 frames = 0.12 s)
    n_queries: int = 1  # Q-Former: queries per window
    stride: int = 2  # pooling: frames per LM position
    n_global: int = 1  # vectors for the whole utterance before the windows' (who speaks, how)
    dropout: float = 0.0  # on the encoder's features, while training
    lora_rank: int = 16
    lora_alpha: float = 16.0
    # the LM's linear layers that get LoRA: attention and the MLPs (attention alone learns far less in these steps)
    lora_targets: tuple[str, ...] = ("qkv", "proj", "mlp.0", "mlp.2")
    mix: tuple[tuple[str, float], ...] = (("transcribe", 0.5), ("gender", 0.1), ("style", 0.1), ("question", 0.1),
                                          ("topic", 0.1), ("arithmetic", 0.1))
    max_len: int = CONTEXT  # the text LM was trained on 128 positions: longer rows are left out
    steps: int = 3000
    # end after this many steps of the mix, the learning rate still on the schedule of `steps`: the longer run's
    # model at that step (how the variants are compared, at a third of the cost)
    stop_at: int | None = None
    pretrain_steps: int = 0  # steps on transcription alone before the mix (SALMONN's first stage)
    batch_size: int = 32
    parts: int = 4  # each batch is cut by row length into parts padded apart: the same gradient, less padding
    lr: float = 4e-3
    warmup_steps: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.adapter not in ("pool", "qformer"):
            raise ValueError(f"adapter must be 'pool' or 'qformer', got {self.adapter!r}")
        if self.prompts not in ("free", "tags"):
            raise ValueError(f"prompts must be 'free' or 'tags', got {self.prompts!r}")
        for name in ("steps", "batch_size", "parts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SalmonnConfig.{name} must be a positive int, got {value!r}")
        if self.stop_at is not None and (isinstance(self.stop_at, bool) or not isinstance(self.stop_at, int)
                                         or not 1 <= self.stop_at <= self.steps):
            raise ValueError(f"SalmonnConfig.stop_at must be None (train all {self.steps} steps) or an int from 1 "
                             f"to steps={self.steps}, got {self.stop_at!r}")


def make_adapter(cfg: SalmonnConfig, d_in: int, d_lm: int):
    if cfg.adapter == "qformer":
        return WindowQFormer(d_in, d_lm, window=cfg.window, n_queries=cfg.n_queries, n_global=cfg.n_global,
                             dropout=cfg.dropout)
    if cfg.adapter == "pool":
        return PoolAdapter(d_in, d_lm, stride=cfg.stride, n_global=cfg.n_global, dropout=cfg.dropout)
    raise ValueError(f"adapter must be 'qformer' or 'pool', got {cfg.adapter!r}")


def build_model(cfg: SalmonnConfig, text_lm, d_in: int) -> SpeechAwareLM:
    """The frozen text LM with LoRA, the adapter and the new token rows (a copy: ``text_lm`` is left as it is)."""
    lm = add_lora(copy.deepcopy(text_lm.model), rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets)
    return SpeechAwareLM(lm, make_adapter(cfg, d_in, lm.cfg.d_model), len(NEW_TOKENS))


class Batches:
    """``step -> batch``: each example a task drawn from the mix, then an utterance it applies to and a trained
    phrasing. A label row ("male") is short and a transcript's long, so one batch padded to its longest row
    would be much padding: the batch is cut by row length into ``cfg.parts`` parts (``{"parts": [...]}``), each
    padded to its own longest row. :class:`~slm_course.salmonn.SpeechAwareLM` gives such a batch the loss of the
    whole (each example weighing the same), so the gradient is that of one batch, for fewer positions.
    """

    def __init__(self, data: dict, prompter: Prompter, model: SpeechAwareLM, cfg: SalmonnConfig) -> None:
        self.frames, self.prompter, self.cfg = data["frames"], prompter, cfg
        utts = [_Utt(u) for u in data["utts"]]
        n_audio = model.adapter.out_lengths(torch.tensor([len(f) for f in self.frames])).tolist()
        self.pool: dict[str, list[tuple[int, str]]] = {}
        for task, _ in cfg.mix:
            rows = []
            longest = 1 if cfg.prompts == "tags" else max(len(p) for f in SEEN_FAMILIES for p in PROMPTS[task][f])
            for i, u in enumerate(utts):
                ans = answer_of(u, task)
                if ans is not None and n_audio[i] + longest + len(ans) + cfg.n_global + 6 <= cfg.max_len:
                    rows.append((i, ans))
            if not rows:
                raise ValueError(f"no training utterance has an answer for task {task!r} that fits {cfg.max_len} "
                                 "positions: take it out of the mix")
            self.pool[task] = rows
        self.n_audio = n_audio
        self.tasks = [t for t, _ in cfg.mix]
        self.weights = [w for _, w in cfg.mix]

    def example(self, rng: random.Random) -> tuple[int, list[int], list[int]]:
        task = rng.choices(self.tasks, self.weights)[0]
        i, ans = rng.choice(self.pool[task])
        fam = rng.choice(SEEN_FAMILIES)
        prompt = rng.choice(PROMPTS[task][fam])
        ids, targets = self.prompter.row(self.n_audio[i], prompt, ans, tag=task if self.cfg.prompts == "tags" else None,
                                         n_summary=self.cfg.n_global)
        return i, ids, targets

    def collate(self, examples) -> dict:
        return collate([self.frames[i] for i, _, _ in examples], [e[1] for e in examples], [e[2] for e in examples])

    def __call__(self, step: int) -> dict:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1 (train() counts from 1), got {step!r}")
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        return in_parts([self.example(rng) for _ in range(self.cfg.batch_size)], self.cfg.parts, self.collate)


def in_parts(rows: Sequence, parts: int, pad) -> dict:
    """``pad(rows)``, one padded batch, when ``parts`` is 1; else the same rows sorted by row length (``row[1]``,
    the token ids) and cut into ``parts`` batches, each padded to its own longest row only: the same loss, less
    padding (:meth:`~slm_course.salmonn.SpeechAwareLM.forward` takes ``{"parts": [...]}``)."""
    if parts == 1:
        return pad(rows)
    rows = sorted(rows, key=lambda r: len(r[1]))
    size = -(-len(rows) // parts)
    return {"parts": [pad(rows[j : j + size]) for j in range(0, len(rows), size)]}


def collate(frames: Sequence[torch.Tensor], ids: Sequence[list[int]], targets: Sequence[list[int]],
            soft: Sequence[torch.Tensor | None] | None = None) -> dict:
    """Pad frames (zeros) and rows (``<eos>`` = 2, never a target) into one batch; ``soft``: each row's soft
    targets or None (:meth:`~slm_course.salmonn.SpeechAwareLM.example_losses`)."""
    B, T, L = len(frames), max(len(f) for f in frames), max(len(r) for r in ids)
    feats = torch.zeros(B, T, frames[0].shape[1])
    tokens = torch.full((B, L), 2, dtype=torch.long)
    tgt = torch.full((B, L), IGNORE, dtype=torch.long)
    for b, (f, r, t) in enumerate(zip(frames, ids, targets)):
        feats[b, : len(f)] = f.float()
        tokens[b, : len(r)] = torch.tensor(r)
        tgt[b, : len(t)] = torch.tensor(t)
    batch = {"feats": feats, "feat_lengths": torch.tensor([len(f) for f in frames]), "tokens": tokens, "targets": tgt}
    return batch if soft is None else {**batch, "soft": list(soft)}


def train_salmonn(data: dict, text_lm, cfg: SalmonnConfig = SalmonnConfig(), progress: bool = True):
    """Train the adapter, LoRA and the new tokens on the training utterances; the text LM's weights stay as they were."""
    model, history, _ = _train(data, text_lm, cfg, progress)
    return model, history


def _train(data: dict, text_lm, cfg: SalmonnConfig, progress: bool, snapshot_at: int | None = None):
    """:func:`train_salmonn`, and the trained state at step ``snapshot_at`` of the mix with the seconds it took to
    get there (``None`` without ``snapshot_at``): what ``dataclasses.replace(cfg, stop_at=snapshot_at)`` trains."""
    import time

    from slm_course.train import TrainConfig, train

    torch.manual_seed(cfg.seed)
    d_in = data["train"]["frames"][0].shape[1]
    model = build_model(cfg, text_lm, d_in)
    before = frozen_digest(model.lm)
    prompter = Prompter(text_lm.tokenizer)
    history, snapshot = None, None
    t0 = time.perf_counter()

    def take(m) -> dict:
        nonlocal snapshot
        if snapshot is None:  # the first call, at step snapshot_at (the evaluations after it are not needed)
            snapshot = {"state": copy.deepcopy(trained_state(m)), "seconds": time.perf_counter() - t0}
        return {}

    # SALMONN's first stage (there: speech recognition and audio captioning) is transcription alone
    stages = [(dataclasses.replace(cfg, mix=(("transcribe", 1.0),)), cfg.pretrain_steps, "stage 1", None),
              (cfg, cfg.steps, "", cfg.stop_at)]
    for stage_cfg, steps, name, stop_at in stages:
        if steps == 0:
            continue
        last = name == ""
        h = train(model, Batches(data["train"], prompter, model, stage_cfg),
                  TrainConfig(steps=steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                              eval_every=snapshot_at if last and snapshot_at else 0, seed=cfg.seed,
                              progress=progress, desc=f"salmonn ({cfg.adapter}, {cfg.prompts}) {name}".rstrip()),
                  evaluate=take if last and snapshot_at else None, stop_at=stop_at)
        if history is None:
            history = h
        else:  # one history for both stages
            history.step += [history.step[-1] + k for k in h.step]
            history.loss += h.loss
            history.lr += h.lr
            history.grad_norm += h.grad_norm
            history.seconds += h.seconds
    if frozen_digest(model.lm) != before:
        raise RuntimeError("the text LM's weights changed during training: they must stay frozen")
    return model.eval(), history, snapshot


def trained_state(model: SpeechAwareLM) -> dict:
    """Only what training changed: the adapter, the LoRA matrices and the new token rows."""
    return {k: v for k, v in model.state_dict().items() if "lora_" in k or not k.startswith("lm.")}


COMPARED_AT = 1000  # the step of the 3,000-step schedule at which the adapters and the prompt forms are compared
VARIANTS = {
    "pool": SalmonnConfig(),  # the main model, Qwen-Audio's: pooling by 2, natural-language prompts
    # the comparisons, each run cut at step COMPARED_AT of the same schedule (the main run's state there for pooling)
    f"pool@{COMPARED_AT}": SalmonnConfig(stop_at=COMPARED_AT),
    f"qformer@{COMPARED_AT}": SalmonnConfig(adapter="qformer", stop_at=COMPARED_AT),  # SALMONN's window Q-Former
    f"tags@{COMPARED_AT}": SalmonnConfig(prompts="tags", stop_at=COMPARED_AT),  # one task tag per task (Qwen-Audio)
}


def load_salmonn(variant: str = "pool", config: SalmonnConfig | None = None, *, data: dict | None = None,
                 corpus=None, rebuild: bool = False, progress: bool = True) -> SpeechAwareLM:
    """A trained variant (see :data:`VARIANTS`), from the cache or trained now.

    ``config``: a :class:`SalmonnConfig` of your own, trained in place of ``variant``'s, which is then not read.
    The cache holds only what training changed (the adapter, LoRA and the new token rows, about
    1.5 MB); the frozen text LM comes from its own cache and is checked to be the one trained with.
    ``data``: what :func:`load_salmonn_data` returned, if you have it.
    """
    from slm_course.corpus import corpus_version
    from slm_course.textlm import load_text_lm
    from slm_course.train import model_record

    if config is None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)} or pass a SalmonnConfig")
    cfg = config if config is not None else VARIANTS[variant]
    text_lm = load_text_lm(progress=progress)
    lm_key = frozen_digest(text_lm.model)

    def key_of(c: SalmonnConfig) -> str:
        return f"salmonn-r{RECIPE}-c{corpus_version(corpus)}-{lm_key[:10]}-{digest(c)}"

    def record_of(model, c: SalmonnConfig, history: dict, seconds: float, state: dict) -> dict:
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        record = model_record(model, c, history, {"params_trained": trained, "params_frozen": frozen,
                                                  "train_seconds": seconds}, text_lm=lm_key)
        record["state_dict"] = state
        return record

    def build() -> dict:
        train_data = data if data is not None and "train" in data else load_salmonn_data(corpus=corpus,
                                                                                          progress=progress)
        # a full run keeps its state at COMPARED_AT too: the same as a run cut there, cached as that (no cost)
        at = COMPARED_AT if cfg.stop_at is None and COMPARED_AT < cfg.steps else None
        model, history, snap = _train(train_data, text_lm, cfg, progress, snapshot_at=at)
        if snap is not None:
            short = dataclasses.replace(cfg, stop_at=at)
            n = cfg.pretrain_steps + at
            cut = {"loss": history.loss[:n], "seconds": snap["seconds"]}
            cached(key_of(short), lambda: record_of(model, short, cut, snap["seconds"], snap["state"]))
        return record_of(model, cfg, history.summary(), history.seconds, trained_state(model))

    record = cached(key_of(cfg), build, rebuild=rebuild)
    if record["text_lm"] != lm_key:
        raise RuntimeError("the cached speech-aware LM was trained on another text LM; load it with rebuild=True")
    d_in = record["state_dict"]["adapter.inp.0.weight" if cfg.adapter == "qformer" else "adapter.norm.weight"].shape[-1]
    model = build_model(record["config"], text_lm, d_in)
    missing, unexpected = model.load_state_dict(record["state_dict"], strict=False)
    if unexpected or any("lora_" in k or not k.startswith("lm.") for k in missing):
        raise RuntimeError(f"the cached model does not fit this code (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}); load it with rebuild=True")
    model.cfg, model.history, model.metrics = record["config"], dict(record["history"]), dict(record["metrics"])
    return model.eval()


def load_activated(variant: str = "pool", *, activation: dict | None = None, data: dict | None = None, corpus=None,
                   rebuild: bool = False, progress: bool = True) -> SpeechAwareLM:
    """``variant`` (:func:`load_salmonn`) after activation tuning with ``activation`` (:data:`ACTIVATION`, the
    course's; :data:`ACTIVATION_SALMONN` is SALMONN's 12 examples, :data:`ACTIVATION_REHEARSED` rehearses
    transcripts only), from the cache or tuned now.

    The cache holds the tuned LoRA matrices and the examples it was tuned on (``model.examples``:
    ``(utterance index, prompt, answer)``, the index into the training split, or into
    :func:`unheard_utterances` when ``activation["examples_from"]`` is ``"unheard"``).
    """
    from slm_course.corpus import corpus_version
    from slm_course.textlm import load_text_lm

    act = dict(ACTIVATION if activation is None else activation)
    missing = sorted({"n", "scale", "steps", "lr", "replay"} - set(act))
    source = act.get("examples_from", "train")
    if source not in ("train", "unheard"):
        raise ValueError(f"activation['examples_from'] must be 'train' or 'unheard', got {source!r}")
    if (act.get("rehearse") or source == "unheard") and "unheard" not in act:
        missing.append("unheard")
    if missing:
        raise ValueError(f"activation needs the keys of ACTIVATION_SALMONN (and 'unheard' with 'rehearse' or "
                         f"examples_from='unheard'); missing {missing}")
    tasks = act.get("rehearse_tasks", ("transcribe",))
    base = load_salmonn(variant, data=data, corpus=corpus, progress=progress)
    text_lm = load_text_lm(progress=progress)
    prompter = Prompter(text_lm.tokenizer)

    def build() -> dict:
        import time

        train_data = data if data is not None and "train" in data else load_salmonn_data(corpus=corpus,
                                                                                          progress=progress)
        t0 = time.perf_counter()
        new = None
        if act.get("rehearse") or source == "unheard":
            new = unheard_utterances(train_data, act["unheard"], corpus=corpus, progress=progress)
        examples = activation_examples(base, new if source == "unheard" else train_data["train"], prompter,
                                       n=act["n"], scale=act["scale"], candidates=act.get("candidates", 400),
                                       max_frames=act.get("max_frames"), prompts=base.cfg.prompts,
                                       avoid=act.get("avoid", ""))
        kept = None
        if act.get("rehearse"):
            done = {t: rehearsal(base, new, prompter, task=t) for t in dict.fromkeys(tasks)}
            kept = [done[t] for t in tasks]
        tuned = activation_tune(copy.deepcopy(base), train_data["train"], prompter, examples, base.cfg,
                                steps=act["steps"], lr=act["lr"], replay=act["replay"], rehearse=kept,
                                n_rehearse=act.get("rehearse", 0), parts=act.get("parts", 1),
                                per_step=act.get("per_step"), by_length=act.get("by_length", False),
                                soft=act.get("soft", False),
                                example_frames=new["frames"] if source == "unheard" else None, progress=progress)
        return {"state_dict": {k: v for k, v in tuned.state_dict().items() if "lora_" in k}, "examples": examples,
                "metrics": {"train_seconds": time.perf_counter() - t0}}

    key = (f"salmonn-activated-r{RECIPE}.{ACTIVATION_RECIPE}-c{corpus_version(corpus)}-{frozen_digest(base.lm)[:10]}-"
           f"{digest(base.cfg)}-{digest(act)}")
    record = cached(key, build, rebuild=rebuild)
    model = copy.deepcopy(base)
    model.load_state_dict(record["state_dict"], strict=False)
    model.examples, model.metrics = [tuple(e) for e in record["examples"]], dict(record["metrics"])
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def answers(model: SpeechAwareLM, prompter: Prompter, frames: Sequence[torch.Tensor], prompt: str | Sequence[str],
            tag: str | None = None, max_new_tokens: int = 60, batch_size: int = 64) -> list[str]:
    """The model's greedy answer to ``prompt`` (one, or one per utterance) about each utterance's frames."""
    prompts = [prompt] * len(frames) if isinstance(prompt, str) else list(prompt)
    n_audio = model.adapter.out_lengths(torch.tensor([len(f) for f in frames])).tolist()
    banned = list(range(prompter.tok.vocab_size, model.vocab_size)) + [prompter.tok.bos_id, prompter.tok.pad_id]
    out: list[str] = []
    for s in range(0, len(frames), batch_size):
        chunk = range(s, min(s + batch_size, len(frames)))
        rows = [prompter.row(n_audio[i], prompts[i], tag=tag, n_summary=model.adapter.n_global)[0] for i in chunk]
        if max(len(r) for r in rows) >= CONTEXT:
            raise ValueError(f"a row is {max(len(r) for r in rows)} positions long: no room for an answer in the "
                             f"{CONTEXT} the text LM was trained on; use a shorter utterance or prompt")
        batch = collate([frames[i] for i in chunk], rows, rows)
        # each row may run to the end of the context the text LM was trained on, whatever its neighbours' lengths
        got = model.generate(batch["feats"], batch["feat_lengths"], rows, max_new_tokens, prompter.tok.eos_id, banned,
                             context=CONTEXT)
        out += [prompter.text(g) for g in got]
    return out


FUNCTION_WORDS = frozenset({"the", "are", "and", "what", "does", "how", "who", "which", "plus", "minus"})


def _vocabulary() -> frozenset[str]:
    from slm_course.corpus.grammar import Grammar

    return frozenset(Grammar().vocabulary())


def follows_continue(answer: str, transcript: str) -> bool:
    """Did the model do what "continue the story" asks, SALMONN's *instruction following*: a new sentence of three
    words or more, all words of the corpus but one at most (not a run of letters), and not the utterance's own
    words again (CER against what was said above 0.5) nor a label."""
    from slm_course.metrics import cer

    words = answer.split()
    unknown = sum(w not in _vocabulary() for w in words)
    return len(words) >= 3 and unknown <= 1 and cer(transcript, answer) > 0.5


def on_topic(answer: str, transcript: str) -> bool:
    """Does the answer name something that was said: a shared word of three letters or more, not a function word
    (the corpus's stories go on about what they named: "the child kicks the bench" -> "the bench is big")."""
    said = {w for w in transcript.split() if len(w) >= 3 and w not in FUNCTION_WORDS}
    return bool(said & set(answer.split()))


def activation_examples(model: SpeechAwareLM, data: dict, prompter: Prompter, n: int | None = 12, scale: float = 0.6,
                        candidates: int | None = 400, min_cer: float = 0.5, seed: int = 0, prompts: str = "free",
                        max_frames: int | None = None, avoid: str = "") -> list[tuple[int, str, str]]:
    """SALMONN's activation data: ``n`` long answers to "continue the story" that the model writes itself, with
    its LoRA scaled down to ``scale`` (:func:`~slm_course.salmonn.set_lora_scale`): ``(index, prompt, answer)``.

    With less LoRA the frozen LM's own habit (going on with a text) comes back; the answers kept are those that
    follow the instruction with four words or more (:func:`follows_continue`, and a CER above ``min_cer`` against
    what was said), from ``candidates`` utterances of ``data`` drawn at random (None: all of them), in the order
    drawn (only among those of ``max_frames`` encoder frames or fewer when it is given: a longer one leaves little
    room for a long answer). ``n=None`` keeps every answer that passes. ``avoid``: answers with a word that
    starts with one of these letters are left out (``"fm"``, the first letters of "female" and "male": a label's
    answer is decided by its first character, and an example word that starts the same way takes it over).
    ``model`` is left as it was.
    """
    from slm_course.metrics import cer
    from slm_course.salmonn import set_lora_scale

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int (SALMONN used 12) or None for every answer that passes, got {n!r}")
    if not 0 <= scale < 1:
        raise ValueError(f"scale must be in [0, 1): the LoRA scaled down, 1 being as trained; got {scale!r}")
    if not isinstance(avoid, str):
        raise ValueError(f"avoid must be a string of first letters to leave out, e.g. 'fm', got {avoid!r}")
    rng = random.Random(seed)
    room = range(len(data["utts"])) if max_frames is None else [i for i, f in enumerate(data["frames"])
                                                                  if len(f) <= max_frames]
    idx = rng.sample(room, len(room) if candidates is None else min(candidates, len(room)))
    asks = [rng.choice(PROMPTS["continue"][rng.choice(SEEN_FAMILIES)]) for _ in idx]
    damped = copy.deepcopy(model)
    set_lora_scale(damped, scale)
    got = answers(damped, prompter, [data["frames"][i] for i in idx], asks,
                  tag="continue" if prompts == "tags" else None)
    said = [" ".join(data["utts"][i]["words"]) for i in idx]
    out = [(i, ask, a) for i, ask, a, s in zip(idx, asks, got, said) if len(a.split()) >= 4
           and follows_continue(a, s) and cer(s, a) > min_cer and not any(w[0] in avoid for w in a.split())]
    if len(out) < (n or 1):
        raise ValueError(f"only {len(out)} of {len(idx)} answers at LoRA scale {scale} go on with the story"
                         f"{' and avoid ' + repr(avoid) if avoid else ''}; ask for fewer (n={n}), draw more "
                         "candidates, or scale the LoRA further down")
    return out[:n]


def unheard_utterances(data: dict, n_extra: int = 1000, corpus=None, progress: bool = False) -> dict:
    """Utterances the model never heard, for :func:`rehearsal` and :func:`activation_examples`: the valid split's,
    then the first ``n_extra`` of the second corpus draw's training split (notebook 05's extra speech: the training
    voices, other sentences), as encoder frames standardised as ``data``'s (:func:`load_salmonn_data`, whose
    ``mean`` and ``std`` it reads), with what :func:`load_salmonn_data` keeps of each (``utts``)."""
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import load_corpus
    from slm_course.ulm_recipe import EXTRA_SEED, NORM_CONFIG

    if isinstance(n_extra, bool) or not isinstance(n_extra, int) or n_extra < 0:
        raise ValueError(f"n_extra must be an int >= 0, got {n_extra!r}")
    if "mean" not in data or "std" not in data:
        raise ValueError("data must come from load_salmonn_data: its mean and std standardise the new frames")
    if "valid" not in data:
        data = {**data, **load_salmonn_data(("valid",), corpus=corpus, progress=progress)}
    frames, utts = list(data["valid"]["frames"]), list(data["valid"]["utts"])
    if n_extra:
        extra = load_corpus(n_utterances=NORM_CONFIG.extra_speech, seed=EXTRA_SEED, pairs_per_set=1, progress=progress)
        new = extra.split("train")[:n_extra]
        frames = frames + [(f.half().float() - data["mean"]) / data["std"]  # rounded as load_salmonn_data keeps them
                           for f in encode_speech(load_asr(corpus=corpus, progress=progress),
                                                  [extra.wav(u) for u in new], progress=progress)]
        utts = utts + [_record(u) for u in new]
    return {"frames": frames, "utts": utts}


def rehearsal(model: SpeechAwareLM, data: dict, prompter: Prompter, task: str = "transcribe", seed: int = 0,
              max_frames: int = 140) -> dict:
    """What the model does now on utterances it never trained on (``data``: the valid split), to keep while it is
    tuned: each utterance asked ``task`` in a trained phrasing, with the model's own greedy answer as the target.

    Replaying the training mix keeps what the model memorised; its own answers on new sentences keep how it
    transcribes them. Returns ``{"frames": [...], "rows": [(index, prompt, answer), ...], "task": task}`` for
    :func:`activation_tune`'s ``rehearse``; utterances longer than ``max_frames`` encoder frames are left out.
    """
    if task not in TASKS:
        raise ValueError(f"task must be a trained task, one of {TASKS}, got {task!r}")
    if not data.get("frames"):
        raise ValueError("rehearsal needs utterances: pass a split of load_salmonn_data, e.g. data['valid']")
    rng = random.Random(seed)
    idx = [i for i, f in enumerate(data["frames"]) if len(f) <= max_frames]
    asks = [rng.choice(PROMPTS[task][rng.choice(SEEN_FAMILIES)]) for _ in idx]
    got = answers(model, prompter, [data["frames"][i] for i in idx], asks,
                  tag=task if model.cfg.prompts == "tags" else None)
    return {"frames": data["frames"], "rows": list(zip(idx, asks, got)), "task": task}


def activation_tune(model: SpeechAwareLM, data: dict, prompter: Prompter, examples: Sequence[tuple[int, str, str]],
                    cfg: SalmonnConfig | None = None, steps: int = 24, lr: float = 1e-3, replay: int = 32,
                    seed: int = 0, progress: bool = False, rehearse: dict | Sequence[dict] | None = None,
                    n_rehearse: int = 0, parts: int = 1, per_step: int | None = None,
                    example_frames: Sequence[torch.Tensor] | None = None, by_length: bool = False,
                    soft: bool = False) -> SpeechAwareLM:
    """Activation tuning (SALMONN): ``steps`` steps on ``examples`` (:func:`activation_examples`), all of them in
    each batch (or ``per_step`` of them, drawn anew each step from the pool) beside ``replay`` rows drawn from the
    training mix (``cfg``, the model's own recipe) so that what was learnt stays, and ``n_rehearse`` rows drawn
    from ``rehearse`` (:func:`rehearsal`: the model's own answers on utterances it never trained on; several
    rehearsals are pooled, and one listed twice counts twice); LoRA only: the adapter and the new token rows stay
    as they were. In place; returns ``model``.

    ``example_frames``: the frames the examples' indices point into, when they were written on other utterances
    than ``data``'s (:func:`unheard_utterances`). ``by_length``: the rehearsed rows are drawn with replacement,
    each in proportion to its length squared (a long utterance's transcript is what tuning on short examples
    forgets first), instead of without replacement, evenly. ``soft``: each rehearsed row learns the model's
    whole distribution before tuning at each answer position (soft targets, as *learning without forgetting*
    has them), not only its greedy answer. ``parts``: each batch cut by row length into this
    many parts, each padded to its own longest row (the same loss, less padding: many rehearsed rows make a
    batch of hundreds).
    """
    from slm_course.train import TrainConfig, train

    if not examples:
        raise ValueError("activation tuning needs examples: make them with activation_examples")
    if isinstance(n_rehearse, bool) or not isinstance(n_rehearse, int) or n_rehearse < 0:
        raise ValueError(f"n_rehearse must be an int >= 0, got {n_rehearse!r}")
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"parts must be a positive int (1: one padded batch per step), got {parts!r}")
    if per_step is not None and (isinstance(per_step, bool) or not isinstance(per_step, int)
                                 or not 1 <= per_step <= len(examples)):
        raise ValueError(f"per_step must be None (every example in every step) or an int from 1 to the "
                         f"{len(examples)} examples, got {per_step!r}")
    sources = [rehearse] if isinstance(rehearse, dict) else list(rehearse or [])
    if n_rehearse and not any(r.get("rows") for r in sources):
        raise ValueError("n_rehearse > 0 needs rows to rehearse: make them with rehearsal(model, data['valid'], ...)")
    cfg = cfg if cfg is not None else SalmonnConfig()
    ex_frames = data["frames"] if example_frames is None else example_frames
    keep = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    n_audio = model.adapter.out_lengths(torch.tensor([len(ex_frames[i]) for i, _, _ in examples])).tolist()
    rows = [(ex_frames[i], *prompter.row(n, prompt, story, tag="continue" if cfg.prompts == "tags" else None,
                                         n_summary=model.adapter.n_global))
            for n, (i, prompt, story) in zip(n_audio, examples)]
    mix = Batches(data, prompter, model, cfg)
    kept: list[tuple[torch.Tensor, list[int], list[int], torch.Tensor | None]] = []
    done: dict[int, list] = {}  # a rehearsal listed twice is written once
    for src in sources if n_rehearse else []:
        if id(src) not in done:
            fr = src["frames"]
            n_kept = model.adapter.out_lengths(torch.tensor([len(fr[i]) for i, _, _ in src["rows"]])).tolist()
            made = [(fr[i], *prompter.row(n, prompt, answer, tag=src["task"] if cfg.prompts == "tags" else None,
                                          n_summary=model.adapter.n_global))
                    for n, (i, prompt, answer) in zip(n_kept, src["rows"])]
            # soft: the model's own distributions, before any step, are what the rehearsed rows keep
            dist = _answer_distributions(model, made) if soft else [None] * len(made)
            done[id(src)] = [(*row, p) for row, p in zip(made, dist)]
        kept += done[id(src)]
    weights = [len(ids) ** 2 for _, ids, _, _ in kept]
    rng = random.Random(seed)
    plan = []  # each step's rows, drawn now; padded into a batch only when its step comes (hundreds of rows)
    for _ in range(steps):
        more = [mix.example(rng) for _ in range(replay)]
        these = rows if per_step is None else rng.sample(rows, per_step)
        again = (rng.choices(kept, weights=weights, k=n_rehearse) if by_length and kept
                 else rng.sample(kept, min(n_rehearse, len(kept))))
        plan.append([(*r, None) for r in these] + [(data["frames"][i], ids, tgt, None) for i, ids, tgt in more]
                    + again)

    def pad(rows: list) -> dict:
        frames, ids, targets, dist = zip(*rows)
        return collate(frames, ids, targets, dist if soft else None)

    before = frozen_digest(model.lm)
    train(model, lambda step: in_parts(plan[step - 1], parts, pad), TrainConfig(steps=steps, lr=lr, warmup_steps=0, eval_every=0, progress=progress,
                                      desc="activation tuning"))
    if frozen_digest(model.lm) != before:
        raise RuntimeError("the text LM's weights changed during activation tuning: they must stay frozen")
    for name, p in model.named_parameters():
        p.requires_grad_(keep[name])
    return model.eval()


@torch.no_grad()
def _answer_distributions(model: SpeechAwareLM, rows: Sequence[tuple], batch_size: int = 64) -> list[torch.Tensor]:
    """For each ``(frames, ids, targets, ...)`` row, the model's probabilities over the vocabulary at the row's
    answer positions (teacher-forced on its answer): (answer tokens, vocabulary)."""
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        b = collate([r[0] for r in chunk], [r[1] for r in chunk], [r[2] for r in chunk])
        probs = model.example_losses(b)[1].softmax(-1)
        out += [probs[j][b["targets"][j] != IGNORE].clone() for j in range(len(chunk))]
    model.train(was)
    return out


def evaluate(model: SpeechAwareLM, prompter: Prompter, data: dict, families: Sequence[str] = ("tell", "ask", "could"),
             tag_prompts: bool = False, max_utts: int | None = None, tasks: Sequence[str] | None = None,
             progress: bool = False) -> dict:
    """Per task and family of phrasing: accuracy (transcription: CER; the untrained tasks: the share of answers
    that follow the instruction), on the test split's held-out speakers. ``tasks``: a few (default: all);
    ``progress``: a bar over the (task, family) pairs."""
    from tqdm.auto import tqdm

    from slm_course.metrics import cer

    tasks = tuple(TASKS + UNTRAINED) if tasks is None else tuple(tasks)
    if isinstance(tasks, str) or not tasks or not set(tasks) <= set(TASKS + UNTRAINED):
        raise ValueError(f"tasks must be drawn from {TASKS + UNTRAINED}, got {tasks!r}")
    if not families or not set(families) <= {"tell", "ask", "could"}:
        raise ValueError(f"families must be drawn from ('tell', 'ask', 'could'), got {families!r}")

    frames, utts = data["frames"], [_Utt(u) for u in data["utts"]]
    if max_utts is not None:
        frames, utts = frames[:max_utts], utts[:max_utts]
    n_audio = model.adapter.out_lengths(torch.tensor([len(f) for f in frames])).tolist()
    result: dict = {}
    bar = tqdm(total=len(tasks) * (1 if tag_prompts else len(families)), desc="evaluating", disable=not progress,
               leave=False)
    for task in tasks:
        # the same utterances for every family: those whose row, with the longest phrasing and the answer
        # (20 characters of story), fits the LM's context
        longest = max(len(p) for f in PROMPTS[task].values() for p in f)
        idx = [i for i, u in enumerate(utts) if (task == "continue" or answer_of(u, task) is not None)
               and n_audio[i] + longest + len(answer_of(u, task) or " " * 20) + model.adapter.n_global + 6
               <= CONTEXT]
        for fam in ([None] if tag_prompts else families):
            prompts = [PROMPTS[task][fam][k % len(PROMPTS[task][fam])] for k in range(len(idx))] if fam else "x"
            got = answers(model, prompter, [frames[i] for i in idx], prompts, tag=task if tag_prompts else None)
            truth = [answer_of(utts[i], task) for i in idx]
            key = f"{task}/{fam or 'tag'}"
            if task == "transcribe":
                result[key] = {"cer": cer(truth, got)}
            elif task == "continue":
                tr = [answer_of(utts[i], "transcribe") for i in idx]
                result[key] = {"follows": sum(follows_continue(a, t) for a, t in zip(got, tr)) / len(idx),
                               "on_topic": sum(follows_continue(a, t) and on_topic(a, t) for a, t in zip(got, tr))
                               / len(idx)}
            elif task == "transcribe_question":
                ok = [a.endswith(t.split()[-1]) and cer(" ".join(t.split()[:-1]), " ".join(a.split()[:-1])) < 0.3
                      for a, t in zip(got, truth)]
                result[key] = {"follows": sum(ok) / len(idx)}
            else:
                result[key] = {"acc": sum(a == t for a, t in zip(got, truth)) / len(idx)}
            result[key]["n"] = len(idx)
            result[key]["example"] = got[0]
            bar.update()
    bar.close()
    return result


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

LABELS = ("gender", "style", "question", "topic")  # the tasks answered with a label


def seen_unseen(result: dict, tasks: Sequence[str] = LABELS) -> tuple[float, float]:
    """Mean accuracy over ``tasks`` in the trained families of phrasing, and in the held-out one."""
    seen = [result[f"{t}/{f}"]["acc"] for t in tasks for f in SEEN_FAMILIES]
    return sum(seen) / len(seen), sum(result[f"{t}/{HELD_OUT_FAMILY}"]["acc"] for t in tasks) / len(tasks)


def bench_salmonn() -> dict:
    """Notebook 09's models (cached, or trained with its recipe), measured on every held-out speaker's utterance."""
    import numpy as np

    from slm_course.asr_recipe import load_asr
    from slm_course.cascade import what_text_loses
    from slm_course.corpus import load_corpus
    from slm_course.salmonn import set_lora_scale
    from slm_course.textlm import load_text_lm

    data = load_salmonn_data(progress=False)
    text_lm = load_text_lm(progress=False)
    prompter = Prompter(text_lm.tokenizer)
    models = {v: load_salmonn(v, data=data, progress=False) for v in VARIANTS}
    pool, test = models["pool"], data["test"]
    res = evaluate(pool, prompter, test)
    out: dict = {t: round((res[f"{t}/tell"]["acc"] + res[f"{t}/ask"]["acc"]) / 2, 3) for t in LABELS + ("arithmetic",)}
    out["arithmetic_n"] = res["arithmetic/tell"]["n"]
    out["transcribe_cer"] = round((res["transcribe/tell"]["cer"] + res["transcribe/ask"]["cer"]) / 2, 3)
    out["transcribe_cer_unseen_prompt"] = round(res["transcribe/could"]["cer"], 3)
    seen, unseen = seen_unseen(res)
    out |= {"seen_prompt_acc": round(seen, 3), "unseen_prompt_acc": round(unseen, 3)}
    before = evaluate(pool, prompter, test, families=(HELD_OUT_FAMILY,), tasks=UNTRAINED)
    tuned = load_activated("pool", data=data, progress=False)
    after = evaluate(tuned, prompter, test, families=SEEN_FAMILIES[:1] + (HELD_OUT_FAMILY,),
                     tasks=("transcribe",) + LABELS + UNTRAINED)
    out |= {"instruction_following_before_activation": round(before["continue/could"]["follows"], 3),
            "instruction_following_after_activation": round(after["continue/could"]["follows"], 3),
            "on_topic_before_activation": round(before["continue/could"]["on_topic"], 3),
            "on_topic_after_activation": round(after["continue/could"]["on_topic"], 3),
            "transcribe_question_before_activation": round(before["transcribe_question/could"]["follows"], 3),
            "transcribe_question_after_activation": round(after["transcribe_question/could"]["follows"], 3),
            "transcribe_cer_after_activation": round(after["transcribe/tell"]["cer"], 3),
            "unseen_prompt_acc_after_activation": round(
                sum(after[f"{t}/{HELD_OUT_FAMILY}"]["acc"] for t in LABELS) / len(LABELS), 3),
            "activation": dict(ACTIVATION), "activation_seconds": round(tuned.metrics["train_seconds"], 1)}
    scaling = {}
    for f in (0.8, 0.6, 0.4):
        m = copy.deepcopy(pool)
        set_lora_scale(m, f)
        r = evaluate(m, prompter, test, families=("tell", HELD_OUT_FAMILY), tasks=("transcribe", "continue"))
        scaling[str(f)] = {"instruction_following": round(r["continue/could"]["follows"], 3),
                           "transcribe_cer": round(r["transcribe/tell"]["cer"], 3)}
    out["lora_scaling"] = scaling
    n_frames = torch.tensor([len(f) for f in test["frames"]])
    seconds = float(n_frames.sum()) * 0.03  # one encoder frame per 30 ms
    for name, m in models.items():
        tags = m.cfg.prompts == "tags"
        r = res if name == "pool" else evaluate(m, prompter, test, families=("tell",), tag_prompts=tags,
                                                tasks=("transcribe",) + LABELS)
        fam = "tag" if tags else "tell"
        kind = name.split("@")[0]  # the Q-Former and the tags are cut short; "steps" says where each stopped
        key = ("prompts_tags" if kind == "tags" else f"adapter_{kind}") + (
            f"_at_{m.cfg.stop_at}" if kind == "pool" and m.cfg.stop_at else "")
        out[key] = {
            "steps": m.cfg.stop_at or m.cfg.steps,
            "vectors_per_second": round(float(m.adapter.out_lengths(n_frames).sum()) / seconds, 1),
            "transcribe_cer": round(r[f"transcribe/{fam}"]["cer"], 3),
            **{t: round(r[f"{t}/{fam}"]["acc"], 3) for t in LABELS},
            "final_loss": round(float(np.mean(m.history["loss"][-100:])), 3),
            "params_trained": m.metrics["params_trained"], "train_seconds": round(m.metrics["train_seconds"], 1)}
    lost = what_text_loses(load_corpus(progress=False), load_asr(progress=False))
    for label in ("gender", "style", "question"):
        out[f"cascade_{label}"] = round(lost[f"{label}_acc_text"], 3)
        out[f"cascade_{label}_chance"] = round(lost[f"{label}_chance"], 3)
    decl = [i for i, u in enumerate(test["utts"]) if u["kind"] in ("statement", "declarative_question")]
    got = answers(pool, prompter, [test["frames"][i] for i in decl], PROMPTS["question"]["tell"][0])
    out["question_declarative"] = round(float(np.mean([a == answer_of(test["utts"][i], "question")
                                                        for a, i in zip(got, decl)])), 3)
    out |= {"params_trained": pool.metrics["params_trained"], "params_frozen": pool.metrics["params_frozen"],
            # what `prepare` spends: the cut pooling run is the main run's state at its step, not trained again
            "train_seconds": round(sum(m.metrics["train_seconds"] for n, m in models.items() if n != f"pool@{COMPARED_AT}")
                                   + tuned.metrics["train_seconds"], 1),
            "test_utterances": len(test["utts"])}
    return out
