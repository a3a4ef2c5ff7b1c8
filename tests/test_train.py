"""Tests for slm_course.train: the loop learns, is deterministic, schedules lr, evaluates and fails clearly."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from slm_course.train import History, TrainConfig, lr_at, move_to, train

QUIET = {"progress": False}


class Regression(nn.Module):
    """y = 3x - 1 plus noise; forward(batch) -> {"loss", "mae"}."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = self.linear(batch["x"])  # (B, 1)
        return {"loss": ((pred - batch["y"]) ** 2).mean(), "mae": (pred - batch["y"]).abs().mean()}


def make_batch(gen: torch.Generator, n: int = 64) -> dict[str, torch.Tensor]:
    x = torch.randn(n, 4, generator=gen)  # (B, 4)
    y = x @ torch.tensor([[3.0], [-1.0], [0.5], [2.0]]) - 1 + 0.01 * torch.randn(n, 1, generator=gen)
    return {"x": x, "y": y}


def run(seed: int = 0, steps: int = 150, **kwargs) -> History:
    torch.manual_seed(seed)
    model = Regression()
    gen = torch.Generator().manual_seed(seed)
    cfg = TrainConfig(steps=steps, lr=0.05, warmup_steps=10, eval_every=50, seed=seed, **QUIET)
    return train(model, lambda step: make_batch(gen), cfg, **kwargs)


def test_linear_regression_learns() -> None:
    history = run()
    assert history.loss[0] / history.final_loss(10) > 10
    assert history.step == list(range(1, 151))
    assert len(history.extras["mae"]) == 150 and history.extras["mae"][-1] < history.extras["mae"][0]
    assert history.seconds > 0 and all(math.isfinite(g) for g in history.grad_norm)


def test_same_seed_same_history() -> None:
    a, b = run(seed=1), run(seed=1)
    assert a.loss == b.loss and a.grad_norm == b.grad_norm and a.lr == b.lr
    assert run(seed=2).loss != a.loss


def test_stop_at_ends_the_run_where_the_longer_run_was_at_that_step() -> None:
    full, cut = run(steps=150), run(steps=150, stop_at=60)
    assert cut.step == list(range(1, 61))
    assert cut.loss == full.loss[:60] and cut.lr == full.lr[:60]  # the schedule is the 150-step one
    assert cut.lr[-1] > run(steps=60).lr[-1]  # not a 60-step schedule's end, decayed to 10%
    assert [e["step"] for e in cut.evals] == []  # no evaluate given
    evaluated = run(steps=150, stop_at=60, evaluate=lambda m: {"w": float(m.linear.weight.sum())})
    assert [e["step"] for e in evaluated.evals] == [50, 60]  # every eval_every=50, and where it stopped
    for bad in (0, 151, 2.5, True):
        with pytest.raises(ValueError, match="stop_at"):
            run(steps=150, stop_at=bad)


def test_iterable_batches_are_cycled() -> None:
    gen = torch.Generator().manual_seed(0)
    data = [make_batch(gen) for _ in range(3)]
    seen: list[int] = []

    class Recorder(Regression):
        def forward(self, batch):  # type: ignore[override]
            seen.append(next(i for i, d in enumerate(data) if torch.equal(d["x"], batch["x"])))
            return super().forward(batch)

    history = train(Recorder(), data, TrainConfig(steps=100, lr=0.05, warmup_steps=5, **QUIET))
    assert seen[:7] == [0, 1, 2, 0, 1, 2, 0]
    assert history.loss[0] / history.final_loss(10) > 10


def test_one_shot_generator_runs_out_clearly() -> None:
    gen = torch.Generator().manual_seed(0)
    batches = (make_batch(gen) for _ in range(2))
    with pytest.raises(ValueError, match="ran out at step 3.*callable step -> batch"):
        train(Regression(), batches, TrainConfig(steps=5, **QUIET))


def test_callable_gets_step_numbers_and_tuple_batches_work() -> None:
    steps: list[int] = []

    class TupleModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            x, y = batch
            return ((self.w * x - y) ** 2).mean()  # scalar loss, not a dict

    def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        steps.append(step)
        x = torch.linspace(-1, 1, 32)
        return x, 2 * x

    history = train(TupleModel(), batches, TrainConfig(steps=20, lr=0.1, warmup_steps=0, **QUIET))
    assert steps == list(range(1, 21)) and history.extras == {}


