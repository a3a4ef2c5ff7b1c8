"""Notebook 09's recipe: instruction data from the corpus, training and measuring a speech-aware text LM.

- :func:`encode_speech`: the frozen ears, notebook 01's recognizer. Each 33 Hz frame is its
  convolutions' output (much about the voice) next to its GRU's state (much about the words), as
  SALMONN puts Whisper's frames next to BEATs'.
- :data:`TASKS` and :data:`PROMPTS`: what a user may ask about an utterance, several phrasings per
  task in three families; the ``held_out`` family is never trained on. The ``continue`` task (go on
  with the story) and the combination "transcribe, then say whether it was a question" are never
  trained on either: they measure task over-fitting.
- :class:`Prompter`: an example as a token row, ``<bos> <audio> [slots] </audio> prompt <reply>
  answer <eos>``, with the loss on the answer only.
- :func:`load_salmonn_data` (cached) holds the encoder frames of the train and test utterances;
  :func:`train_salmonn` / :func:`load_salmonn` train an adapter, LoRA and the new tokens on a mix
  dominated by transcription.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from slm_course.lm import IGNORE
from slm_course.runtime import artifact_record, cached, digest
from slm_course.salmonn import AUDIO, SUMMARY, PoolAdapter, SpeechAwareLM, WindowQFormer, add_lora, frozen_digest

__all__ = ["PROMPTS", "TASKS", "VARIANTS", "Prompter", "SalmonnConfig", "answer_of", "encode_speech", "evaluate",
           "load_salmonn", "load_salmonn_data", "train_salmonn"]

RECIPE = 2  # bump when the data or training changes in a way the configs do not show

TASKS = ("transcribe", "gender", "style", "question", "topic", "arithmetic")  # trained
UNTRAINED = ("continue", "transcribe_question")  # never trained on: over-fitting shows here

# Three families of phrasing per task. "tell" and "ask" are trained; "could" is held out. The text LM
# writes 27 characters (no "j", no punctuation): every prompt is spelled with them. No prompt names its
# task's answers ("a man or a woman"): the frozen LM copies words it has just read, and a prompt that
# offers the answers drowns out what the audio says.
PROMPTS: dict[str, dict[str, tuple[str, ...]]] = {
    "transcribe": {"tell": ("transcribe the speech", "write down the words"),
                   "ask": ("what words are said", "what does the voice say"),
                   "could": ("could you write out what is said",)},
    "gender": {"tell": ("name who is speaking", "tell me who is talking"),
               "ask": ("who is speaking", "who says this"),
               "could": ("could you tell who the speaker is",)},
    "style": {"tell": ("describe the tone of voice", "name the speaking style"),
              "ask": ("how is it said", "what is the mood of the voice"),
              "could": ("could you describe how it sounds",)},
    "question": {"tell": ("name the kind of sentence", "say how the sentence is meant"),
                 "ask": ("is it asked or told", "what kind of sentence is it"),
                 "could": ("could you tell if it was asked",)},
    "topic": {"tell": ("name the topic", "say what it is about"),
              "ask": ("what is it about", "which topic is this"),
              "could": ("could you name the theme",)},
    "arithmetic": {"tell": ("work out the sum", "give the result"),
                   "ask": ("what is the answer", "how much is it"),
                   "could": ("could you solve it",)},
    "continue": {"tell": ("continue the story", "go on with the story"),
                 "ask": ("what happens next", "how does the story go on"),
                 "could": ("could you continue the story",)},
    "transcribe_question": {"tell": ("write it down then say if it is asked",),
                            "ask": ("what words are said and is it asked",),
                            "could": ("could you write it out and say if it was asked",)},
}
SEEN_FAMILIES = ("tell", "ask")
LONGEST_PROMPT = max(len(p) for task in PROMPTS.values() for family in task.values() for p in family)
HELD_OUT_FAMILY = "could"
NEW_TOKENS = ("<audio>", "</audio>", "<reply>") + tuple(f"<|{t}|>" for t in TASKS + UNTRAINED)
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
    """The checkable answer of ``task`` for a corpus utterance, or None when the task does not apply to it."""
    words = tuple(utt.words)
    if task == "transcribe":
        return " ".join(words)
    if task == "gender":
        return "a man" if utt.gender == "male" else "a woman"
    if task == "style":
        return utt.style
    if task == "question":
        return "a question" if utt.question else "a statement"
    if task == "topic":
        return utt.topic
    if task == "arithmetic":
        return arithmetic_answer(words) if utt.kind == "arithmetic" else None
    if task == "transcribe_question":
        return " ".join(words) + (" a question" if utt.question else " a statement")
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

@torch.no_grad()
def encode_speech(asr, wavs: Sequence[torch.Tensor], batch_size: int = 32, progress: bool = False
                  ) -> list[torch.Tensor]:
    """Each waveform's encoder frames ``(T', C + 2H)`` at 33 Hz: the recognizer's conv output next to its GRU states."""
    from tqdm.auto import tqdm

    from slm_course.asr import asr_features, pad_features

    asr.eval()
    out: list[torch.Tensor] = []
    for i in tqdm(range(0, len(wavs), batch_size), desc="encoding speech", disable=not progress):
        x, lengths = pad_features([asr_features(w) for w in wavs[i : i + batch_size]])
        conv, states, n = asr.encode(x, lengths)
        both = torch.cat([conv, states], -1)
        out += [both[b, : int(n[b])].clone() for b in range(len(n))]
    return out


