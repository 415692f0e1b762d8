"""The simplex weight space: normalisation, degenerate input, baselines."""

import pytest

from optimizer.space import PARAM_PREFIX, SimplexSpace


def test_weights_are_normalised() -> None:
    space = SimplexSpace(["a", "b", "c"])
    w = space.weights({PARAM_PREFIX + "a": 0.2, PARAM_PREFIX + "b": 0.6, PARAM_PREFIX + "c": 0.0})
    assert w == pytest.approx({"a": 0.25, "b": 0.75, "c": 0.0})


def test_all_zero_is_uniform() -> None:
    space = SimplexSpace(["a", "b"])
    assert space.weights({PARAM_PREFIX + "a": 0.0, PARAM_PREFIX + "b": 0.0}) == {"a": 0.5, "b": 0.5}


def test_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SimplexSpace(["a"]).weights({PARAM_PREFIX + "a": 1.5})


def test_baselines_are_singles_then_uniform() -> None:
    space = SimplexSpace(["a", "b"])
    labels = [label for label, _ in space.baselines()]
    assert labels == ["single:a", "single:b", "uniform"]
    weights = [space.weights(params) for _, params in space.baselines()]
    assert weights == [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, {"a": 0.5, "b": 0.5}]
