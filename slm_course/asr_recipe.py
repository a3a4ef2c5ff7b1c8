"""The recogniser's recipe (notebook 01): batches, training, the cached model, FSDD digits, the benchmark.

The model is :class:`slm_course.asr.CtcAsr`. It trains with the course's one loop,
:func:`slm_course.train.train`, on batches of utterances of similar length (:func:`make_batches`),
1,000 steps at the default :class:`slm_course.asr.AsrConfig`. Later notebooks only call
:func:`load_asr`, which loads the trained model from the cache or trains it with the same recipe and
seed. The same recipe also runs on real speech, the spoken digits of FSDD (:func:`train_fsdd_asr`,
:func:`digit_accuracy`). ``slm-course bench asr`` reports its CER and WER on held-out speakers.

>>> asr = load_asr()                                         # doctest: +SKIP
>>> asr.transcribe(corpus.wav(corpus.split("test")[0]))      # doctest: +SKIP
['the cook cuts the cake']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import soundfile as sf
import torch

from slm_course import audio
from slm_course.asr import SR, AsrConfig, CtcAsr, asr_features, pad_features, text_to_ids
from slm_course.metrics import cer, wer
from slm_course.runtime import cached, digest, recipe_config, seed_everything
from slm_course.train import History, TrainConfig, model_record, restore, train

if TYPE_CHECKING:
    from slm_course.corpus import Corpus
    from slm_course.fsdd import Fsdd, Recording

__all__ = [
    "CONFIG",
    "FSDD_CONFIG",
    "RECIPE",
    "Batches",
    "bench_asr",
    "bench_fsdd_asr",
    "digit_accuracy",
    "evaluate_asr",
    "fsdd_examples",
    "load_asr",
    "load_fsdd_asr",
    "make_batches",
    "train_asr",
    "train_fsdd_asr",
]

RECIPE = 1  # bump when the recipe changes in a way AsrConfig does not show: cached models are retrained
CONFIG = AsrConfig()  # the course's recogniser: 1,000 steps on the corpus's training speakers

# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


class Batches:
    """Utterances grouped into batches of similar length; ``batches(step)`` is the batch of a training step.

    The batches are fixed (cut from the utterances sorted by length); each epoch visits them in a
    new order drawn from an explicit generator seeded with ``(seed, epoch)``, so the sequence of
    batches depends only on the seed.
    """

    def __init__(self, examples: Sequence[tuple[torch.Tensor, Sequence[int]]], frames_per_batch: int, seed: int):
        self.examples = [(f, torch.as_tensor(list(t), dtype=torch.long)) for f, t in examples]
        self.seed = seed
        order = sorted(range(len(self.examples)), key=lambda i: (len(self.examples[i][0]), i))
        self.groups: list[list[int]] = []
        group: list[int] = []
        for i in order:  # sorted ascending, so the newest utterance is the longest of its group
            if group and (len(group) + 1) * len(self.examples[i][0]) > frames_per_batch:
                self.groups.append(group)
                group = []
            group.append(i)
        self.groups.append(group)
        self._epoch = -1
        self._perm: list[int] = []

    def __len__(self) -> int:
        return len(self.groups)

    def __repr__(self) -> str:
        sizes = [len(g) for g in self.groups]
        return f"Batches({len(self.examples)} utterances in {len(self)} batches of {min(sizes)}-{max(sizes)})"

    def collate(self, group: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the utterances ``group`` into one batch: feats, feat_lengths, targets, target_lengths."""
        feats, feat_lengths = pad_features([self.examples[i][0] for i in group])  # (B, T, D), (B,)
        targets = [self.examples[i][1] for i in group]
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)  # (B,)
        padded = torch.zeros(len(group), max(1, int(target_lengths.max())), dtype=torch.long)  # (B, S)
        for row, t in enumerate(targets):
            padded[row, : len(t)] = t
        return {"feats": feats, "feat_lengths": feat_lengths, "targets": padded, "target_lengths": target_lengths}

    def order(self, epoch: int) -> list[int]:
        """The order in which epoch ``epoch`` (0-based) visits the batches."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self), generator=gen).tolist()

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be an int >= 1 (train() counts from 1), got {step!r}")
        epoch, pos = divmod(step - 1, len(self))
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self.order(epoch)
        return self.collate(self.groups[self._perm[pos]])


def make_batches(
    examples: Sequence[tuple[torch.Tensor, Sequence[int]]], frames_per_batch: int = 3000, seed: int = 0
) -> Batches:
    """Group ``(feats (T, D), target ids)`` pairs by length into padded batches: a callable ``step -> batch``.

    A batch holds as many utterances of similar length as fit in ``frames_per_batch`` frames
    (padding included), so little compute is spent on padding.

    >>> batches = make_batches([(asr_features(w), text_to_ids(t)) for w, t in pairs])   # doctest: +SKIP
    >>> batches(1)["feats"].shape                                                       # doctest: +SKIP
    torch.Size([37, 160, 80])
    """
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise TypeError(f"examples must be a list of (feats, target ids) pairs, got {type(examples).__name__}")
    if len(examples) == 0:
        raise ValueError("examples is empty: pass at least one (feats, target ids) pair")
    if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
        raise ValueError(f"frames_per_batch must be a positive int (e.g. 3000), got {frames_per_batch!r}")
    dim = None
    for k, example in enumerate(examples):
        if not (isinstance(example, (tuple, list)) and len(example) == 2):
            raise TypeError(f"examples[{k}] must be a (feats, target ids) pair, got {type(example).__name__}")
        feats = example[0]
        if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or len(feats) == 0:
            raise ValueError(
                f"examples[{k}][0] must be a non-empty (frames, n_mels) tensor from asr_features(wav), got "
                f"{tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__}"
            )
        if dim is not None and feats.shape[1] != dim:
            raise ValueError(f"examples[{k}] has {feats.shape[1]} feature bands, the others {dim}; use one n_mels")
        dim = feats.shape[1]
        if len(feats) > frames_per_batch:
            raise ValueError(
                f"examples[{k}] has {len(feats)} frames, more than frames_per_batch={frames_per_batch}; "
                "raise frames_per_batch or drop the utterance"
            )
    return Batches(examples, frames_per_batch, seed)


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------


def _pairs_of(data: Any, split: str, what: str) -> list[tuple[torch.Tensor, str]]:
    """``(wav, text)`` pairs of a corpus split, or checked pairs given directly."""
    if hasattr(data, "split") and hasattr(data, "wav") and hasattr(data, "sr"):  # a Corpus
        if data.sr != SR:
            raise ValueError(f"the corpus is sampled at {data.sr} Hz; the recogniser needs {SR} Hz")
        return [(data.wav(u), u.text) for u in data.split(split)]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise TypeError(f"{what} takes a Corpus or a list of (wav, text) pairs at 16 kHz, got {type(data).__name__}")
    pairs = []
    for k, item in enumerate(data):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], str)):
            raise TypeError(f"item {k} of {what}'s data must be a (wav, text) pair, got {type(item).__name__}")
        pairs.append((item[0], item[1]))
    return pairs


def train_asr(
    data: Corpus | Sequence[tuple[torch.Tensor, str]],
    config: AsrConfig = CONFIG,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> tuple[CtcAsr, History]:
    """Train a :class:`CtcAsr` on a corpus's ``train`` split (or on ``(wav, text)`` pairs at 16 kHz).

    Returns the model in eval mode and the :class:`slm_course.train.History` of the run. The same
    data, config and seed give the same model on the same machine.

    >>> model, history = train_asr(load_corpus())        # doctest: +SKIP
    """
    if not isinstance(config, AsrConfig):
        raise TypeError(f"config must be an AsrConfig, got {type(config).__name__}")
    pairs = _pairs_of(data, "train", "train_asr")
    if not pairs:
        raise ValueError("train_asr got no training utterances; pass a corpus or a non-empty list of (wav, text)")
    examples = []
    for k, (wav, text) in enumerate(pairs):
        ids = text_to_ids(text)
        if not ids:
            raise ValueError(f"training text {k} ({text!r}) is empty after normalisation; drop it")
        examples.append((asr_features(wav, SR, config.n_mels), ids))
    batches = make_batches(examples, config.frames_per_batch, config.seed)
    seed_everything(config.seed)  # the initial weights depend on the seed only
    model = CtcAsr(config)
    train_config = TrainConfig(
        steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0, seed=config.seed,
        progress=progress, desc="asr",
    )
    history = train(model, batches, train_config, device=device)
    return model.eval(), history


def evaluate_asr(
    model: CtcAsr, data: Corpus | Sequence[tuple[torch.Tensor, str]], split: str = "test", limit: int | None = None
) -> dict[str, float]:
    """CER and WER of greedy transcripts of a corpus split (held-out speakers by default), or of (wav, text) pairs.

    The corpus is closed-vocabulary (a small grammar), so this is a closed-vocabulary recogniser: it
    spells the corpus's words well and nothing else. Score it on in-vocabulary speech; the lexical
    evaluation set's non-words would come out as the nearest known words.
    """
    if not isinstance(model, CtcAsr):
        raise TypeError(f"model must be a CtcAsr (from train_asr or load_asr), got {type(model).__name__}")
    pairs = _pairs_of(data, split, "evaluate_asr")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int or None (all), got {limit!r}")
        pairs = pairs[:limit]
    if not pairs:
        raise ValueError(f"nothing to evaluate: split {split!r} is empty or no (wav, text) pairs were given")
    hyps = model.transcribe([w for w, _ in pairs])
    refs = [t for _, t in pairs]
    return {"cer": cer(refs, hyps), "wer": wer(refs, hyps), "utterances": len(pairs)}


def _cache_name(config: AsrConfig, corpus: Corpus | None) -> str:
    from slm_course.corpus import corpus_version

    name = f"asr-r{RECIPE}-corpus{corpus_version()}-{config.key()}"
    if corpus is not None:  # a corpus other than the default one: name it by its content
        name += f"-{corpus.manifest['sha256'][:10]}"
    return name


def load_asr(
    config: AsrConfig | None = None, *, corpus: Corpus | None = None, rebuild: bool = False, progress: bool = True
) -> CtcAsr:
    """The course's recogniser: loaded from the cache, or trained with ``config`` (same recipe and seed) and cached.

    Trains on ``corpus`` (default: :func:`slm_course.corpus.load_corpus`), stores the weights, the
    config, the training history (``model.history``) and the test-speaker metrics (``model.metrics``), and returns
    the model in eval mode on the CPU.

    >>> asr = load_asr(); sorted(asr.metrics)             # doctest: +SKIP
    ['cer', 'utterances', 'wer']
    """
    config = recipe_config(config, CONFIG)

    def build() -> dict[str, Any]:
        from slm_course.corpus import load_corpus

        data = corpus if corpus is not None else load_corpus(progress=progress)
        model, history = train_asr(data, config, progress=progress)
        model.cpu()
        return model_record(model, config, history, evaluate_asr(model, data, "test"))

    record = cached(_cache_name(config, corpus), build, rebuild=rebuild)
    return restore(CtcAsr(record["config"]), record)


# ---------------------------------------------------------------------------------------------
# Real speech: FSDD spoken digits
# ---------------------------------------------------------------------------------------------

# FSDD holds single words (0.5 s on average): smaller batches, so more updates per pass, and a higher
# learning rate to leave CTC's early "all blank" plateau sooner; fewer steps than for the corpus.
# No SpecAugment: at 300 steps the masks slow learning more than they help.
FSDD_CONFIG = AsrConfig(steps=300, lr=5e-3, warmup_steps=30, frames_per_batch=1500, freq_masks=0, time_masks=0)


def _fsdd_wav(rec: Recording) -> torch.Tensor:
    """One FSDD recording as a 16 kHz float32 tensor (T,) (FSDD is 8 kHz: resampled)."""
    data, file_sr = sf.read(rec.path, dtype="float32", always_2d=True)  # (T, C)
    return audio.resample(torch.from_numpy(data.mean(axis=1)), int(file_sr), SR)


def fsdd_examples(recordings: Sequence[Recording]) -> list[tuple[torch.Tensor, str]]:
    """``(wav at 16 kHz, digit word)`` pairs of FSDD recordings, e.g. ``(tensor([...]), 'seven')``."""
    if isinstance(recordings, (str, bytes)) or not isinstance(recordings, Sequence) or not recordings:
        raise ValueError("recordings must be a non-empty list of FSDD recordings, e.g. load_fsdd().split('test')")
    for k, rec in enumerate(recordings):
        if not (hasattr(rec, "path") and hasattr(rec, "word")):
            raise TypeError(f"recordings[{k}] is a {type(rec).__name__}, not an FSDD Recording (from load_fsdd())")
    return [(_fsdd_wav(rec), rec.word) for rec in recordings]


def train_fsdd_asr(
    config: AsrConfig = FSDD_CONFIG,
    recordings: Sequence[Recording] | None = None,
    fsdd: Fsdd | None = None,
    progress: bool = True,
) -> tuple[CtcAsr, History]:
    """The same recipe on real speech: train on FSDD recordings (default: takes 5-49 of every speaker).

    Words are the digit names ("zero" .. "nine"), audio is resampled from 8 kHz to 16 kHz.
    """
    if recordings is None:
        from slm_course.fsdd import load_fsdd

        recordings = (fsdd or load_fsdd()).split("train")
    return train_asr(fsdd_examples(recordings), config, progress=progress)


def load_fsdd_asr(
    config: AsrConfig | None = None, *, fsdd: Fsdd | None = None, rebuild: bool = False, progress: bool = True
) -> CtcAsr:
    """The FSDD recogniser (:func:`train_fsdd_asr` on takes 5-49), from the cache or trained now (a short run).

    The cache name holds the config and the recordings it trains on, so a different FSDD copy gets its own model.
    Raises :class:`slm_course.fsdd.FsddMissing` (saying how to get FSDD) when no copy is found.
    """
    config = recipe_config(config, FSDD_CONFIG)
    if fsdd is None:
        from slm_course.fsdd import load_fsdd

        fsdd = load_fsdd()
    recordings = fsdd.split("train")
    names = digest("\n".join(sorted(r.path.name for r in recordings)))

    def build() -> dict[str, Any]:
        model, history = train_fsdd_asr(config, recordings, progress=progress)
        return model_record(model.cpu(), config, history)

    record = cached(f"asr-fsdd-r{RECIPE}-{config.key()}-{names}", build, rebuild=rebuild)
    return restore(CtcAsr(record["config"]), record)


def digit_accuracy(model: CtcAsr, recordings: Sequence[Recording] | Sequence[tuple[torch.Tensor, str]]) -> float:
    """Share of FSDD recordings transcribed exactly as their digit word (chance: 0.1).

    Takes FSDD recordings, or ready ``(wav at 16 kHz, word)`` pairs from :func:`fsdd_examples`.
    """
    if not isinstance(model, CtcAsr):
        raise TypeError(f"model must be a CtcAsr, got {type(model).__name__}")
    if isinstance(recordings, (str, bytes)) or not isinstance(recordings, Sequence) or not recordings:
        raise ValueError("recordings must be a non-empty list of FSDD recordings, e.g. load_fsdd().split('test')")
    pairs = recordings if isinstance(recordings[0], (tuple, list)) else fsdd_examples(recordings)
    hyps = model.transcribe([w for w, _ in pairs])
    return sum(h == word for h, (_, word) in zip(hyps, pairs)) / len(pairs)


# ---------------------------------------------------------------------------------------------
# Benchmarks (slm-course bench asr / fsdd-asr)
# ---------------------------------------------------------------------------------------------


def bench_asr(seed: int = 0) -> dict:
    """The notebook's recogniser (cached, or trained with the recipe): CER/WER on held-out and training speakers.

    ``seed``: the same recipe from another seed (weights, dropout, batch order), for the spread.
    """
    from slm_course.corpus import load_corpus

    corpus = load_corpus(progress=False)
    model = load_asr(replace(CONFIG, seed=seed), progress=False)
    test = evaluate_asr(model, corpus, "test")
    valid = evaluate_asr(model, corpus, "valid")
    tail = model.history["loss"][-20:]
    return {
        "cer": round(test["cer"], 4),
        "wer": round(test["wer"], 4),
        "cer_train_speakers": round(valid["cer"], 4),
        "params": sum(p.numel() for p in model.parameters()),
        "steps": model.config.steps,
        "train_seconds": round(model.history["seconds"], 1),
        "final_loss": round(sum(tail) / len(tail), 4),
    }


def bench_fsdd_asr(config: AsrConfig = FSDD_CONFIG, unseen_speakers: int | None = None, seed: int = 0) -> dict:
    """FSDD digits: the notebook's recogniser (cached; takes 5-49) on takes 0-4; then each speaker left out in turn.

    ``unseen_speakers`` is how many speakers (the first, by name) are held out in turn, one training
    run of ``config`` each (default None: every speaker); ``loso_train_seconds`` is their total.
    ``seed`` replaces ``config.seed`` in every run, for the spread over seeds.
    Raises :class:`slm_course.fsdd.FsddMissing` (which says how to get FSDD) when it is not here.
    """
    from slm_course.fsdd import load_fsdd

    config = replace(config, seed=seed) if seed else config
    fsdd = load_fsdd()
    pairs = dict(zip(fsdd.recordings, fsdd_examples(fsdd.recordings)))  # read and resample once, reuse below
    model = load_fsdd_asr(config, fsdd=fsdd, progress=False)
    digit_acc = digit_accuracy(model, [pairs[r] for r in fsdd.split("test")])
    seconds = 0.0
    unseen = {}
    for speaker in fsdd.speakers[:unseen_speakers] if unseen_speakers else fsdd.speakers:
        others = [pairs[r] for r in fsdd.recordings if r.speaker != speaker]  # every take of the other speakers
        loso, loso_history = train_asr(others, config, progress=False)
        unseen[speaker] = round(digit_accuracy(loso, [pairs[r] for r in fsdd.recordings if r.speaker == speaker]), 4)
        seconds += loso_history.seconds
    return {
        "digit_acc": round(digit_acc, 4),
        "digit_acc_unseen_speaker": round(sum(unseen.values()) / len(unseen), 4),
        "unseen_speaker": unseen,
        "speakers": len(fsdd.speakers),
        "steps": config.steps,
        "train_seconds": round(model.history["seconds"], 1),
        "loso_train_runs": len(unseen),
        "loso_train_seconds": round(seconds, 1),
    }
