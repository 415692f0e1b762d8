"""Paired comparisons of two models on the same examples: is a difference in score real or noise?

Two merges scored on the same examples differ by a macro-average (the mean over tasks of each task's
mean metric). Its 95 % interval comes from a paired, stratified bootstrap: each task's examples are
resampled with replacement, the same draw for both models (paired), each task on its own (stratified,
so every task keeps its size and its weight in the macro-average). The verdict reads the interval:
"beats" when it lies above 0, "loses" when below, "ties" otherwise. The resampling is
``scipy.stats.bootstrap`` (percentile intervals), given one sample of per-example differences per task.

For metrics averaged over examples (``acc``, ``exact_match``): the per-example values are lm-eval's
per-sample results (``Score.per_sample``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["beats", "ties", "loses"]


@dataclass(frozen=True)
class Difference:
    """The macro-average of ``a`` minus that of ``b``, with its bootstrap interval (``low``, ``high``) at
    ``confidence``."""

    estimate: float
    low: float
    high: float
    confidence: float

    @property
    def verdict(self) -> Verdict:
        """What the interval says: "beats" (entirely above 0), "loses" (entirely below), or "ties"."""
        return "beats" if self.low > 0 else "loses" if self.high < 0 else "ties"

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}] {self.verdict}"


def paired_difference(
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Difference:
    """Macro-average of ``a`` minus macro-average of ``b`` over the same tasks and examples, with a paired,
    stratified bootstrap interval (module docstring).

    ``a`` and ``b`` map each task to its per-example values, in the same example order. Raises ValueError
    when they name other tasks, a task's lengths differ, or a task has no examples.
    """
    if a.keys() != b.keys() or not a:
        raise ValueError(f"paired comparison needs the same tasks on both sides: {sorted(a)} vs {sorted(b)}")
    differences = []
    for task in a:
        x, y = np.asarray(a[task], dtype=float), np.asarray(b[task], dtype=float)
        if x.shape != y.shape or x.ndim != 1 or not x.size:
            raise ValueError(f"task {task!r}: {x.size} examples on one side and {y.size} on the other; pair them")
        differences.append(x - y)

    def macro(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([s.mean(axis=axis) for s in samples], axis=0)

    estimate = float(macro(*differences))
    result = stats.bootstrap(
        differences,
        macro,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        paired=False,  # each task resampled on its own; the pairing is inside each difference
        vectorized=True,
        batch=1000,
        rng=np.random.default_rng(seed),
    )
    return Difference(
        estimate, float(result.confidence_interval.low), float(result.confidence_interval.high), confidence
    )
