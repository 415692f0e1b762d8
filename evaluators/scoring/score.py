"""What scoring a live model produces: one ``Score`` per objective. Backends build scorers
(``ScoreTasks``); the worker and the store read their scores. ``score_text`` is how a score is written wherever a
person reads one (tables, hovers, log lines)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One objective's value, its standard error when the scorer gives one, and the sample count.

    ``per_sample`` is the metric of each example in the task's document order, when the scorer gives it
    (lm-eval's per-sample results, for metrics with one number per example); paired comparisons between
    merges (``evaluators.scoring.compare``) resample it. Empty otherwise.
    """

    value: float
    stderr: float | None
    samples: int
    per_sample: tuple[float, ...] = ()


ScoreTasks = Callable[[], dict[str, Score]]
"""Scores the live model as it is now, one Score per named task spec."""


def score_text(value: float | None, stderr: float | None) -> str:
    """The one number format of tables, hovers and logs: ``0.812±0.021``, ``0.812`` without a standard error,
    ``-`` without a value (3 decimals throughout; NaN counts as missing)."""
    if value is None or math.isnan(value):
        return "-"
    if stderr is None or math.isnan(stderr):
        return f"{value:.3f}"
    return f"{value:.3f}±{stderr:.3f}"
