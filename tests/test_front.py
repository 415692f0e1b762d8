"""Pareto front against hand-worked cases."""

import numpy as np

from optimizer.store.pareto import is_dominated, pareto_mask


def test_maximize_both() -> None:
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.4, 0.4], [1.0, 0.0]])
    # [0.4, 0.4] is dominated by [0.5, 0.5]; the duplicate [1, 0] rows do not dominate each other
    assert pareto_mask(v, [True, True]).tolist() == [True, True, True, False, True]


def test_minimize_flips_the_direction() -> None:
    v = np.array([[1.0, 5.0], [2.0, 5.0], [1.0, 6.0]])
    assert pareto_mask(v, [False, True]).tolist() == [False, False, True]
    assert pareto_mask(v, [True, True]).tolist() == [False, True, True]


def test_single_objective_keeps_only_the_best_and_ties() -> None:
    v = np.array([[0.3], [0.9], [0.9], [0.1]])
    assert pareto_mask(v, [True]).tolist() == [False, True, True, False]


def test_empty() -> None:
    assert pareto_mask(np.zeros((0, 2)), [True, True]).tolist() == []


def test_is_dominated() -> None:
    others = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert is_dominated(np.array([0.4, 0.5]), others, [True, True])
    assert not is_dominated(np.array([0.6, 0.1]), others, [True, True])
    assert not is_dominated(np.array([0.5, 0.5]), others, [True, True])  # a tie is not domination
    assert not is_dominated(np.array([0.0, 0.0]), np.zeros((0, 2)), [True, True])