def test_evaluate_called_at_expected_steps_in_eval_mode() -> None:
    calls: list[tuple[bool, bool]] = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        calls.append((model.training, torch.is_grad_enabled()))
        return {"score": float(len(calls))}

    model = Regression()
    gen = torch.Generator().manual_seed(0)
    cfg = TrainConfig(steps=250, lr=0.01, warmup_steps=0, eval_every=100, **QUIET)
    history = train(model, lambda s: make_batch(gen), cfg, evaluate=evaluate)
    assert [e["step"] for e in history.evals] == [100, 200, 250]
    assert [e["score"] for e in history.evals] == [1.0, 2.0, 3.0]
    assert calls == [(False, False)] * 3 and model.training
    history = train(
        Regression(), lambda s: make_batch(gen), TrainConfig(steps=200, eval_every=100, **QUIET), evaluate=evaluate
    )
    assert [e["step"] for e in history.evals] == [100, 200]  # the last step is not evaluated twice


def test_lr_schedule_warmup_then_cosine_to_ten_percent() -> None:
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10)
    assert [lr_at(s, cfg) for s in (1, 2, 5, 10)] == pytest.approx([0.1, 0.2, 0.5, 1.0])
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half-way down the cosine: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1)
    decay = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    short = TrainConfig(steps=4, lr=1.0, warmup_steps=50)  # warm-up is capped at the run length
    assert [lr_at(s, short) for s in (1, 2, 3, 4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    history = run(steps=30)
    assert history.lr[:3] == pytest.approx([0.005, 0.01, 0.015]) and history.lr[9] == pytest.approx(0.05)


def test_weight_decay_only_on_matrices() -> None:
    model = Regression()
    with torch.no_grad():
        model.linear.bias.fill_(5.0)

    def zero_grad_loss(batch: torch.Tensor) -> torch.Tensor:
        return (model.linear.weight * 0).sum() + (model.linear.bias * 0).sum()

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return zero_grad_loss(batch)

    weight = model.linear.weight.detach().clone()
    train(Wrapper(), [torch.zeros(1)], TrainConfig(steps=20, lr=0.1, weight_decay=0.5, warmup_steps=0, **QUIET))
    assert torch.all(model.linear.weight.abs() < weight.abs())  # decayed towards 0
    assert torch.allclose(model.linear.bias, torch.tensor([5.0]))  # bias untouched


def test_nan_loss_raises_with_step() -> None:
    class Bomb(Regression):
        def forward(self, batch):  # type: ignore[override]
            out = super().forward(batch)
            if batch["step"] == 7:
                out["loss"] = out["loss"] * float("nan")
            return out

    gen = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match="nan at step 7.*lower the learning rate"):
        train(Bomb(), lambda s: {**make_batch(gen), "step": s}, TrainConfig(steps=20, **QUIET))


def test_bad_model_output_and_config() -> None:
    class NoLoss(Regression):
        def forward(self, batch):  # type: ignore[override]
            return {"mae": super().forward(batch)["mae"]}

    gen = torch.Generator().manual_seed(0)
    with pytest.raises(KeyError, match="without a 'loss' key"):
        train(NoLoss(), lambda s: make_batch(gen), TrainConfig(steps=2, **QUIET))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match="lr must be a positive"):
        TrainConfig(lr=-1.0)


def test_move_to_nested() -> None:
    batch = {"a": torch.zeros(2), "b": [torch.ones(1), (torch.ones(1), "text")], "n": 3}
    moved = move_to(batch, torch.device("cpu"))
    assert moved["n"] == 3 and moved["b"][1][1] == "text" and isinstance(moved["b"][1], tuple)


def test_history_plot_and_final_loss() -> None:
    import matplotlib

    matplotlib.use("Agg")
    history = run(steps=60)
    ax = history.plot()
    assert ax.get_xlim() == (0, 60) and ax.get_xlabel() == "step"
    assert History(loss=[4.0, 2.0, 1.0]).final_loss(2) == 1.5
    with pytest.raises(ValueError, match="empty"):
        History().final_loss()
