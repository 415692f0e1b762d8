"""The Pareto front: which rows no other row dominates, for per-objective directions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` ([n, m]).

    Row a dominates row b when a is at least as good on every objective and strictly better
    on one. Equal rows do not dominate each other, so ties all stay on the front.
    """
    if values.size == 0:
        return np.zeros(len(values), dtype=bool)
    signs = np.where(np.asarray(maximize), 1.0, -1.0)
    v = values * signs  # now larger is better everywhere
    at_least = (v[:, None, :] >= v[None, :, :]).all(axis=2)
    better = (v[:, None, :] > v[None, :, :]).any(axis=2)
    dominated_by = at_least & better  # [a, b]: a dominates b
    return np.asarray(~dominated_by.any(axis=0))


def is_dominated(row: np.ndarray, others: np.ndarray, maximize: Sequence[bool]) -> bool:
    """Whether any row of ``others`` dominates ``row``."""
    return len(others) > 0 and not pareto_mask(np.vstack([row[None, :], others]), maximize)[0]
