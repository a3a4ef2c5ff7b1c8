"""Helpers shared by the exercise checks: a ✓ line on success, an AssertionError that says what to do."""

from __future__ import annotations

import math
from typing import Any

import torch


def _ok(message: str) -> None:
    print(f"✓ {message}")


class CheckFailed(AssertionError):
    """A check that found something wrong: Jupyter shows only its message, not the checks' own frames."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook for how an exception is shown
        return [f"✗ {line}" if i == 0 else f"  {line}" for i, line in enumerate(str(self).splitlines())]


def _fail(message: str) -> None:
    raise CheckFailed(message)


def _as_float(value: Any, call: str, unit: str = "", nonfinite_hint: str = "") -> float:
    """A number from a float, int, numpy scalar or one-element tensor; a clear error otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            _fail(f"{call} returned a tensor of shape {tuple(value.shape)}; return one number (e.g. float(x))")
        value = value.item()
    try:
        number = float(value)
    except (TypeError, ValueError):
        _fail(f"{call} returned {value!r} ({type(value).__name__}); return one number" + (f" in {unit}" if unit else ""))
    if not math.isfinite(number):
        _fail(f"{call} returned {number}; return a finite number{nonfinite_hint}")
    return number


def _as_tensor(value: Any, call: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A real float tensor of the expected shape; a clear error otherwise (with a hint for a transpose)."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            _fail(f"{call} returned {type(value).__name__}; return a torch.Tensor of shape {shape}")
    if value.is_complex():
        _fail(f"{call} returned a complex tensor; return real numbers (the power |X|**2 is real: X.abs() ** 2)")
    if tuple(value.shape) != shape:
        hint = ""
        if len(shape) == 2 and tuple(value.shape) == shape[::-1]:
            hint = " - it looks transposed (use .T)"
        _fail(f"{call} returned shape {tuple(value.shape)}; expected {shape}{hint}")
    return value.detach().to(torch.float64).cpu()
