"""Exact hypervolume of a point set, our own (Optuna's is private and minimisation-only).

Hypervolume by slicing (HSO): sort along the last objective and sum slab depth times the
hypervolume of the points above the slab in one dimension less. Exact; fine for the tens to
hundreds of points and few objectives of a merge search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optimizer.front import pareto_mask


def _hv_min(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` (minimisation, all strictly better than ``ref``)."""
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    points = points[pareto_mask(points, [False] * points.shape[1])]
    points = points[np.argsort(points[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else ref[-1]
        depth = upper - points[i, -1]
        if depth > 0:
            total += depth * _hv_min(points[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(values: np.ndarray, ref: Sequence[float], maximize: Sequence[bool]) -> float:
    """Volume of the region dominated by the rows of ``values`` and bounded by ``ref``.

    Rows that are not strictly better than ``ref`` on every objective add nothing.
    """
    signs = np.where(np.asarray(maximize), -1.0, 1.0)
    points = np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs
    r = np.asarray(ref, dtype=float) * signs
    return _hv_min(points[(points < r).all(axis=1)], r)
