"""A speech-aware text LM (notebook 09): a frozen text LM that reads speech through an adapter, SALMONN / Qwen-Audio style.

The third family of spoken language models models p(text | speech, text). A text LM trained on text
alone stays frozen; a frozen speech encoder hears the audio; a small trained *adapter* turns the
encoder's frames into vectors that the LM reads where it would read word embeddings; LoRA lets the
LM's linear layers change a little without touching their weights. This file is the model; its data,
training and measurements are :mod:`slm_course.salmonn_recipe`.

- :class:`PoolAdapter` (Qwen-Audio's pooling): average the encoder's frames in groups of ``stride``, then a small MLP
  to the LM's width (Qwen-Audio projects with one linear layer): one LM position per ``stride`` frames.
- :class:`WindowQFormer` (SALMONN): cut the frames into windows of ``window`` frames; in each window,
  ``n_queries`` learned query vectors attend to the window's frames (a Q-Former layer: self-attention
  among the queries, cross-attention to the frames, an MLP), then a projection to the LM's width.
- :func:`add_lora` puts LoRA (Hu et al., 2021) on the LM's linear layers through ``peft``, the field's
  library: each target ``nn.Linear`` computes ``W x + (alpha / r) * B A x`` with ``A`` (r x in) and
  ``B`` (out x r, zero at the start) trained and ``W`` frozen. :func:`set_lora_scale` scales the update
  at test time (SALMONN's remedy for task over-fitting).
- :class:`SpeechAwareLM` builds the sequence ``<bos> <audio> a_1 .. a_N </audio> prompt <reply> answer
  <eos>``: the audio slots hold the adapter's vectors, the rest are the frozen LM's character
  embeddings, and a few *new* tokens (``<audio>``, ``</audio>``, ``<reply>``, task tags) get trained
  embedding rows of their own. The loss is the answer's next-token loss (each example's mean, then the
  mean over examples); nothing else is predicted.

>>> from slm_course.lm import LM, LMConfig
>>> lm = LM(LMConfig(vocab_size=8, d_model=32, n_heads=2))
>>> model = SpeechAwareLM(lm, PoolAdapter(12, 32), n_new_tokens=3)
>>> tokens = torch.tensor([[0, 8, AUDIO, AUDIO, 9, 3, 10, 4, 1]])
>>> out = model({"feats": torch.randn(1, 4, 12), "feat_lengths": torch.tensor([4]), "tokens": tokens,
...              "targets": torch.tensor([[-100] * 6 + [4, 1, -100]])})
>>> out["loss"].shape, out["logits"].shape
(torch.Size([]), torch.Size([1, 9, 11]))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slm_course.lm import IGNORE, LM

__all__ = ["AUDIO", "SUMMARY", "PoolAdapter", "SpeechAwareLM", "WindowQFormer", "add_lora", "frozen_digest", "set_lora_scale"]

AUDIO = -1  # the id that marks an audio slot in a token row: the adapter's next vector goes there
SUMMARY = -2  # the id that marks a slot for a vector about the whole utterance (the adapter's ``n_global``)


def _mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) True on the first ``lengths[b]`` positions of each row."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _check_frames(feats: torch.Tensor, lengths: torch.Tensor, d_in: int) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 3 or feats.shape[2] != d_in:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise ValueError(f"feats must be (B, T, {d_in}) encoder frames, got {shape}; "
                         "make them with salmonn_recipe.encode_speech")
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=feats.device)
    if lengths.shape != (feats.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > feats.shape[1]:
        raise ValueError(f"feat_lengths must hold one frame count in [1, {feats.shape[1]}] per row "
                         f"({feats.shape[0]}), got {lengths.tolist()}")
    return lengths


class PoolAdapter(nn.Module):
    """Qwen-Audio's pooling: average the frames by ``stride`` (padding left out of each mean), then a small MLP where
    Qwen-Audio has one linear layer."""

    def __init__(self, d_in: int, d_lm: int, stride: int = 2, hidden: int = 256, n_global: int = 0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int (frames per LM position), got {stride!r}")
        if n_global not in (0, 1):
            raise ValueError(f"n_global must be 0 or 1 (one vector: the mean of all frames), got {n_global!r}")
        self.d_in, self.stride, self.n_global = d_in, stride, n_global
        self.norm = nn.LayerNorm(d_in)
        self.drop = nn.Dropout(dropout)  # on the encoder's features while training: 2,251 utterances are few
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_lm))

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """LM positions per utterance for the frames: ceil(frames / stride) (the summary comes on top)."""
        return (torch.as_tensor(lengths) + self.stride - 1) // self.stride

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, d_in) frames -> (B, ceil(T / stride), d_lm) vectors, their lengths (B,), and the summary
        (B, n_global, d_lm): the MLP of the mean of every frame."""
        lengths = _check_frames(feats, lengths, self.d_in)
        B, T, D = feats.shape
        pad = -T % self.stride
        x = F.pad(self.drop(self.norm(feats)) * _mask(lengths, T)[..., None], (0, 0, 0, pad))  # (B, T + pad, D)
        count = F.pad(_mask(lengths, T).float(), (0, pad)).view(B, -1, self.stride).sum(-1)  # (B, T')
        pooled = x.view(B, -1, self.stride, D).sum(2) / count.clamp(min=1)[..., None]  # (B, T', D)
        summary = self.mlp(x.sum(1, keepdim=True) / lengths[:, None, None])[:, : self.n_global]  # (B, 0 or 1, d)
        return self.mlp(pooled), self.out_lengths(lengths), summary