_FRAMES: dict = {}  # (data key, split) -> raw encoder frames, kept for the life of the process


def load_salmonn_data(splits: Sequence[str] = ("train", "test"), *, corpus=None, rebuild: bool = False,
                      progress: bool = True) -> dict:
    """The encoder frames of each split's utterances and what the tasks need to know of each utterance.

    Frames are standardised (each feature to zero mean and unit variance) with the training frames'
    ``mean`` and ``std``, which are cached. The frames themselves are computed now, once per process
    (about 2 s per 100 utterances): cached, they would take a few hundred MB.
    """
    from slm_course.asr_recipe import load_asr
    from slm_course.corpus import corpus_version, load_corpus

    if isinstance(splits, str) or not set(splits) <= {"train", "valid", "test"}:
        raise ValueError(f"splits must be a list drawn from 'train', 'valid', 'test', got {splits!r}")
    asr = load_asr(corpus=corpus, progress=progress)  # the default corpus's recognizer when corpus is None
    corpus = corpus if corpus is not None else load_corpus()
    key = f"salmonn-norm-r{RECIPE}-c{corpus_version(corpus)}-{digest(next(iter(asr.state_dict().values())))}"

    def frames_of(split: str) -> list[torch.Tensor]:
        if (key, split) not in _FRAMES:
            wavs = [corpus.wav(u) for u in corpus.split(split)]
            _FRAMES[key, split] = [f.half() for f in encode_speech(asr, wavs, progress=progress)]
        return _FRAMES[key, split]

    def build() -> dict:
        every = torch.cat([f.float() for f in frames_of("train")])
        return {"mean": every.mean(0), "std": every.std(0).clamp(min=1e-3)}

    norm = cached(key, build, rebuild=rebuild)
    data: dict = dict(norm)
    for split in splits:
        utts = corpus.split(split)
        data[split] = {"frames": [((f.float() - norm["mean"]) / norm["std"]) for f in frames_of(split)],
                       "utts": [{"id": u.id, "words": list(u.words), "speaker": u.speaker, "gender": u.gender,
                                 "style": u.style, "question": u.question, "kind": u.kind, "topic": u.topic}
                                for u in utts]}
    return data


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
    adapter: str = "qformer"  # "qformer" (SALMONN: learned queries per window) or "pool" (Qwen-Audio: mean of `stride` frames)
    prompts: str = "free"  # "free" (natural-language prompts) or "tags" (one task tag per task, Qwen-Audio style)
    window: int = 4  # Q-Former: frames per window (4 frames = 0.12 s)
    n_queries: int = 1  # Q-Former: queries per window
    stride: int = 2  # pooling: frames per LM position
    n_global: int = 1  # vectors for the whole utterance before the windows' (who speaks, how)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("qkv", "proj")  # the LM's linear layers that get LoRA (attention)
    mix: tuple[tuple[str, float], ...] = (("transcribe", 0.5), ("gender", 0.1), ("style", 0.1), ("question", 0.1),
                                          ("topic", 0.1), ("arithmetic", 0.1))
    max_len: int = 128  # the text LM was trained on 128 characters: longer rows are left out
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 50
    seed: int = 0


