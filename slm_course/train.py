"""The one training loop of the course (written in notebook 01, reused by every model after it).

Every model shares one contract: ``model(batch)`` returns the scalar loss, or a dict with the key
``"loss"`` plus any other scalars worth logging (accuracy, perplexity, ...). :func:`train` then does
the same thing for a linear probe, a unit LM or an ASR head:

- AdamW, with weight decay only on matrices (parameters with ``dim >= 2``), not on biases or norms;
- a learning rate that warms up linearly, then decays along a cosine to 10% of its peak (:func:`lr_at`);
- gradient clipping, a progress bar, evaluation every ``eval_every`` steps and at the end;
- seeding at the start, so the same config gives the same :class:`History` on the same machine.

A trained model is cached as one record, whatever the model: :func:`model_record` writes its config,
weights, training history and metrics, :func:`restore` loads them back into a fresh model.

>>> class Regression(nn.Module):
...     def __init__(self): super().__init__(); self.linear = nn.Linear(1, 1)
...     def forward(self, batch): x, y = batch; return ((self.linear(x) - y) ** 2).mean()  # scalar loss
>>> x = torch.randn(64, 1)  # (B, 1)
>>> history = train(Regression(), [(x, 3 * x)], TrainConfig(steps=200, lr=0.1, progress=False))
>>> history.final_loss() < 1e-3
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from slm_course.runtime import seed_everything

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["History", "TrainConfig", "lr_at", "model_record", "move_to", "restore", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: a small frozen config whose defaults suit a small model on a laptop CPU."""

    steps: int = 500  # number of optimiser updates
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 50  # linear warm-up to lr over this many steps (0 = none; capped at steps)
    weight_decay: float = 0.01  # AdamW decoupled weight decay, applied to matrices only (dim >= 2)
    grad_clip: float = 1.0  # clip the global gradient norm to this value (0 = no clipping)
    eval_every: int = 100  # call evaluate(model) every this many steps and at the end (0 = only at the end)
    seed: int = 0  # seeds Python, NumPy and torch at the start of training
    progress: bool = True  # show a tqdm progress bar with the running loss
    desc: str = "train"  # label of the progress bar

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"TrainConfig.steps must be a positive int, got {self.steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be a positive finite number (e.g. 1e-3), got {self.lr!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(
                f"TrainConfig.warmup_steps must be an int >= 0 (0 = no warm-up), got {self.warmup_steps!r}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(
                f"TrainConfig.eval_every must be an int >= 0 (0 = only at the end), got {self.eval_every!r}"
            )


