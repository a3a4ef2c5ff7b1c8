"""A unit LM (notebook 04): the course's one LM core over speech units, GSLM style, and TWIST's warm start.

A unit LM is the course's one decoder-only LM core (:class:`slm_course.lm.LM`) over de-duplicated
speech units instead of characters: no text anywhere in training. Units are shifted by
:data:`N_SPECIAL` so that ids 0-2 stay ``<pad>``, ``<bos>`` and ``<eos>`` as in the text LM, and an
utterance is ``<bos> u+3 ... <eos>`` (:func:`pack`, :meth:`UnitLM.tokens`).

- :class:`UnitLM` scores unit sequences (summed log p and token counts, for the zero-shot pair
  tests) and continues a prompt;
- :class:`NgramLM` gives the unigram and bigram baselines with the same ``score``;
- :func:`warm_start` copies a text LM's Transformer body into a unit LM (TWIST, Hassid et al. 2023).

How the course trains and evaluates it (the data, the cached models, the zero-shot tests, FSDD, the
benchmark) is :mod:`slm_course.ulm_recipe`; the TWIST experiment is :mod:`slm_course.twist`.

>>> ulm = load_unit_lm()                                  # doctest: +SKIP
>>> ulm.score([units_a, units_b])                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from slm_course.lm import LM, LMConfig
from slm_course.speech_tokens import check_ids

__all__ = [
    "BOS",
    "EOS",
    "N_SPECIAL",
    "PAD",
    "NgramLM",
    "UlmConfig",
    "UnitLM",
    "check_units",
    "make_unit_lm",
    "pack",
    "warm_start",
]

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3  # unit u is token u + 3



@dataclass(frozen=True)
class UlmConfig:
    """The unit LM's size and training budget (the notebook-04 recipe)."""

    d_model: int = 128  # the text LM's width, so that TWIST can copy its body
    n_layers: int = 2
    n_heads: int = 4
    context: int = 128  # tokens per training window (an utterance is ~40-120 units)
    batch_size: int = 32
    steps: int = 1200
    lr: float = 3e-3
    warmup_steps: int = 50
    dropout: float = 0.1  # units are few (the corpus' training split): some regularisation helps
    max_len: int = 512
    seed: int = 0
    extra_speech: int = 0  # > 0: add the training split of a second corpus draw of this size (seed 1): extra_unit_data

    def __post_init__(self) -> None:
        if isinstance(self.extra_speech, bool) or not isinstance(self.extra_speech, int) or self.extra_speech < 0:
            raise ValueError(f"extra_speech must be an int >= 0 (0 = the corpus' training split only), "
                             f"got {self.extra_speech!r}")
        if self.context < 2 or self.context > self.max_len:
            raise ValueError(f"context must be in 2..max_len ({self.max_len}), got {self.context}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")


def check_units(seq: torch.Tensor | Sequence[int], vocab_size: int, what: str = "units") -> torch.Tensor:
    """``seq`` as a ``(T,)`` long tensor of raw unit ids in ``0..vocab_size-1``, or a clear error."""
    return check_ids(seq, vocab_size, 1, what=what, shape="(T,), one sequence of unit ids",
                     hint="pass raw unit ids, not LM tokens (the +3 offset is added here)")


