"""The text LM of notebook 01: a character LM on the corpus grammar's sentences, the cascade's middle stage.

The model is the course's LM core (:mod:`slm_course.lm`); this module is its recipe: the training
text (:func:`text_corpus`: sentences sampled from the grammar, written as the ASR writes them), the
config the course trains with (:class:`TextLMConfig`), :func:`train_text_lm` on the one training
loop, the cached :func:`load_text_lm`, and :class:`TextLM`, which turns the model and its character
tokenizer into ``complete(prompt)``. TWIST (notebook 05) warm-starts a unit LM from this model.

>>> lm = load_text_lm()                                  # doctest: +SKIP
>>> lm.complete("the cook")                             # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slm_course.lm import LM, LMConfig
from slm_course.runtime import recipe_config

__all__ = ["TextLM", "TextLMConfig", "bench_textlm", "crops", "load_text_lm", "pack", "perplexity", "text_corpus",
           "train_text_lm"]

@dataclass(frozen=True)
class TextLMConfig:
    n_train_sentences: int = 20000  # sentences sampled from the grammar for training (text is free)
    n_val_sentences: int = 1000  # held-out sentences (another seed) for validation perplexity
    context: int = 128  # characters per training sequence (a sentence is about 30); TWIST's unit LM reads 128
    batch_size: int = 32  # sequences per step
    d_model: int = 128  # LM width
    n_layers: int = 2  # LM depth
    n_heads: int = 4  # attention heads
    steps: int = 1000  # optimiser steps, ~4 M characters (a few minutes on a laptop CPU; then cached)
    lr: float = 3e-3  # peak learning rate (AdamW, warm-up then cosine)
    seed: int = 0  # seeds data sampling and training


def text_corpus(n: int, seed: int) -> list[str]:
    """Normalised sentences from the corpus grammar (lower case, no punctuation: what the ASR writes)."""
    from slm_course.corpus.grammar import Grammar
    from slm_course.metrics import normalize_text

    return [normalize_text(t) for t in Grammar().sample_text(n, seed=seed)]


def pack(tokenizer, texts: list[str]) -> torch.Tensor:
    """One long 1-D tensor of ids: <bos> text <eos> <bos> text <eos> ..."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer.encode(t, bos=True, eos=True)
    return torch.tensor(ids, dtype=torch.long)


def crops(stream: torch.Tensor, context: int, batch_size: int, seed: int):
    """A `step -> batch` function: random windows of `context` tokens from `stream`, reproducible per step."""
    if len(stream) <= context:
        raise ValueError(f"the token stream ({len(stream)}) must be longer than the context ({context}).")

    def batch(step: int) -> dict:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(stream) - context, (batch_size,), generator=g)
        return {"tokens": torch.stack([stream[s : s + context] for s in starts.tolist()])}

    return batch


@torch.no_grad()
def perplexity(model: LM, stream: torch.Tensor, context: int) -> float:
    """exp(mean next-token loss) over consecutive windows of `stream`."""
    model.eval()
    n = (len(stream) - 1) // context
    windows = stream[: n * context].view(n, context)
    losses = [model({"tokens": windows[i : i + 64]})["loss"] for i in range(0, n, 64)]
    return float(torch.stack(losses).mean().exp())