class WindowQFormer(nn.Module):
    """SALMONN's window-level Q-Former: ``n_queries`` learned queries per window of ``window`` frames.

    In each window, the queries attend to each other and to the window's frames (plus a position
    embedding within the window), through ``n_layers`` Transformer decoder layers; a linear layer maps
    each query's output to the LM's width.
    """

    def __init__(self, d_in: int, d_lm: int, window: int = 4, n_queries: int = 1, d_model: int = 128,
                 n_layers: int = 1, n_heads: int = 4, n_global: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("window", window), ("n_queries", n_queries), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(n_global, bool) or not isinstance(n_global, int) or n_global < 0:
            raise ValueError(f"n_global must be an int >= 0 (queries over the whole utterance), got {n_global!r}")
        self.d_in, self.window, self.n_queries, self.n_global = d_in, window, n_queries, n_global
        self.global_queries = nn.Parameter(torch.randn(n_global, d_model) * 0.02)
        self.inp = nn.Sequential(nn.LayerNorm(d_in), nn.Dropout(dropout), nn.Linear(d_in, d_model))
        self.pos = nn.Parameter(torch.randn(window, d_model) * 0.02)  # where in its window a frame is
        self.queries = nn.Parameter(torch.randn(n_queries, d_model) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_lm))

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """LM positions per utterance for the windows: ceil(frames / window) * n_queries (the summary comes on top)."""
        return (torch.as_tensor(lengths) + self.window - 1) // self.window * self.n_queries

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, d_in) frames -> (B, ceil(T / window) * n_queries, d_lm) vectors, their lengths (B,), and the
        summary (B, n_global, d_lm): the outputs of the queries that attend to every frame."""
        lengths = _check_frames(feats, lengths, self.d_in)
        B, T, _ = feats.shape
        W, Q = self.window, self.n_queries
        pad = -T % W
        x = F.pad(self.inp(feats), (0, 0, 0, pad))  # (B, T + pad, d)
        n = x.shape[1] // W
        frames = x.view(B * n, W, -1) + self.pos  # one row per window
        padding = ~F.pad(_mask(lengths, T), (0, pad)).view(B * n, W)  # True where a frame is padding
        padding[:, 0] = False  # a window of padding only still attends somewhere; its output is dropped
        q = self.queries.expand(B * n, Q, -1)
        for layer in self.layers:
            q = layer(q, frames, memory_key_padding_mask=padding)
        g = self.global_queries.expand(B, -1, -1)  # utterance-level queries over every frame (SALMONN's paper
        every = frames.reshape(B, n * W, -1)  # compares such a Q-Former with the window-level one)
        for layer in self.layers if self.n_global else ():
            g = layer(g, every, memory_key_padding_mask=~F.pad(_mask(lengths, T), (0, pad)))
        return self.out(q).reshape(B, n * Q, -1), self.out_lengths(lengths), self.out(g)


def add_lora(lm: LM, rank: int = 8, alpha: float = 16.0, targets: Sequence[str] = ("qkv", "proj")) -> LM:
    """Freeze ``lm`` and put LoRA on the linear layers named in ``targets`` (``peft``), in place; returns ``lm``.

    ``targets``: by default attention's ``qkv`` and ``proj``; notebook 09's recipe adds the MLP's ``mlp.0`` and
    ``mlp.2`` (:class:`~slm_course.salmonn_recipe.SalmonnConfig`).

    Only the LoRA matrices are trainable afterwards. ``B`` starts at zero, so the LM computes exactly
    what it did before training.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int (e.g. 8), got {rank!r}")
    lm.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets)), lm)
    return lm


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """The ``peft`` LoRA layers inside ``model``."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def set_lora_scale(model: nn.Module, factor: float) -> None:
    """Scale every LoRA update in ``model`` to ``factor`` times its trained size (1 = as trained, 0 = the frozen LM)."""
    if not (isinstance(factor, int | float) and not isinstance(factor, bool) and factor >= 0):
        raise ValueError(f"factor must be a number >= 0 (1 = as trained, 0 = LoRA off), got {factor!r}")
    layers = lora_layers(model)
    if not layers:
        raise ValueError("this model has no LoRA layers (build it with add_lora).")
    for layer in layers:
        for name in layer.lora_A:
            layer.scaling[name] = factor * layer.lora_alpha[name] / layer.r[name]


def frozen_digest(lm: LM) -> str:
    """A SHA-256 of the LM's own weights (LoRA matrices excluded): equal before and after training if they stayed frozen."""
    h = hashlib.sha256()
    weights = {name.replace(".base_layer", ""): t for name, t in lm.state_dict().items() if "lora_" not in name}
    for name, tensor in sorted(weights.items()):  # names as before peft wrapped a layer
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class SpeechAwareLM(nn.Module):
    """A frozen LM + an adapter + ``n_new_tokens`` trained embedding rows (ids ``V .. V + n - 1``).

    ``forward(batch)`` takes ``feats`` (B, T, d_in) and ``feat_lengths`` (B,) (the encoder's frames),
    ``tokens`` (B, L) with :data:`AUDIO` in the audio slots (exactly as many per row as the adapter
    gives for that row), and ``targets`` (B, L) with ``IGNORE`` everywhere but the answer; it returns
    ``{"loss", "logits"}``. The LM's tied head is extended with the new rows, so new tokens can also
    be predicted.
    """

    def __init__(self, lm: LM, adapter: nn.Module, n_new_tokens: int) -> None:
        super().__init__()
        if not isinstance(lm, LM) or lm.cfg.n_streams != 1 or not lm.cfg.tie_weights:
            raise ValueError("lm must be a single-stream LM with tied weights (the course's text LM)")
        self.lm, self.adapter = lm, adapter
        self.vocab = lm.cfg.vocab_size
        self.new_emb = nn.Embedding(n_new_tokens, lm.cfg.d_model)
        nn.init.normal_(self.new_emb.weight, std=0.02)

    @property
    def vocab_size(self) -> int:
        """The frozen LM's tokens and the new ones."""
        return self.vocab + self.new_emb.num_embeddings

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) ids (no AUDIO) -> (B, L, d): the frozen table for ids < V, the new rows above."""
        old = self.lm.tok_emb[0](tokens.clamp(max=self.vocab - 1))
        new = self.new_emb((tokens - self.vocab).clamp(min=0))
        return torch.where((tokens >= self.vocab)[..., None], new, old)

    def inputs(self, feats: torch.Tensor, feat_lengths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The LM's input vectors: token embeddings, with the adapter's vectors in the AUDIO slots and its
        summary in the SUMMARY slots."""
        if tokens.dim() != 2 or int(tokens.max()) >= self.vocab_size or int(tokens.min()) < SUMMARY:
            raise ValueError(f"tokens must be (B, L) ids in 0..{self.vocab_size - 1}, AUDIO ({AUDIO}) or "
                             f"SUMMARY ({SUMMARY}) slots")
        audio, n, summary = self.adapter(feats, feat_lengths)  # (B, N, d), (B,), (B, G, d)
        slots, sslots = tokens == AUDIO, tokens == SUMMARY
        if not torch.equal(slots.sum(1).cpu(), n.cpu()) or bool((sslots.sum(1) != summary.shape[1]).any()):
            raise ValueError(f"each row needs as many AUDIO slots as the adapter gives ({n.tolist()}) and "
                             f"{summary.shape[1]} SUMMARY slots, got {slots.sum(1).tolist()} and "
                             f"{sslots.sum(1).tolist()}; build rows with salmonn_recipe.Prompter")
        x = self.embed(tokens.clamp(min=0))
        x = x.masked_scatter(slots[..., None], audio[_mask(n.to(audio.device), audio.shape[1])])
        if summary.shape[1]:
            x = x.masked_scatter(sslots[..., None], summary.reshape(-1, summary.shape[-1]))
        return x

    def logits_of(self, h: torch.Tensor) -> torch.Tensor:
        """(B, L, d) hidden states -> (B, L, V + n): the frozen LM's tied head, with the new rows."""
        return h @ torch.cat([self.lm.tok_emb[0].weight, self.new_emb.weight]).T

    def example_losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Each example's mean loss over its answer tokens (the rows that have targets), and the logits.

        ``batch["soft"]`` (optional, one entry per row): None, or the (answer tokens, vocabulary) probabilities
        that row is to learn at its answer positions in place of the one-hot targets (soft targets).
        """
        x = self.inputs(batch["feats"], batch["feat_lengths"], batch["tokens"])
        logits = self.logits_of(self.lm.hidden(None, embeds=x))
        targets = batch["targets"]
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")  # (B, L)
        sums = per_token.sum(1)
        soft = batch.get("soft")
        if soft is not None and any(p is not None for p in soft):
            logp = F.log_softmax(logits, -1)
            sums = torch.stack([sums[b] if p is None else -(p * logp[b][targets[b] != IGNORE]).sum()
                                for b, p in enumerate(soft)])
        # each example counts the same, whatever its answer's length: per token, a 40-character transcript
        # would outweigh "male" 40 to 1, and the one character that decides who speaks would hardly count
        counts = (targets != IGNORE).sum(1)
        rows = counts > 0
        return sums[rows] / counts[rows], logits

    def forward(self, batch: dict) -> dict:
        """``{"loss", "logits"}``; a batch cut into parts (``{"parts": [batch, ...]}``) gives the loss of all
        its examples together, and no logits."""
        if "parts" in batch:
            return {"loss": torch.cat([self.example_losses(part)[0] for part in batch["parts"]]).mean()}
        losses, logits = self.example_losses(batch)
        return {"loss": losses.mean(), "logits": logits}

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, feat_lengths: torch.Tensor, prompts: Sequence[Sequence[int]],
                 max_new_tokens: int, stop_token: int, banned: Sequence[int] = (),
                 context: int | None = None) -> list[list[int]]:
        """Greedy answers, one per row: ``prompts[b]`` (ids with AUDIO slots, ending where the answer starts).

        Decodes with the LM's key/value cache. Rows whose prompts have the same length decode together
        (positions are absolute, so a batch must start its answers at one position). ``context``: a row
        (prompt and answer) ends there at the latest, each row by its own length (default: the LM's max_len).
        """
        if len(prompts) != feats.shape[0]:
            raise ValueError(f"one prompt per row: {feats.shape[0]} rows, {len(prompts)} prompts")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        longest = max(len(p) for p in prompts)
        context = self.lm.cfg.max_len if context is None else context
        if not 0 < context <= self.lm.cfg.max_len:
            raise ValueError(f"context must be in 1..{self.lm.cfg.max_len} (the LM's max_len), got {context!r}")
        if longest >= context:
            raise ValueError(f"a prompt is {longest} positions long: no room for an answer in a context of "
                             f"{context}; use a shorter utterance or prompt")
        was = self.training
        self.eval()
        rows = torch.full((len(prompts), longest), self.vocab - 1, dtype=torch.long)
        for b, p in enumerate(prompts):
            rows[b, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        x = self.inputs(feats, feat_lengths, rows.to(feats.device))  # (B, longest, d)
        answers: list[list[int]] = [[] for _ in prompts]
        by_length: dict[int, list[int]] = {}
        for b, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(b)
        # each group of prompts of one length fills its key/value cache; then every row decodes together, the
        # caches padded to the longest prompt (the padding masked) and each row at its own positions
        order, lengths, hs, group_caches = [], [], [], []
        for n, group in by_length.items():
            caches: list[dict] = [{} for _ in self.lm.blocks]
            hs.append(self.lm.hidden(None, embeds=x[group, :n], caches=caches)[:, -1:])
            order += group
            lengths += [n] * len(group)
            group_caches.append(caches)
        n_max = max(lengths)
        pos = torch.tensor(lengths, device=x.device)
        caches = [{key: torch.cat([F.pad(c[i][key], (0, 0, 0, n_max - c[i][key].shape[2])) for c in group_caches])
                   for key in ("k", "v")} | {"pad": torch.arange(n_max, device=x.device)[None] >= pos[:, None]}
                  for i in range(len(self.lm.blocks))]
        h = torch.cat(hs)
        room = (context - pos).clamp(max=max_new_tokens)  # answer tokens each row may write
        done = torch.zeros(len(order), dtype=torch.bool)
        for step in range(int(room.max())):
            logits = self.logits_of(h)[:, -1]
            if len(banned):
                logits[:, list(banned)] = float("-inf")
            nxt = logits.argmax(-1)
            for k, b in enumerate(order):
                if not done[k]:
                    if int(nxt[k]) == stop_token:
                        done[k] = True
                    else:
                        answers[b].append(int(nxt[k]))
                        done[k] = step + 1 == int(room[k])
            if bool(done.all()):
                break
            # a finished row goes on alongside the others, its output unread: its position is only kept in range
            at = (pos + step).clamp(max=self.lm.cfg.max_len - 1)
            h = self.lm.hidden(None, embeds=self.embed(nxt[:, None]), caches=caches, start=at)
        self.train(was)
        return answers
