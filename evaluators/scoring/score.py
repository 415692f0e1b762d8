"""What scoring a live model produces: one ``Score`` per objective. Backends build scorers
(``ScoreTasks``); the worker and the store read their scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One objective's value, its standard error when the scorer gives one, and the sample count."""

    value: float
    stderr: float | None
    samples: int


ScoreTasks = Callable[[], dict[str, Score]]
"""Scores the live model as it is now, one Score per named task spec."""
