"""A speech + text LM in the style of SpiRit-LM (notebook 07): one LM over text and speech tokens.

SpiRit-LM (Nguyen et al., TACL 2025) continues a text LM on text, on speech units, and on sequences
that switch modality at word boundaries, each stretch opened by a marker::

    [TEXT]the cook[SPEECH][Hu12][Hu7][Hu77]...[TEXT]the cake

This module holds the model's side of that recipe:

- :class:`SpiritVocab`: one vocabulary, the text LM's characters first (so its embeddings carry
  over), then the two markers, then the speech units;
- :func:`word_units`: an utterance's de-duplicated units cut at its true word boundaries;
- :func:`interleave`: one sequence from words, their units and a list of spans, and
  :func:`random_spans`, the spans drawn as SpiRit-LM draws them (lengths scaled to the corpus);
- :class:`SpiritConfig`, the model's size, training budget and data mix;
- :func:`warm_start_text`: the text LM's body *and* its character embeddings copied in;
- :class:`SpiritLM`: the trained model with its vocabulary; ``score`` gives log p(continuation |
  prompt) for any mix of modalities, ``continue_text`` and ``continue_units`` write text or speech
  after any prompt.

The data, training, evaluations and benchmark are in :mod:`slm_course.spiritlm_recipe`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from slm_course.lm import LM, LMConfig
from slm_course.runtime import artifact_record
from slm_course.speech_tokens import check_ids

__all__ = ["MIXES", "SpiritConfig", "SpiritLM", "SpiritVocab", "interleave", "random_spans", "warm_start_text",
           "word_units"]

PAD, BOS, EOS = 0, 1, 2  # shared with the text tokenizer (text.SPECIALS)
MIXES = {  # share of training sequences of each kind: text-only, speech-only, word-level interleaved
    "interleaved": (0.25, 0.25, 0.5),
    "no_interleave": (0.5, 0.5, 0.0),  # the same text : speech ratio, without the interleaved half
    "speech_only": (0.0, 1.0, 0.0),
}


@dataclass(frozen=True)
class SpiritVocab:
    """Ids ``0 .. n_text-1``: the text tokenizer's (``<pad>``, ``<bos>``, ``<eos>``, characters); then
    ``[TEXT]`` and ``[SPEECH]``; then unit ``u`` at ``unit_offset + u``."""

    n_text: int  # the text tokenizer's vocabulary size
    n_units: int  # speech units (K)

    def __post_init__(self) -> None:
        for name in ("n_text", "n_units"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 4:
                raise ValueError(f"{name} must be an int >= 4, got {v!r}")

    @property
    def text_marker(self) -> int:
        return self.n_text

    @property
    def speech_marker(self) -> int:
        return self.n_text + 1

    @property
    def unit_offset(self) -> int:
        return self.n_text + 2

    @property
    def size(self) -> int:
        return self.unit_offset + self.n_units

    def units(self, units: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Raw unit ids ``0 .. n_units-1`` (a tokenizer's output, not vocabulary ids) -> vocabulary ids (no marker).

        Give one flat sequence: an utterance's per-word tensors (:func:`word_units`) are ``torch.cat`` ed first.
        Ids shifted already (the output of this method) must not come back: those below ``n_units`` would be
        shifted twice without an error.
        """
        if isinstance(units, list | tuple) and any(isinstance(u, torch.Tensor) and u.ndim > 0 for u in units):
            raise TypeError(f"units is a list of {len(units)} per-word tensors (word_units, data[...]['units'][i]): "
                            "torch.cat(...) them into one tensor first, as the chapter does")
        x = check_ids(torch.as_tensor(units), self.n_units, 1, what="units", allow_empty=True)
        return x.long() + self.unit_offset

    def render(self, ids: torch.Tensor | Sequence[int], tokenizer, max_units: int = 6) -> str:
        """A sequence as text a person can read: ``<bos>[TEXT]the cook[SPEECH]<u12 u7 ... 9 units>...``."""
        out, run = [], []

        def flush() -> None:
            if run:
                shown = " ".join(f"u{u}" for u in run[:max_units])
                out.append(f"<{shown}{' ...' if len(run) > max_units else ''} {len(run)} units>")
                run.clear()

        names = {PAD: "<pad>", BOS: "<bos>", EOS: "<eos>", self.text_marker: "[TEXT]", self.speech_marker: "[SPEECH]"}
        for t in torch.as_tensor(ids).tolist():
            if t >= self.unit_offset:
                run.append(t - self.unit_offset)
                continue
            flush()
            out.append(names.get(t) or tokenizer.decode([t]))
        flush()
        return "".join(out)


