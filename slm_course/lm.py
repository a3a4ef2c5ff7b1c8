"""The course's one decoder-only language model core (notebook 01; reused by every later LM of the course).

A GPT in the nanoGPT mould: token embeddings + learned positions -> pre-norm Transformer blocks
(causal self-attention through PyTorch's `scaled_dot_product_attention`, a GELU MLP) -> a final
norm and a linear head. The same class models characters (notebook 01), speech units (04),
interleaved text and units with a modality embedding (06) and parallel token streams (07):

- `n_streams > 1`: the input is (B, S, T); each stream has its own embedding table and head, the
  embeddings are summed per time step (Moshi's temporal transformer does this).
- `extra_embeddings`: named additive embeddings, e.g. `(("modality", 2),)`; pass them as
  `model(batch)` with `batch["extra"] = {"modality": (B, T) ids}`.
- `tie_weights`: share the input embedding and output head (single stream).

`generate()` decodes with a key/value cache, temperature and top-k; `score()` returns each
sequence's summed log-likelihood (the zero-shot metrics of notebook 04 compare such scores).

>>> model = LM(LMConfig(vocab_size=40))
>>> out = model({"tokens": torch.randint(0, 40, (2, 16))})
>>> out["loss"].shape, out["logits"].shape
(torch.Size([]), torch.Size([2, 16, 40]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slm_course.runtime import artifact_record
from slm_course.speech_tokens import check_ids

IGNORE = -100  # target id that the loss skips (padding, prompts)


@artifact_record  # cached LMs store their config: allowed in weights-only loading
@dataclass(frozen=True)
class LMConfig:
    vocab_size: int  # tokens per stream
    d_model: int = 128  # width of the residual stream
    n_layers: int = 2  # Transformer blocks
    n_heads: int = 4  # attention heads (d_model must divide evenly)
    max_len: int = 256  # longest sequence (learned position embeddings)
    dropout: float = 0.0  # dropout on the attention probabilities and the MLP's output; 0 trains fastest
    # on the attention probabilities alone, when not `dropout`: any > 0 needs PyTorch's unfused attention and a
    # random draw per probability, so 0 keeps the fused kernel while the MLP keeps `dropout`
    attn_dropout: float | None = None
    tie_weights: bool = True  # share token embedding and output head (single stream only)
    n_streams: int = 1  # parallel token streams, summed at the input, one head each
    extra_embeddings: tuple[tuple[str, int], ...] = ()  # named additive embeddings: (name, number of ids)

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size={self.vocab_size}: a language model needs at least 2 tokens.")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}.")
        if min(self.d_model, self.n_layers, self.n_heads, self.max_len, self.n_streams) < 1:
            raise ValueError("d_model, n_layers, n_heads, max_len and n_streams must all be >= 1.")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value!r}: a dropout rate is in [0, 1)"
                                 + (" (or None: the same as dropout)." if name == "attn_dropout" else "."))


class Attention(nn.Module):
    """Multi-head causal self-attention, with an optional key/value cache for generation."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout  # on the probabilities
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        causal = True
        if cache is not None:
            if "k" in cache:  # earlier positions: attend to all of them, causally among the new ones
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                causal = T > 1
            cache["k"], cache["v"] = k, v
            if "pad" in cache:  # (B, keys) True where a cached key is padding: rows of unequal lengths decode together
                cache["pad"] = torch.cat([cache["pad"], cache["pad"].new_zeros(B, T)], dim=1)
        padded = cache is not None and "pad" in cache
        if padded or (causal and k.shape[2] != T):  # new tokens after a cached prefix (some of it padding): a mask
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & ~cache["pad"][:, None, None, :] if padded
                                               else mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and T > 1,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class LM(nn.Module):
    """Decoder-only Transformer LM over one or several token streams. `forward(batch) -> {"loss", "logits"}`."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        S = cfg.n_streams
        self.tok_emb = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.d_model) for _ in range(S))
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.extra_emb = nn.ModuleDict({name: nn.Embedding(n, cfg.d_model) for name, n in cfg.extra_embeddings})
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.heads = nn.ModuleList(nn.Linear(cfg.d_model, cfg.vocab_size, bias=False) for _ in range(S))
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.tie_weights and S == 1:
            self.heads[0].weight = self.tok_emb[0].weight

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- input checks -------------------------------------------------------------------------
    def _check_tokens(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError("tokens must be an integer torch tensor (use torch.tensor(ids, dtype=torch.long)).")
        want = 3 if self.cfg.n_streams > 1 else 2
        if tokens.dim() != want:
            shape = "(B, S, T)" if want == 3 else "(B, T)"
            raise ValueError(f"tokens must be {shape}, got shape {tuple(tokens.shape)}"
                             + ("; add a batch dimension with tokens[None]" if tokens.dim() == want - 1 else ""))
        if tokens.shape[-1] == 0:
            raise ValueError("tokens are empty: give at least one token (e.g. a <bos> token as the prompt).")
        if want == 3 and tokens.shape[1] != self.cfg.n_streams:
            raise ValueError(f"expected {self.cfg.n_streams} streams, got {tokens.shape[1]}.")
        if start + tokens.shape[-1] > self.cfg.max_len:
            raise ValueError(f"sequence of {start + tokens.shape[-1]} tokens is longer than max_len={self.cfg.max_len}; "
                             "crop it or build the model with a larger max_len.")
        return check_ids(tokens, self.cfg.vocab_size, want, what="token ids",
                         hint="did you tokenize with a different vocabulary?")

    # --- the model ----------------------------------------------------------------------------
    def hidden(self, tokens: torch.Tensor | None, extra: dict | None = None, caches: list | None = None,
               start: int | torch.Tensor = 0, *, embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) for tokens (B, T) or (B, S, T).

        `embeds` (B, T, C), given instead of `tokens`, are input vectors used in place of the token
        embeddings: a speech-aware LM (notebook 09) feeds an adapter's outputs this way. `start`: the
        position of the first token, or a (B,) tensor of one per row (rows decoding from caches of
        different lengths, their padding marked in each cache's "pad").
        """
        per_row = isinstance(start, torch.Tensor)
        if per_row:
            if start.dim() != 1 or start.dtype not in (torch.long, torch.int32, torch.int64) or int(start.min()) < 0:
                raise ValueError(f"start must be an int or a (B,) integer tensor of positions >= 0, got {start!r}")
            first, start = start, int(start.max())  # the longest row must fit; each row's positions are its own
        if embeds is not None:
            if tokens is not None:
                raise ValueError("give tokens or embeds, not both: embeds replace the token embeddings.")
            if embeds.dim() != 3 or embeds.shape[-1] != self.cfg.d_model or embeds.shape[1] == 0:
                raise ValueError(f"embeds must be (B, T, {self.cfg.d_model}) with T >= 1, got {tuple(embeds.shape)}")
            if start + embeds.shape[1] > self.cfg.max_len:
                raise ValueError(f"sequence of {start + embeds.shape[1]} positions is longer than "
                                 f"max_len={self.cfg.max_len}; crop it.")
            x, T, device = embeds, embeds.shape[1], embeds.device
        else:
            tokens = self._check_tokens(tokens, start)
            streams = tokens.unsqueeze(1) if tokens.dim() == 2 else tokens  # (B, S, T)
            T, device = streams.shape[-1], tokens.device
            x = sum(emb(streams[:, s]) for s, emb in enumerate(self.tok_emb))  # (B, T, C)
        if per_row:
            if first.shape[0] != x.shape[0]:
                raise ValueError(f"start has {first.shape[0]} positions for {x.shape[0]} rows: give one per row")
            x = x + self.pos_emb(first.to(device)[:, None] + torch.arange(T, device=device))
        else:
            x = x + self.pos_emb(torch.arange(start, start + T, device=device))
        for name, ids in (extra or {}).items():
            if name not in self.extra_emb:
                raise KeyError(f"no extra embedding {name!r}; this model has {list(self.extra_emb)}.")
            x = x + self.extra_emb[name](ids.long())
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches is not None else None)
        return self.ln_f(x)

    def logits(self, tokens: torch.Tensor, extra: dict | None = None, caches: list | None = None,
               start: int = 0) -> torch.Tensor:
        """(B, T, V) for one stream, (B, S, T, V) for several."""
        h = self.hidden(tokens, extra, caches, start)
        if self.cfg.n_streams == 1:
            return self.heads[0](h)
        return torch.stack([head(h) for head in self.heads], dim=1)

    def forward(self, batch: dict) -> dict:
        """Next-token loss. batch: "tokens" (B, T) [or (B, S, T)], optional "targets" (IGNORE = skip), "extra"."""
        tokens = batch["tokens"]
        logits = self.logits(tokens, batch.get("extra"))
        targets = batch.get("targets")
        if targets is None:  # predict the next token; the last position has nothing to predict
            targets = torch.cat([tokens[..., 1:], torch.full_like(tokens[..., :1], IGNORE)], dim=-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long(),
                               ignore_index=IGNORE)
        return {"loss": loss, "logits": logits}

    @torch.no_grad()
    def score(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log p(t_i | t_<i) over positions 1..len-1 of each sequence, and the count of scored tokens.

        Divide the first by the second for the token-normalised score. tokens: (B, T), padded.
        """
        B, T = tokens.shape
        lengths = torch.full((B,), T) if lengths is None else lengths
        logp = self.logits(tokens).float().log_softmax(-1)  # (B, T, V)
        picked = logp[:, :-1].gather(-1, tokens[:, 1:, None].long()).squeeze(-1)  # (B, T-1)
        valid = torch.arange(1, T)[None] < lengths[:, None]
        return (picked * valid).sum(1), valid.sum(1)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, stop_token: int | None = None,
                 banned: Sequence[int] | None = None, *, extra: dict | None = None,
                 forced: tuple[torch.Tensor, torch.Tensor] | None = None,
                 choices: Callable[[int], tuple[int, int]] | None = None) -> torch.Tensor:
        """Continue `prompt` (T,) or (B, T) by sampling; returns prompt + new tokens (single stream).

        Uses a key/value cache: each step runs the model on one new token only. temperature=0 is greedy.
        `banned`: token ids that are never sampled (their logits are set to -inf), e.g. `<eos>` to
        make a continuation run its full length.

        Three hooks make this the course's one decoding loop, for conditioned and structured
        sequences too (AudioLM's acoustic stages use all three; positions count from 0, the prompt's
        first token):

        - `extra`: {name: (B, T + max_new_tokens) ids}, an extra embedding for every position;
        - `forced`: `(tokens, mask)`, both (B, T + max_new_tokens): where `mask` is True the token is
          taken from `tokens` instead of sampled (rows whose prompt is longer than the others');
        - `choices(pos) -> (lo, hi)`: the token at position `pos` is drawn among ids lo..hi-1 only.
        """
        if self.cfg.n_streams != 1:
            raise ValueError("generate() samples one stream; multi-stream models need their own decoding loop.")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        _check_new_tokens(max_new_tokens)
        squeeze = prompt.dim() == 1
        tokens = prompt[None] if squeeze else prompt
        self._check_tokens(tokens)
        ban = None
        if banned is not None and len(banned):
            ban = torch.as_tensor(list(banned), dtype=torch.long)
            if int(ban.min()) < 0 or int(ban.max()) >= self.cfg.vocab_size or len(ban.unique()) >= self.cfg.vocab_size:
                raise ValueError(f"banned must be ids in 0..{self.cfg.vocab_size - 1}, leaving at least one to sample; "
                                 f"got {sorted(set(ban.tolist()))}")
        B, T = tokens.shape
        L = T + max_new_tokens
        if L > self.cfg.max_len:
            raise ValueError(f"prompt ({T}) + max_new_tokens ({max_new_tokens}) exceeds "
                             f"max_len={self.cfg.max_len}; generate fewer tokens or crop the prompt.")
        for name, ids in (extra or {}).items():
            if tuple(ids.shape) != (B, L):
                raise ValueError(f"extra[{name!r}] must be (B, prompt + max_new_tokens) = {(B, L)}, got {tuple(ids.shape)}")
        if forced is not None and not (tuple(forced[0].shape) == tuple(forced[1].shape) == (B, L)):
            raise ValueError(f"forced must be (tokens, mask), both (B, prompt + max_new_tokens) = {(B, L)}")
        was_training = self.training
        self.eval()
        caches: list[dict] = [{} for _ in self.blocks]
        window = {k: v[:, :T] for k, v in extra.items()} if extra else None
        logits = self.heads[0](self.hidden(tokens, window, caches))[:, -1]  # (B, V)
        out = [tokens]
        done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
        for i in range(max_new_tokens):
            pos = T + i
            lo, hi = choices(pos) if choices is not None else (0, self.cfg.vocab_size)
            if ban is not None:
                logits = logits.index_fill(-1, ban.to(logits.device), float("-inf"))
            if choices is not None:
                nxt = sample_next(logits[:, lo:hi], temperature, top_k, generator) + lo  # among lo..hi-1 only
            else:
                nxt = sample_next(logits, temperature, top_k, generator)  # (B,)
            if forced is not None:
                nxt = torch.where(forced[1][:, pos], forced[0][:, pos], nxt)
            nxt = nxt[:, None]  # (B, 1)
            if stop_token is not None:
                nxt = nxt.masked_fill(done[:, None], stop_token)
                done |= nxt[:, 0] == stop_token
            out.append(nxt)
            if stop_token is not None and bool(done.all()):
                break
            if i + 1 < max_new_tokens:
                window = {k: v[:, pos : pos + 1] for k, v in extra.items()} if extra else None
                logits = self.heads[0](self.hidden(nxt, window, caches, start=pos))[:, -1]
        self.train(was_training)
        result = torch.cat(out, dim=1)
        return result[0] if squeeze else result


def _check_new_tokens(max_new_tokens: object) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0 (how many tokens to add), got {max_new_tokens!r}; "
                         "e.g. max_new_tokens=60")


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One sampling step: token ids ``(B,)`` from next-token logits ``(B, V)``.

    ``temperature=0`` is greedy (argmax); otherwise the logits are divided by the temperature, cut to
    the ``top_k`` best when given, and one token is drawn from their softmax.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