def make_adapter(cfg: SalmonnConfig, d_in: int, d_lm: int):
    if cfg.adapter == "qformer":
        return WindowQFormer(d_in, d_lm, window=cfg.window, n_queries=cfg.n_queries, n_global=cfg.n_global)
    if cfg.adapter == "pool":
        return PoolAdapter(d_in, d_lm, stride=cfg.stride, n_global=cfg.n_global)
    raise ValueError(f"adapter must be 'qformer' or 'pool', got {cfg.adapter!r}")


def build_model(cfg: SalmonnConfig, text_lm, d_in: int) -> SpeechAwareLM:
    """The frozen text LM with LoRA, the adapter and the new token rows (a copy: ``text_lm`` is left as it is)."""
    import copy

    lm = add_lora(copy.deepcopy(text_lm.model), rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.lora_targets)
    return SpeechAwareLM(lm, make_adapter(cfg, d_in, lm.cfg.d_model), len(NEW_TOKENS))


class Batches:
    """``step -> batch``: a task drawn from the mix, then an utterance it applies to and a trained phrasing."""

    def __init__(self, data: dict, prompter: Prompter, model: SpeechAwareLM, cfg: SalmonnConfig) -> None:
        self.frames, self.prompter, self.cfg = data["frames"], prompter, cfg
        utts = [_Utt(u) for u in data["utts"]]
        n_audio = model.adapter.out_lengths(torch.tensor([len(f) for f in self.frames])).tolist()
        self.pool: dict[str, list[tuple[int, str]]] = {}
        for task, _ in cfg.mix:
            rows = []
            for i, u in enumerate(utts):
                ans = answer_of(u, task)
                if ans is not None and n_audio[i] + LONGEST_PROMPT + len(ans) + 6 <= cfg.max_len:
                    rows.append((i, ans))
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
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        return self.collate([self.example(rng) for _ in range(self.cfg.batch_size)])


def collate(frames: Sequence[torch.Tensor], ids: Sequence[list[int]], targets: Sequence[list[int]]) -> dict:
    """Pad frames (zeros) and rows (``<eos>`` = 2, never a target) into one batch."""
    B, T, L = len(frames), max(len(f) for f in frames), max(len(r) for r in ids)
    feats = torch.zeros(B, T, frames[0].shape[1])
    tokens = torch.full((B, L), 2, dtype=torch.long)
    tgt = torch.full((B, L), IGNORE, dtype=torch.long)
    for b, (f, r, t) in enumerate(zip(frames, ids, targets)):
        feats[b, : len(f)] = f.float()
        tokens[b, : len(r)] = torch.tensor(r)
        tgt[b, : len(t)] = torch.tensor(t)
    return {"feats": feats, "feat_lengths": torch.tensor([len(f) for f in frames]), "tokens": tokens, "targets": tgt}


def train_salmonn(data: dict, text_lm, cfg: SalmonnConfig = SalmonnConfig(), progress: bool = True):
    """Train the adapter, LoRA and the new tokens on the training utterances; the text LM's weights stay as they were."""
    from slm_course.train import TrainConfig, train

    torch.manual_seed(cfg.seed)
    d_in = data["train"]["frames"][0].shape[1]
    model = build_model(cfg, text_lm, d_in)
    before = frozen_digest(model.lm)
    prompter = Prompter(text_lm.tokenizer)
    history = train(model, Batches(data["train"], prompter, model, cfg),
                    TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, eval_every=0,
                                seed=cfg.seed, progress=progress, desc=f"salmonn ({cfg.adapter}, {cfg.prompts})"))
    if frozen_digest(model.lm) != before:
        raise RuntimeError("the text LM's weights changed during training: they must stay frozen")
    return model.eval(), history


def trained_state(model: SpeechAwareLM) -> dict:
    """Only what training changed: the adapter, the LoRA matrices and the new token rows."""
    return {k: v for k, v in model.state_dict().items() if "lora_" in k or not k.startswith("lm.")}


VARIANTS = {
    "qformer": SalmonnConfig(),  # SALMONN: a window-level Q-Former, natural-language prompts
    "pool": SalmonnConfig(adapter="pool"),  # Qwen-Audio: pooling by 2, the same prompts
    "tags": SalmonnConfig(prompts="tags"),  # the Q-Former with one task tag per task instead of prompts
}