def pack(seqs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``<bos> u+3 ... <eos> <bos> ...``: one long stream of LM tokens."""
    parts = []
    for s in seqs:
        parts += [torch.tensor([BOS]), s.long() + N_SPECIAL, torch.tensor([EOS])]
    return torch.cat(parts)



@dataclass
class UnitLM:
    """A trained unit LM: the model, the number of units it reads, its recipe and its metrics."""

    model: LM
    n_units: int
    config: UlmConfig
    metrics: dict

    def tokens(self, units: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """LM tokens of one unit sequence: ``<bos> u+3 ... <eos>``."""
        x = check_units(units, self.n_units)
        return torch.cat([torch.tensor([BOS]), x + N_SPECIAL, torch.tensor([EOS])])

    @torch.no_grad()
    def score(self, seqs: Sequence[torch.Tensor], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed ``log p`` of each unit sequence (its units and ``<eos>``, given ``<bos>``) and the token counts."""
        if len(seqs) == 0:
            raise ValueError("score() needs at least one unit sequence")
        self.model.eval()
        toks = [self.tokens(s) for s in seqs]
        longest = max(range(len(toks)), key=lambda i: len(toks[i]))
        if len(toks[longest]) > self.model.cfg.max_len:
            raise ValueError(f"sequence {longest} has {len(toks[longest]) - 2} units; this LM scores at most "
                             f"{self.model.cfg.max_len - 2} (its max_len with <bos> and <eos>): split it or score a window")
        sums, counts = torch.zeros(len(toks)), torch.zeros(len(toks), dtype=torch.long)
        order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            T = max(len(toks[i]) for i in chunk)
            batch = torch.full((len(chunk), T), PAD)
            for row, i in enumerate(chunk):
                batch[row, : len(toks[i])] = toks[i]
            lengths = torch.tensor([len(toks[i]) for i in chunk])
            s, n = self.model.score(batch, lengths)
            sums[chunk], counts[chunk] = s, n
        return sums, counts

    @torch.no_grad()
    def loss(self, seqs: Sequence[torch.Tensor]) -> float:
        """Mean next-token loss (nats per token) over ``seqs``."""
        s, n = self.score(seqs)
        return float(-s.sum() / n.sum())

    @torch.no_grad()
    def continue_units(
        self, prompt: torch.Tensor | Sequence[int], max_new_units: int = 60, temperature: float = 1.0,
        top_k: int | None = None, seed: int = 0, stop_at_eos: bool = True,
    ) -> torch.Tensor:
        """Unit ids sampled after ``prompt`` (specials never come out as units).

        With ``stop_at_eos`` the LM may end the utterance (``<eos>``) before ``max_new_units``; without
        it, ``<eos>`` is never sampled and exactly ``max_new_units`` units come back (fewer only when
        the LM's context is full): a continuation of a fixed length, as AudioLM's semantic stage makes.
        """
        x = check_units(prompt, self.n_units, "prompt")
        if x.numel() == 0:
            raise ValueError("the prompt is empty: give at least one unit (e.g. the first units of an utterance)")
        ids = torch.cat([torch.tensor([BOS]), x + N_SPECIAL])
        room = self.model.cfg.max_len - len(ids)
        if room < 1:
            raise ValueError(f"the prompt has {len(x)} units; this LM reads at most {self.model.cfg.max_len - 2}: "
                             f"pass its last ones, e.g. prompt[-{self.model.cfg.max_len - 2}:]")
        out = self.model.generate(ids, min(max_new_units, room), temperature=temperature, top_k=top_k,
                                  generator=torch.Generator().manual_seed(seed), stop_token=EOS,
                                  banned=None if stop_at_eos else (PAD, BOS, EOS))
        new = out[len(ids) :]
        keep = []
        for t in new.tolist():
            if t == EOS:
                break
            if t >= N_SPECIAL:  # <pad>/<bos> are never trained as targets; skip them if sampled
                keep.append(t - N_SPECIAL)
        return torch.tensor(keep, dtype=torch.long)


def make_unit_lm(n_units: int, config: UlmConfig | None = None) -> LM:
    """An untrained unit LM for ``n_units`` units, of the size ``config`` gives (default ``UlmConfig()``)."""
    config = UlmConfig() if config is None else config
    torch.manual_seed(config.seed)
    return LM(LMConfig(vocab_size=n_units + N_SPECIAL, d_model=config.d_model, n_layers=config.n_layers,
                       n_heads=config.n_heads, max_len=config.max_len, dropout=config.dropout))


def warm_start(unit_model: LM, text_model: LM, shrink: float = 1.0, noise: float = 0.01) -> LM:
    """TWIST: copy the text LM's Transformer body (blocks, final norm, positions) into ``unit_model``.

    The token embeddings and the output head stay new (the vocabularies differ): only what the text
    LM learned about sequences is reused. The two must have the same width, depth and heads.

    ``shrink < 1`` scales the copied blocks' weight matrices by ``shrink`` and adds Gaussian noise of
    std ``noise`` ("shrink and perturb", Ash & Adams 2020): the copied structure stays, at a scale
    the new, random unit embeddings can still move. ``shrink=1`` (default) is TWIST's plain copy.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1] (1 = a plain copy), got {shrink!r}")
    a, b = unit_model.cfg, text_model.cfg
    if (a.d_model, a.n_layers, a.n_heads) != (b.d_model, b.n_layers, b.n_heads):
        raise ValueError(
            f"the unit LM (d_model {a.d_model}, {a.n_layers} layers, {a.n_heads} heads) and the text LM "
            f"(d_model {b.d_model}, {b.n_layers} layers, {b.n_heads} heads) must have the same body to copy it"
        )
    unit_model.blocks.load_state_dict(text_model.blocks.state_dict())
    unit_model.ln_f.load_state_dict(text_model.ln_f.state_dict())
    n = min(a.max_len, b.max_len)
    with torch.no_grad():
        unit_model.pos_emb.weight[:n] = text_model.pos_emb.weight[:n]
        if shrink < 1:
            for p in unit_model.blocks.parameters():
                if p.ndim >= 2:  # weight matrices; norms and biases keep their values
                    p.mul_(shrink).add_(noise * torch.randn_like(p))
    return unit_model


class NgramLM:
    """Unigram or bigram unit LM with add-``alpha`` smoothing: the baselines of the zero-shot tests.

    >>> lm = NgramLM(order=2, n_units=3).fit([torch.tensor([0, 1, 2, 1])])
    >>> round(float(lm.score([torch.tensor([0, 1])])[0][0]), 3) < 0
    True
    """

    def __init__(self, order: int, n_units: int, alpha: float = 0.1) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0 (counts added to every cell; 0: no smoothing, so an unseen bigram "
                             f"scores log p = -inf; the course uses 0.1), got {alpha!r}")
        self.order, self.n_units, self.alpha = order, n_units, alpha
        self.V = n_units + N_SPECIAL
        self.logp: torch.Tensor | None = None

    def fit(self, seqs: Sequence[torch.Tensor]) -> NgramLM:
        counts = torch.zeros(self.V, self.V) if self.order == 2 else torch.zeros(self.V)
        for s in seqs:
            t = torch.cat([torch.tensor([BOS]), check_units(s, self.n_units) + N_SPECIAL, torch.tensor([EOS])])
            if self.order == 2:
                counts.index_put_((t[:-1], t[1:]), torch.ones(len(t) - 1), accumulate=True)
            else:
                counts.index_add_(0, t[1:], torch.ones(len(t) - 1))
        counts = counts + self.alpha
        self.logp = (counts / counts.sum(-1, keepdim=True)).log()
        return self

    def score(self, seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log p of each sequence (units and ``<eos>``) and the token counts, like :meth:`UnitLM.score`."""
        if self.logp is None:
            raise RuntimeError("fit() the n-gram model first")
        sums, counts = [], []
        for s in seqs:
            t = torch.cat([torch.tensor([BOS]), check_units(s, self.n_units) + N_SPECIAL, torch.tensor([EOS])])
            lp = self.logp[t[:-1], t[1:]] if self.order == 2 else self.logp[t[1:]]
            sums.append(float(lp.sum()))
            counts.append(len(t) - 1)
        return torch.tensor(sums), torch.tensor(counts)

    def loss(self, seqs: Sequence[torch.Tensor]) -> float:
        """Mean next-token loss (nats per token) over ``seqs``, like :meth:`UnitLM.loss`."""
        s, n = self.score(seqs)
        return float(-s.sum() / n.sum())