@dataclass
class TextLM:
    """A trained text LM with its tokenizer: `complete(prompt)` continues a text."""

    model: LM
    tokenizer: object
    config: TextLMConfig
    metrics: dict

    def complete(self, prompt: str, max_new_tokens: int = 60, temperature: float = 0.0, top_k: int | None = None,
                 seed: int = 0) -> str:
        """The prompt's continuation up to <eos> (greedy by default)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"complete() needs a non-empty prompt string, got {prompt!r}; try 'the cook'.")
        ids = torch.tensor(self.tokenizer.encode(prompt, bos=True))
        room = self.model.cfg.max_len - len(ids)
        if room <= 0:
            raise ValueError(f"the prompt is {len(ids)} tokens; this LM reads at most {self.model.cfg.max_len}.")
        if isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool) and max_new_tokens > room:
            max_new_tokens = room  # LM.generate says what is wrong with anything that is not a count
        out = self.model.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                  generator=torch.Generator().manual_seed(seed), stop_token=self.tokenizer.eos_id)
        new = out[len(ids):].tolist()
        if self.tokenizer.eos_id in new:
            new = new[: new.index(self.tokenizer.eos_id)]
        return self.tokenizer.decode(new)


def train_text_lm(config: TextLMConfig = TextLMConfig(), progress: bool = True) -> tuple[TextLM, object]:
    """Train the character LM on grammar text; returns it (with val perplexity) and the training history."""
    from slm_course.text import CharTokenizer
    from slm_course.train import TrainConfig, train

    train_texts = text_corpus(config.n_train_sentences, seed=config.seed)
    val_texts = text_corpus(config.n_val_sentences, seed=config.seed + 10_000)
    tokenizer = CharTokenizer.from_texts(train_texts + val_texts)
    stream, val_stream = pack(tokenizer, train_texts), pack(tokenizer, val_texts)
    torch.manual_seed(config.seed)
    model = LM(LMConfig(vocab_size=tokenizer.vocab_size, d_model=config.d_model, n_layers=config.n_layers,
                        n_heads=config.n_heads, max_len=max(config.context, 256)))
    history = train(model, crops(stream, config.context, config.batch_size, config.seed),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=50, eval_every=0, seed=config.seed,
                                progress=progress, desc="text LM"))
    model.eval()
    metrics = {"val_ppl": perplexity(model, val_stream, config.context), "train_loss": history.final_loss(),
               "params": model.num_params(), "train_seconds": history.seconds}
    return TextLM(model, tokenizer, config, metrics), history


def load_text_lm(config: TextLMConfig | None = None, *, rebuild: bool = False, progress: bool = True) -> TextLM:
    """The notebook-01 text LM from the cache, or trained now with the same recipe and seed (on grammar text, not the corpus)."""
    config = recipe_config(config, TextLMConfig())
    from slm_course.corpus import corpus_version  # the grammar's sentences change with the corpus version
    from slm_course.runtime import cached, digest
    from slm_course.text import CharTokenizer
    from slm_course.train import model_record, restore

    def build() -> dict:
        lm, history = train_text_lm(config, progress=progress)
        return model_record(lm.model, lm.model.cfg, history, lm.metrics, chars=lm.tokenizer.state()["chars"])

    record = cached(f"text_lm-c{corpus_version()}-{digest(config)}", build, rebuild=rebuild)
    model = restore(LM(record["config"]), record)
    return TextLM(model, CharTokenizer(record["chars"]), config, model.metrics)


def _throughput(model: nn.Module, batches, steps: int, hf: bool) -> float:
    """Training tokens per second over `steps` AdamW steps (after one warm-up step)."""
    import time

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(i: int) -> int:
        tokens = batches(i)["tokens"]
        loss = model(input_ids=tokens, labels=tokens).loss if hf else model({"tokens": tokens})["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return tokens.numel()

    step(0)
    t0 = time.perf_counter()
    n = sum(step(i) for i in range(1, steps + 1))
    return n / (time.perf_counter() - t0)


def bench_textlm() -> dict:
    """The notebook's text LM (cached, or trained with the recipe); the training throughput of an untrained copy
    beside transformers' Llama of the same size, on the same batches, alternating so both see the same machine load."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = TextLMConfig()
    lm = load_text_lm(config, progress=False)
    cfg = lm.model.cfg
    torch.manual_seed(0)
    ours = LM(cfg)
    # A Llama of the same size: SwiGLU's three matrices at 8/3 x width match the GELU MLP's parameters.
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                                         intermediate_size=int(8 * cfg.d_model / 3), num_hidden_layers=cfg.n_layers,
                                         num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads,
                                         max_position_embeddings=cfg.max_len, tie_word_embeddings=True))
    stream = pack(lm.tokenizer, text_corpus(2000, seed=config.seed))
    batches = crops(stream, config.context, config.batch_size, seed=1)
    ours_tps, hf_tps = [], []
    for _ in range(3):  # alternate, so both see the same machine load
        ours_tps.append(_throughput(ours, batches, 20, hf=False))
        hf_tps.append(_throughput(llama, batches, 20, hf=True))
    return {
        "val_ppl": round(lm.metrics["val_ppl"], 3), "train_loss": round(lm.metrics["train_loss"], 3),
        "params": lm.metrics["params"], "hf_params": sum(p.numel() for p in llama.parameters()),
        "steps": config.steps, "train_seconds": round(lm.metrics["train_seconds"], 1),
        "tokens_per_s": round(sorted(ours_tps)[1]), "hf_tokens_per_s": round(sorted(hf_tps)[1]),
    }