def word_units(units: torch.Tensor, durations: torch.Tensor, spans: Sequence, frame_rate: float) -> list[torch.Tensor]:
    """Cut an utterance's de-duplicated units at its word boundaries: one ``(n_i,)`` tensor per word.

    ``units``/``durations``: a de-duplicated unit sequence and each unit's frames; ``spans``: the
    words' ``(word, start s, end s)`` (``Utterance.word_spans``). A unit belongs to the word whose span holds its midpoint; a
    unit in a pause (or before the first word, after the last) goes to the nearest word, so no unit
    is lost and the words' units, concatenated, give back ``units``.
    """
    units, durations = torch.as_tensor(units).long(), torch.as_tensor(durations).long()
    if units.ndim != 1 or units.shape != durations.shape:
        raise ValueError(f"units {tuple(units.shape)} and durations {tuple(durations.shape)} must be two (T,) "
                         "tensors of one length (SpeechTokens.ids and .durations)")
    if len(spans) == 0:
        raise ValueError("spans is empty: an utterance needs at least one word (Utterance.word_spans)")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be > 0 (frames per second), got {frame_rate!r}")
    ends = torch.cumsum(durations, 0).double() / frame_rate
    mids = (ends - durations.double() / (2 * frame_rate)).numpy()
    starts = np.array([float(s.start if hasattr(s, "start") else s[1]) for s in spans])
    stops = np.array([float(s.end if hasattr(s, "end") else s[2]) for s in spans])
    centres = (starts + stops) / 2
    owner = np.empty(len(mids), dtype=np.int64)
    for i, m in enumerate(mids):
        inside = np.nonzero((starts <= m) & (m < stops))[0]
        owner[i] = inside[0] if len(inside) else int(np.argmin(np.minimum(abs(m - starts), abs(m - stops))
                                                               + 1e-9 * abs(m - centres)))
    owner = np.maximum.accumulate(owner)  # units stay in order: a word never takes a unit back
    return [units[torch.from_numpy(owner == w)] for w in range(len(spans))]


def random_spans(n_words: int, rng: np.random.Generator, lengths: tuple[int, int] = (1, 3)) -> list[tuple[str, int]]:
    """Alternating ``("text" | "speech", n)`` spans covering ``n_words`` words, each of ``lengths[0]..lengths[1]``
    words, the first modality drawn at random (SpiRit-LM draws 10-30 text and 5-15 speech words; the
    corpus' sentences have about 6)."""
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be an int >= 1, got {n_words!r}")
    lo, hi = lengths
    if not 1 <= lo <= hi:
        raise ValueError(f"lengths must be (lo, hi) with 1 <= lo <= hi, got {lengths!r}")
    modality = "text" if rng.random() < 0.5 else "speech"
    spans, left = [], n_words
    while left:
        n = min(left, int(rng.integers(lo, hi + 1)))
        spans.append((modality, n))
        left -= n
        modality = "speech" if modality == "text" else "text"
    return spans


