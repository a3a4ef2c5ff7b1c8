"""Checks for notebook 05's exercises (solutions/05_normaliser_twist_exercises.ipynb)."""

from __future__ import annotations

__all__: list[str] = []
