"""Our hypervolume against two independent computations: inclusion-exclusion and Optuna's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from optimizer.hypervolume import hypervolume


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Union of the boxes [p, ref] (maximisation: ref below every point) by inclusion-exclusion."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), k):
            corner = points[list(subset)].min(axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(corner - ref, 0, None)))
    return total


def test_hand_computed_two_dimensions() -> None:
    # (1,3) and (3,1) above ref (0,0): 3 + 3 - 1 overlap = 5
    assert hypervolume(np.array([[1.0, 3.0], [3.0, 1.0]]), [0.0, 0.0], [True, True]) == pytest.approx(5.0)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_matches_inclusion_exclusion(dims: int) -> None:
    rng = np.random.default_rng(dims)
    points = rng.random((9, dims))
    ref = np.zeros(dims)
    assert hypervolume(points, ref, [True] * dims) == pytest.approx(inclusion_exclusion(points, ref), rel=1e-12)


def test_matches_optuna_on_many_points_with_mixed_directions() -> None:
    rng = np.random.default_rng(7)
    values = rng.random((60, 4))
    maximize = [True, False, True, False]
    ref = np.array([0.0, 1.0, 0.0, 1.0])
    signs = np.where(maximize, -1.0, 1.0)  # Optuna minimises
    expected = compute_hypervolume(values * signs, ref * signs)
    assert hypervolume(values, ref, maximize) == pytest.approx(expected, rel=1e-10)


def test_points_not_beyond_the_reference_add_nothing() -> None:
    assert hypervolume(np.array([[0.5, -0.1], [-1.0, 2.0]]), [0.0, 0.0], [True, True]) == 0.0
