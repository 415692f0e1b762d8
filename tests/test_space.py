"""Weight spaces: simplex normalisation, box bounds, groups, searched knobs, baselines, validation."""

import pytest
from pydantic import ValidationError

from evaluators.core.errors import ConfigError
from optimizer.space.weights import KNOB_PREFIX, PARAM_PREFIX, SpaceSpec, WeightSpace
from optimizer.store.rows import TrialSource


def raw(**values: float) -> dict[str, float]:
    return {PARAM_PREFIX + k.replace("__", "/"): v for k, v in values.items()}


def test_simplex_weights_are_normalised_and_all_zero_is_uniform() -> None:
    space = WeightSpace(SpaceSpec(), ["a", "b", "c"])
    assert space.weights(raw(a=0.2, b=0.6, c=0.0)) == pytest.approx({"a": 0.25, "b": 0.75, "c": 0.0})
    assert space.weights(raw(a=0.0, b=0.0, c=0.0)) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_out_of_range_and_missing_parameters_are_refused() -> None:
    space = WeightSpace(SpaceSpec(), ["a", "b"])
    with pytest.raises(ConfigError, match=r"'x.a' = 1.5 lies outside \[0.0, 1.0\]"):
        space.weights(raw(a=1.5, b=0.0))
    with pytest.raises(ConfigError, match="'x.b' is missing"):
        space.weights(raw(a=0.5))


def test_box_keeps_raw_weights_including_negatives() -> None:
    space = WeightSpace(SpaceSpec(kind="box", low=-1.0, high=2.0), ["a", "b"])
    assert space.weights(raw(a=-0.5, b=1.5)) == {"a": -0.5, "b": 1.5}
    sources = [source for source, _ in space.baselines()]
    assert sources == [TrialSource.single("a"), TrialSource.single("b"), TrialSource.uniform()]
    assert [str(s) for s in sources] == ["single:a", "single:b", "uniform"]  # as the study and Parquet store them
    assert space.weights(space.baselines()[2][1]) == {"a": 0.5, "b": 0.5}


def test_box_baselines_outside_the_bounds_are_left_out() -> None:
    space = WeightSpace(SpaceSpec(kind="box", low=0.0, high=0.8), ["a", "b"])
    assert [source for source, _ in space.baselines()] == [TrialSource.uniform()]


def test_groups_normalise_per_group_and_build_a_grouped_point() -> None:
    spec = SpaceSpec(groups={"attn": "self_attn"})
    space = WeightSpace(spec, ["a", "b"], groups=["attn", "rest"])
    assert space.labels == ["attn/a", "attn/b", "rest/a", "rest/b"]
    w = space.weights(raw(attn__a=0.2, attn__b=0.6, rest__a=0.5, rest__b=0.5))
    assert w == pytest.approx({"attn/a": 0.25, "attn/b": 0.75, "rest/a": 0.5, "rest/b": 0.5})
    point = space.point(w, {})
    assert point.weights == {"a": 0.5, "b": 0.5} and point.groups == {"attn": pytest.approx({"a": 0.25, "b": 0.75})}
    single = dict(space.baselines())[TrialSource.single("b")]
    assert space.weights(single) == {"attn/a": 0.0, "attn/b": 1.0, "rest/a": 0.0, "rest/b": 1.0}


def test_knobs_are_parameters_with_defaults_in_baselines() -> None:
    space = WeightSpace(SpaceSpec(kind="box", knobs={"scale": (0.5, 1.5)}), ["a", "b"], knob_defaults={"scale": 1.0})
    assert space.distributions()[KNOB_PREFIX + "scale"].low == 0.5
    params = dict(space.baselines())[TrialSource.single("a")]
    assert space.knob_values(params) == {"scale": 1.0}
    assert space.point(space.weights(params), space.knob_values(params)).knobs == {"scale": 1.0}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"low": -1.0}, "apply to kind 'box' only"),
        ({"kind": "box", "low": 1.0, "high": 1.0}, "must be below high"),
        ({"groups": {"rest": "mlp"}}, "not be 'rest'"),
        ({"groups": {"attn": "("}}, "is not a regular expression"),
        ({"knobs": {"seed": (0, 1)}}, "cannot be searched"),
        ({"knobs": {"scale": (2.0, 1.0)}}, "is empty"),
    ],
)
def test_bad_space_specs_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpaceSpec(**spec)