@dataclass
class History:
    """What happened during :func:`train`: one entry per step, plus the evaluations."""

    step: list[int] = field(default_factory=list)  # step number, 1..steps
    loss: list[float] = field(default_factory=list)  # training loss of that step's batch
    lr: list[float] = field(default_factory=list)  # learning rate used for that step
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm before clipping
    extras: dict[str, list[float]] = field(default_factory=dict)  # other scalars the model returned, per step
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step": s, **evaluate(model)} per evaluation
    seconds: float = 0.0  # wall-clock time of the whole run

    def summary(self) -> dict[str, Any]:
        """What a cached model keeps of its training: ``{"loss": [...], "seconds": s, **extras}``."""
        return {"loss": list(self.loss), "seconds": self.seconds, **{k: list(v) for k, v in self.extras.items()}}

    def final_loss(self, n: int = 20) -> float:
        """Mean training loss over the last ``n`` steps (smoother than the very last value)."""
        if not self.loss:
            raise ValueError("this History is empty: no step was recorded")
        tail = self.loss[-n:]
        return sum(tail) / len(tail)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Plot the training loss against the step, and evaluation metrics on a second y-axis."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(self.step, self.loss, color="C0", lw=1, label="train loss")
        if self.loss and min(self.loss) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        if self.step:
            ax.set_xlim(0, self.step[-1])
        names = sorted({k for e in self.evals for k in e if k != "step"})
        if names:
            twin = ax.twinx()
            for i, name in enumerate(names):
                points = [(e["step"], e[name]) for e in self.evals if name in e]
                twin.plot(*zip(*points), "o--", color=f"C{i + 1}", label=f"eval {name}")
            twin.set_ylabel("eval")
            twin.legend(loc="upper right")
        ax.legend(loc="upper left")
        return ax


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` (1-based): linear warm-up to ``config.lr``, then cosine decay to 10% of it.

    >>> cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10)
    >>> [round(lr_at(s, cfg), 3) for s in (1, 5, 10, 55, 100)]
    [0.1, 0.5, 1.0, 0.55, 0.1]
    """
    warmup = min(config.warmup_steps, config.steps)  # a short run warms up over all of its steps
    if step <= warmup:
        return config.lr * step / warmup
    lr_min = 0.1 * config.lr
    progress = (step - warmup) / (config.steps - warmup)  # (0, 1]
    return lr_min + (config.lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def move_to(batch: Any, device: torch.device) -> Any:
    """Move the tensors in a batch (a tensor, or dicts / tuples / lists of them, nested) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def _batch_source(batches: Callable[[int], Any] | Iterable[Any]) -> Callable[[int], Any]:
    """Turn a callable ``step -> batch`` or an iterable (cycled when exhausted) into ``step -> batch``."""
    if callable(batches):
        return batches
    if not isinstance(batches, Iterable):
        raise TypeError(
            f"batches must be a callable step -> batch or an iterable of batches, got {type(batches).__name__}"
        )
    iterator: Iterator[Any] = iter(batches)

    def next_batch(step: int) -> Any:
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(batches)  # start a new epoch (a DataLoader reshuffles here)
            try:
                return next(iterator)
            except StopIteration:
                raise ValueError(
                    f"batches ran out at step {step} and cannot be restarted (empty, or a one-shot generator); "
                    "pass a list, a DataLoader, or a callable step -> batch"
                ) from None

    return next_batch


def _split_output(out: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss tensor and the other logged scalars of one ``model(batch)`` output."""
    extras: dict[str, float] = {}
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise KeyError(f"model(batch) returned a dict without a 'loss' key (keys: {sorted(out)}); add one")
        loss = out["loss"]
        for key, value in out.items():
            if key == "loss":
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                extras[key] = float(value.detach())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                extras[key] = float(value)
    else:
        loss = out
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(
            f"model(batch) must return a scalar loss tensor or a dict with one under 'loss'; "
            f"at step {step} got {type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}"
        )
    return loss.reshape(()), extras


def _evaluate(model: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]], step: int) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model)
    model.train()
    return {"step": step, **{k: float(v) for k, v in metrics.items()}}


def train(
    model: nn.Module,
    batches: Callable[[int], Any] | Iterable[Any],
    config: TrainConfig = TrainConfig(),
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    device: torch.device | str | None = None,
    stop_at: int | None = None,
) -> History:
    """Train ``model`` for ``config.steps`` AdamW steps and return its :class:`History`.

    ``batches`` is a callable ``step -> batch`` (``step`` runs from 1 to ``config.steps``) or an
    iterable of batches, restarted when exhausted. ``model(batch)`` must return a scalar loss or a
    dict with a ``"loss"`` entry. ``evaluate(model)`` (optional) returns a dict of metrics; it runs
    under ``torch.no_grad()`` in eval mode every ``config.eval_every`` steps and after the last one.
    Batches are moved to ``device`` (default: where the model's parameters are). ``stop_at``: end after
    that step, the learning rate still following the schedule of ``config.steps``: the model is then
    the longer run's at that step (to compare runs part way, at a fraction of the cost).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if stop_at is not None and (isinstance(stop_at, bool) or not isinstance(stop_at, int)
                                or not 1 <= stop_at <= config.steps):
        raise ValueError(f"stop_at must be None (run all {config.steps} steps) or an int from 1 to {config.steps}, "
                         f"got {stop_at!r}")
    last = config.steps if stop_at is None else stop_at
    seed_everything(config.seed)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    model.train()

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (none with requires_grad=True); nothing to train")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
    next_batch = _batch_source(batches)
    history = History()
    start = time.perf_counter()

    postfix: dict[str, str] = {}
    bar = tqdm(range(1, last + 1), desc=config.desc, disable=not config.progress, leave=True)
    for step in bar:
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr

        batch = move_to(next_batch(step), device)
        loss, extras = _split_output(model(batch), step)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"the loss is {loss_value} at step {step} (lr={lr:.2e}); training diverged or the batch is bad: "
                f"lower the learning rate (TrainConfig(lr={config.lr / 10:g}, ...)), "
                "check the inputs for NaN/inf, or keep grad_clip on"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        optimizer.step()

        history.step.append(step)
        history.loss.append(loss_value)
        history.lr.append(lr)
        history.grad_norm.append(grad_norm)
        for key, value in extras.items():
            history.extras.setdefault(key, []).append(value)

        if evaluate is not None and (step == last or (config.eval_every and step % config.eval_every == 0)):
            history.evals.append(_evaluate(model, evaluate, step))
            postfix.update({k: f"{v:.4g}" for k, v in history.evals[-1].items() if k != "step"})
        if config.progress and (step % 10 == 0 or step == last):
            postfix["loss"] = f"{history.final_loss(10):.4f}"
            bar.set_postfix(postfix, refresh=False)

    history.seconds = time.perf_counter() - start
    return history


def model_record(model: nn.Module, config: Any, history: History | Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """The one layout of a cached, trained model: ``{"config", "state_dict", "history", "metrics", **more}``.

    ``config`` is what rebuilds the model (a config dataclass, allow-listed with
    :func:`slm_course.runtime.artifact_record`); ``history`` a :class:`History` (kept as
    :meth:`History.summary`) or such a dict; ``more``: anything else the loader needs (a tokenizer's
    characters, say), as plain data.

    >>> record = model_record(nn.Linear(2, 1), {"d": 2}, metrics={"val_loss": 0.5})
    >>> sorted(record), sorted(record["state_dict"])
    (['config', 'history', 'metrics', 'state_dict'], ['bias', 'weight'])
    """
    if isinstance(history, History):
        history = history.summary()
    return {"config": config, "state_dict": model.state_dict(), "history": dict(history or {}),
            "metrics": dict(metrics or {}), **more}


def restore(model: nn.Module, record: Mapping[str, Any]) -> nn.Module:
    """Load a :func:`model_record` into ``model`` (built from ``record["config"]``); attach ``.history`` and ``.metrics``.

    Returns the model in eval mode.

    >>> a = nn.Linear(2, 1); b = restore(nn.Linear(2, 1), model_record(a, None, metrics={"x": 1.0}))
    >>> torch.equal(a.weight, b.weight), b.metrics, b.training
    (True, {'x': 1.0}, False)
    """
    missing = {"state_dict", "history", "metrics"} - set(record)
    if missing:
        raise ValueError(f"not a model record (no {sorted(missing)}): build it with train.model_record")
    model.load_state_dict(record["state_dict"])
    model.history = dict(record["history"])
    model.metrics = dict(record["metrics"])
    return model.eval()