def interleave(words: Sequence[str], units: Sequence[torch.Tensor], spans: Sequence[tuple[str, int]],
               vocab: SpiritVocab, encode_text, bos: bool = True, eos: bool = True) -> torch.Tensor:
    """One sequence: each span's words as text (``[TEXT]`` + characters) or as speech (``[SPEECH]`` + units).

    ``units[i]``: the units of ``words[i]`` (:func:`word_units`); ``encode_text(str) -> list[int]``:
    the text tokenizer. Words of one text span are joined by spaces; the marker separates spans.
    """
    if len(words) != len(units):
        raise ValueError(f"{len(words)} words but {len(units)} unit tensors: give one tensor per word (word_units)")
    if sum(n for _, n in spans) != len(words):
        raise ValueError(f"the spans cover {sum(n for _, n in spans)} words, the utterance has {len(words)}")
    ids, i = [BOS] if bos else [], 0
    for modality, n in spans:
        if modality == "text":
            ids += [vocab.text_marker, *encode_text(" ".join(words[i : i + n]))]
        elif modality == "speech":
            ids += [vocab.speech_marker, *vocab.units(torch.cat([torch.as_tensor(u).long() for u in units[i : i + n]]))
                    .tolist()]
        else:
            raise ValueError(f"a span's modality is 'text' or 'speech', got {modality!r}")
        i += n
    return torch.tensor(ids + ([EOS] if eos else []), dtype=torch.long)


@artifact_record  # cached models store their config: allowed in weights-only loading
@dataclass(frozen=True)
class SpiritConfig:
    """The SpiRit-LM toy's size, data mix and training budget (the notebook-07 recipe)."""

    mix: str = "interleaved"  # a key of MIXES: which kinds of sequence it trains on
    warm: bool = True  # start from the notebook-01 text LM (body and character embeddings), as SpiRit-LM from LLaMA
    span_words: tuple[int, int] = (1, 3)  # words per interleaved span (random_spans)
    d_model: int = 128  # the text LM's width, depth and heads, so that its weights can be copied
    n_layers: int = 2  # (the text LM's depth and heads)
    n_heads: int = 4
    context: int = 128  # tokens per training window (an interleaved sentence is about 60)
    batch_size: int = 16  # windows per step: three models fit the prepare budget, and interleaving's effect holds
    steps: int = 1500  # the budget at which interleaving's gains hold in both directions
    extra_speech: int = 9000  # > 0: add the training split of the second corpus draw of this size (notebook 05's)
    lr: float = 3e-3  # AdamW's peak learning rate, after `warmup_steps` of linear warm-up, then a cosine decay
    warmup_steps: int = 50
    dropout: float = 0.1  # on the MLP's output
    # none on the attention probabilities: there dropout forces PyTorch's unfused attention, a slower step, and
    # the cross-modal tests do not need it
    attn_dropout: float = 0.0
    max_len: int = 256  # the text LM's positions
    seed: int = 0  # the new embedding rows and the draw of every batch

    def __post_init__(self) -> None:
        if isinstance(self.extra_speech, bool) or not isinstance(self.extra_speech, int) or self.extra_speech < 0:
            raise ValueError(f"extra_speech must be an int >= 0 (0 = the corpus' training split only), "
                             f"got {self.extra_speech!r}")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {sorted(MIXES)}, got {self.mix!r}")
        if not 2 <= self.context <= self.max_len:
            raise ValueError(f"context must be in 2..max_len ({self.max_len}), got {self.context}")
        lo, hi = self.span_words
        if not 1 <= lo <= hi:
            raise ValueError(f"span_words must be (lo, hi) with 1 <= lo <= hi, got {self.span_words!r}")

    def lm_config(self, vocab: SpiritVocab) -> LMConfig:
        return LMConfig(vocab_size=vocab.size, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                        max_len=self.max_len, dropout=self.dropout,
                        attn_dropout=self.attn_dropout)