def load_salmonn(variant: str = "qformer", config: SalmonnConfig | None = None, *, data: dict | None = None,
                 corpus=None, rebuild: bool = False, progress: bool = True) -> SpeechAwareLM:
    """A trained variant (see :data:`VARIANTS`), from the cache or trained now.

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

    def build() -> dict:
        train_data = data if data is not None and "train" in data else load_salmonn_data(corpus=corpus,
                                                                                          progress=progress)
        model, history = train_salmonn(train_data, text_lm, cfg, progress=progress)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        record = model_record(model, cfg, history, {"params_trained": trained, "params_frozen": frozen,
                                                    "train_seconds": history.seconds}, text_lm=lm_key)
        record["state_dict"] = trained_state(model)
        return record

    record = cached(f"salmonn-r{RECIPE}-c{corpus_version(corpus)}-{lm_key[:10]}-{digest(cfg)}", build,
                    rebuild=rebuild)
    if record["text_lm"] != lm_key:
        raise RuntimeError("the cached speech-aware LM was trained on another text LM; load it with rebuild=True")
    d_in = record["state_dict"]["adapter.inp.0.weight" if cfg.adapter == "qformer" else "adapter.norm.weight"].shape[-1]
    model = build_model(record["config"], text_lm, d_in)
    missing, unexpected = model.load_state_dict(record["state_dict"], strict=False)
    if unexpected or any("lora_" in k or not k.startswith("lm.") for k in missing):
        raise RuntimeError(f"the cached model does not fit this code (missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}); load it with rebuild=True")
    model.history, model.metrics = dict(record["history"]), dict(record["metrics"])
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
        room = min(max_new_tokens, model.lm.cfg.max_len - max(len(r) for r in rows))
        batch = collate([frames[i] for i in chunk], rows, rows)
        got = model.generate(batch["feats"], batch["feat_lengths"], rows, room, prompter.tok.eos_id, banned)
        out += [prompter.text(g) for g in got]
    return out


def follows_continue(answer: str, transcript: str) -> bool:
    """Did the model go on with the story? Two words or more, and not a transcript (CER against it above 0.5)."""
    from slm_course.metrics import cer

    return len(answer.split()) >= 2 and cer(transcript, answer) > 0.5


def evaluate(model: SpeechAwareLM, prompter: Prompter, data: dict, families: Sequence[str] = ("tell", "ask", "could"),
             tag_prompts: bool = False, max_utts: int | None = None) -> dict:
    """Per task and family of phrasing: accuracy (transcription: CER), on the test split's held-out speakers."""
    from slm_course.metrics import cer

    frames, utts = data["frames"], [_Utt(u) for u in data["utts"]]
    if max_utts is not None:
        frames, utts = frames[:max_utts], utts[:max_utts]
    result: dict = {}
    for task in TASKS + UNTRAINED:
        idx = [i for i, u in enumerate(utts) if task == "continue" or answer_of(u, task) is not None]
        for fam in ([None] if tag_prompts else families):
            prompts = [PROMPTS[task][fam][k % len(PROMPTS[task][fam])] for k in range(len(idx))] if fam else "x"
            got = answers(model, prompter, [frames[i] for i in idx], prompts, tag=task if tag_prompts else None)
            truth = [answer_of(utts[i], task) for i in idx]
            key = f"{task}/{fam or 'tag'}"
            if task == "transcribe":
                result[key] = {"cer": cer(truth, got)}
            elif task == "continue":
                tr = [answer_of(utts[i], "transcribe") for i in idx]
                result[key] = {"follows": sum(follows_continue(a, t) for a, t in zip(got, tr)) / len(idx)}
            elif task == "transcribe_question":
                ok = [a.endswith(t.split()[-1]) and cer(" ".join(t.split()[:-2]), " ".join(a.split()[:-2])) < 0.3
                      for a, t in zip(got, truth)]
                result[key] = {"follows": sum(ok) / len(idx)}
            else:
                result[key] = {"acc": sum(a == t for a, t in zip(got, truth)) / len(idx)}
            result[key]["n"] = len(idx)
            result[key]["example"] = got[0]
    return result