def warm_start_text(model: LM, text_model: LM) -> LM:
    """Copy the text LM into the first rows of ``model``: its body, positions and character embeddings.

    The vocabulary grows as SpiRit-LM grows LLaMA's: the text ids keep their embeddings (so the model
    still reads and writes text from step 0), the markers and units start new.
    """
    a, b = model.cfg, text_model.cfg
    if (a.d_model, a.n_layers, a.n_heads) != (b.d_model, b.n_layers, b.n_heads):
        raise ValueError(f"the model (d_model {a.d_model}, {a.n_layers} layers, {a.n_heads} heads) and the text LM "
                         f"(d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads) must share their body")
    if a.vocab_size < b.vocab_size:
        raise ValueError(f"the model's vocabulary ({a.vocab_size}) must extend the text LM's ({b.vocab_size})")
    model.blocks.load_state_dict(text_model.blocks.state_dict())
    model.ln_f.load_state_dict(text_model.ln_f.state_dict())
    n = min(a.max_len, b.max_len)
    with torch.no_grad():
        model.pos_emb.weight[:n] = text_model.pos_emb.weight[:n]
        model.tok_emb[0].weight[: b.vocab_size] = text_model.tok_emb[0].weight
    return model


def _check_prompt(prompt: object, vocab: SpiritVocab, what: str = "prompt") -> list[int]:
    """A prompt as a list of vocabulary ids, or a clear error that says how to build one."""
    if isinstance(prompt, str) or not isinstance(prompt, Sequence | torch.Tensor):
        raise TypeError(f"{what} must be vocabulary ids (a list of ints), got {type(prompt).__name__}: build it with "
                        "lm.text('the cook') or lm.speech(units)")
    ids = [int(t) for t in (prompt.tolist() if isinstance(prompt, torch.Tensor) else prompt)]
    bad = [t for t in ids if not 0 <= t < vocab.size]
    if bad:
        raise ValueError(f"{what} holds ids outside the vocabulary (0..{vocab.size - 1}): {bad[:5]}; build it with "
                         "lm.text(...) or lm.speech(units), whose units are 0..K-1 before the shift")
    return ids


def _in_modality(prompt: list[int], marker: int, vocab: SpiritVocab) -> list[int]:
    """``<bos>`` + the prompt, then ``marker``, unless the prompt's last stretch is already in that modality."""
    markers = [t for t in prompt if t in (vocab.text_marker, vocab.speech_marker)]
    return [BOS, *prompt] + ([] if markers and markers[-1] == marker else [marker])


@dataclass
class SpiritLM:
    """A trained speech + text LM, its vocabulary and text tokenizer, its recipe and metrics."""

    model: LM
    vocab: SpiritVocab
    tokenizer: object  # the text LM's CharTokenizer
    config: SpiritConfig
    metrics: dict

    def text(self, text: str) -> list[int]:
        """``[TEXT]`` + the characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        return [self.vocab.text_marker, *self.tokenizer.encode(text)]

    def speech(self, units: torch.Tensor | Sequence[int]) -> list[int]:
        """``[SPEECH]`` + the units, as vocabulary ids.

        ``units``: raw unit ids ``0 .. K-1`` in one flat sequence (a tokenizer's output, or per-word units
        ``torch.cat`` ed), not vocabulary ids: this shifts them (:meth:`SpiritVocab.units`), so do not shift first.
        """
        return [self.vocab.speech_marker, *self.vocab.units(units).tolist()]

    @torch.no_grad()
    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
              batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log p(continuation | ``<bos>`` prompt) of each pair, and the continuation's token counts.

        Prompts and continuations are vocabulary ids (build them with :meth:`text` and :meth:`speech`); only
        the continuation is scored, so a modality switch's marker ends the prompt. Divide the sum by the count
        for the token-normalised score. A long prompt is cut from the left to the window the model was
        trained on (``config.context``).
        """
        if len(prompts) != len(continuations) or not prompts:
            raise ValueError(f"need as many prompts as continuations, at least one: got {len(prompts)} and "
                             f"{len(continuations)}")
        rows = []
        for i, (p, c) in enumerate(zip(prompts, continuations)):
            p, c = _check_prompt(p, self.vocab, f"prompts[{i}]"), _check_prompt(c, self.vocab, f"continuations[{i}]")
            if len(c) == 0:
                raise ValueError(f"continuation {i} is empty: there is nothing to score")
            if len(c) >= self.config.context:
                raise ValueError(f"continuation {i} has {len(c)} tokens; this model was trained on windows of "
                                 f"{self.config.context}: score a shorter one")
            ids = [BOS, *p, *c][-self.config.context :]
            rows.append((torch.tensor(ids, dtype=torch.long), len(c)))
        self.model.eval()
        sums, counts = torch.zeros(len(rows)), torch.zeros(len(rows), dtype=torch.long)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            T = max(len(rows[i][0]) for i in chunk)
            batch = torch.full((len(chunk), T), PAD)
            for r, i in enumerate(chunk):
                batch[r, : len(rows[i][0])] = rows[i][0]
            logp = self.model.logits(batch).float().log_softmax(-1)
            for r, i in enumerate(chunk):
                ids, n = rows[i]
                L = len(ids)
                picked = logp[r, L - n - 1 : L - 1].gather(-1, ids[L - n :, None]).squeeze(-1)
                sums[i], counts[i] = picked.sum(), n
        return sums, counts

    def _room(self, ids: torch.Tensor) -> int:
        """Tokens a continuation of ``ids`` may add within the training window (positions past it were never trained)."""
        window = min(self.config.context, self.model.cfg.max_len)
        if len(ids) >= window:
            raise ValueError(f"the prompt is {len(ids)} tokens with <bos> and the marker; this model was trained on "
                             f"windows of {window}: give it a shorter prompt (its last tokens)")
        return window - len(ids)

    @torch.no_grad()
    def continue_text(self, prompt: Sequence[int], max_new_tokens: int = 40, temperature: float = 0.0,
                      seed: int = 0) -> str:
        """Text written after ``prompt`` (vocabulary ids, e.g. ``lm.speech(units)``): ``[TEXT]`` is appended (unless
        the prompt ends in text already: then the text goes on) and characters are drawn (never a marker or a
        unit) until ``<eos>``, the prompt and the text within the training window (``config.context`` tokens)."""
        ids = torch.tensor(_in_modality(_check_prompt(prompt, self.vocab), self.vocab.text_marker, self.vocab),
                           dtype=torch.long)
        room = self._room(ids)
        banned = [PAD, BOS, self.vocab.text_marker, self.vocab.speech_marker, *range(self.vocab.unit_offset, self.vocab.size)]
        out = self.model.generate(ids, min(max_new_tokens, room), temperature=temperature,
                                  generator=torch.Generator().manual_seed(seed), stop_token=EOS, banned=banned)
        new = [t for t in out[len(ids) :].tolist() if t != EOS]
        return self.tokenizer.decode(new)

    @torch.no_grad()
    def continue_units(self, prompt: Sequence[int], max_new_units: int = 40, temperature: float = 0.0,
                       seed: int = 0) -> torch.Tensor:
        """Unit ids written after ``prompt`` (vocabulary ids, e.g. ``lm.text("the cook")``): ``[SPEECH]`` is
        appended (unless the prompt ends in speech already, e.g. ``lm.speech(units)``: then the speech goes on)
        and units are drawn (never a marker or a character) until ``<eos>``, the prompt and the units within the
        training window (``config.context`` tokens); at least one unit."""
        ids = torch.tensor(_in_modality(_check_prompt(prompt, self.vocab), self.vocab.speech_marker, self.vocab),
                           dtype=torch.long)
        room = self._room(ids)
        no_text = [PAD, BOS, *range(EOS + 1, self.vocab.unit_offset)]  # characters and markers
        first = self.model.generate(ids, 1, temperature=temperature, generator=torch.Generator().manual_seed(seed),
                                    banned=[*no_text, EOS])
        out = self.model.generate(first, min(max_new_units, room) - 1, temperature=temperature,
                                  generator=torch.Generator().manual_seed(seed + 1), stop_token=EOS,
                                  banned=no_text) if min(max_new_units, room) > 1 else first
        new = [t - self.vocab.unit_offset for t in out[len(ids) :].tolist() if t != EOS]
        return torch.tensor(new, dtype=torch.long)
