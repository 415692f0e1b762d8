"""Weight spaces: how the sampler's raw parameters become the merge we build and the weights we record.

- ``simplex`` (default): one raw value x_i in [0, 1] per member, weights w = x / Σx (uniform when
  Σx = 0). One-hot raw vectors give the single checkpoints and all-ones the uniform soup exactly.
- ``box``: the weights themselves, each in [low, high] (negatives allowed: task arithmetic).
- ``groups``: named regular expressions over tensor names; each group gets its own weights
  (simplex or box), tensors no group matches form the group ``rest``. Recorded as ``group/member``.
- ``knobs``: merge-method parameters searched in a range (``lambda`` = the global λ, ``density``,
  ``drop``, ``t``: whichever the methods declare searchable, see ``searchable_parameters``).

Raw parameters are ``x.<label>`` and ``k.<key>`` (a parameter's stored key: ``scale`` for ``lambda``);
Parquet records the real weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from optuna.distributions import BaseDistribution, FloatDistribution
from pydantic import Field, ValidationInfo, field_validator, model_validator

from evaluators.core.config import Frozen, from_a_person
from evaluators.core.errors import ConfigError
from evaluators.merge import MergeSpec, Parameter, declared_parameters
from evaluators.merge.parameters import by_key
from evaluators.merge.point import MergePoint, assign_groups
from evaluators.pool.plan import PoolPlan
from optimizer.store.rows import TrialSource

PARAM_PREFIX, KNOB_PREFIX = "x.", "k."
REST = "rest"
GROUP_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"


class SpaceSpec(Frozen):
    """The ``space:`` section of an experiment."""

    kind: Literal["simplex", "box"] = "simplex"
    low: float | None = None
    high: float | None = None
    groups: dict[str, str] = Field(default_factory=dict)
    knobs: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounds(self) -> SpaceSpec:
        if self.kind == "simplex" and (self.low is not None or self.high is not None):
            raise ValueError(
                "'low'/'high' apply to kind 'box' only (simplex weights are normalised raw values in [0, 1])"
            )
        if self.bounds[0] >= self.bounds[1]:
            raise ValueError(f"low ({self.bounds[0]}) must be below high ({self.bounds[1]})")
        return self

    @field_validator("groups")
    @classmethod
    def _groups(cls, groups: dict[str, str]) -> dict[str, str]:
        for name, pattern in groups.items():
            if not re.match(GROUP_NAME, name) or name == REST:
                raise ValueError(f"group name '{name}' must match {GROUP_NAME} and not be '{REST}'")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"group '{name}': pattern {pattern!r} is not a regular expression ({exc})") from None
        return groups

    @field_validator("knobs")
    @classmethod
    def _knobs(cls, knobs: dict[str, tuple[float, float]], info: ValidationInfo) -> dict[str, tuple[float, float]]:
        """Searched parameters by stored key (``lambda`` is stored as ``scale``), each a searchable one."""
        searchable = searchable_parameters()
        found = by_key(
            knobs,
            lambda name: next((p for p in searchable.values() if p.spelled(name)), None),
            lambda name: f"parameter '{name}' cannot be searched; searchable parameters: {', '.join(searchable)}",
        )
        out: dict[str, tuple[float, float]] = {}
        for key, (name, param) in found.items():
            if from_a_person(info):
                param.deprecated(name, "space.knobs")
            low, high = knobs[name]
            if low >= high:
                raise ValueError(
                    f"parameter '{name}': range [{low}, {high}] is empty; write [low, high] with low < high"
                )
            out[key] = (low, high)
        return out

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of every raw weight: the box's, defaulting to [0, 1]; always [0, 1] on the simplex."""
        return (0.0 if self.low is None else self.low, 1.0 if self.high is None else self.high)


class WeightSpace:
    """A space bound to a pool: its parameters, the merge of a parameter set, and the baselines."""

    def __init__(
        self,
        spec: SpaceSpec,
        members: Sequence[str],
        groups: Sequence[str] = (),
        knob_defaults: Mapping[str, float] = {},
    ) -> None:
        self.spec = spec
        self.members = list(members)
        self.groups = list(groups)
        self.labels = [f"{g}/{m}" for g in self.groups for m in self.members] if self.groups else list(self.members)
        self.knobs = list(spec.knobs)
        self.knob_defaults = dict(knob_defaults)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna's distribution of every raw parameter: ``x.<label>`` per weight, ``k.<key>`` per searched knob."""
        low, high = self.spec.bounds
        out: dict[str, BaseDistribution] = {PARAM_PREFIX + label: FloatDistribution(low, high) for label in self.labels}
        out.update({KNOB_PREFIX + k: FloatDistribution(*self.spec.knobs[k]) for k in self.knobs})
        return out

    def is_complete(self, params: Mapping[str, float]) -> bool:
        """Whether every parameter has a value (a proposal cut short by a kill has not)."""
        return set(self.distributions()) <= set(params)

    def check(self, params: Mapping[str, float]) -> None:
        """Refuse missing or out-of-range values (Optuna only warns on enqueued ones)."""
        for name, dist in self.distributions().items():
            assert isinstance(dist, FloatDistribution)
            if name not in params:
                raise ConfigError(f"parameter '{name}' is missing")
            if not dist.low <= float(params[name]) <= dist.high:
                raise ConfigError(f"parameter '{name}' = {params[name]} lies outside [{dist.low}, {dist.high}]")

    def _weights(self, raw: list[float]) -> list[float]:
        if self.spec.kind == "box":
            return raw
        total = sum(raw)
        return [1.0 / len(raw)] * len(raw) if total == 0.0 else [x / total for x in raw]

    def weights(self, params: Mapping[str, float]) -> dict[str, float]:
        """The recorded weights by label (normalised per group on the simplex)."""
        self.check(params)
        n = len(self.members)
        raw = [float(params[PARAM_PREFIX + label]) for label in self.labels]
        out: dict[str, float] = {}
        for start in range(0, len(raw), n):
            out.update(zip(self.labels[start : start + n], self._weights(raw[start : start + n]), strict=True))
        return out

    def knob_values(self, params: Mapping[str, float]) -> dict[str, float]:
        """The searched knob values by stored key, as proposed (no normalisation)."""
        return {k: float(params[KNOB_PREFIX + k]) for k in self.knobs}

    def features(self, params: Mapping[str, float]) -> list[float]:
        """Recorded weights then knob values: what surrogates model the objectives in."""
        return [*self.weights(params).values(), *self.knob_values(params).values()]

    def point(self, weights: Mapping[str, float], knobs: Mapping[str, float]) -> MergePoint:
        """The merge the worker builds for recorded ``weights`` (by label) and knob values."""
        if not self.groups:
            return MergePoint(weights=dict(weights), knobs=dict(knobs))
        by_group = {g: {m: weights[f"{g}/{m}"] for m in self.members} for g in self.groups}
        rest = by_group.pop(REST, {})
        return MergePoint(weights=rest, groups=by_group, knobs=dict(knobs))

    def params_of(self, weights: Mapping[str, float], knobs: Mapping[str, float]) -> dict[str, float]:
        """Raw parameters that reproduce recorded weights (the simplex is scale-free, so raw = w)."""
        params = {PARAM_PREFIX + label: float(weights.get(label, 0.0)) for label in self.labels}
        params.update({KNOB_PREFIX + k: float(knobs.get(k, self.knob_defaults[k])) for k in self.knobs})
        self.check(params)
        return params

    def baselines(self) -> list[tuple[TrialSource, dict[str, float]]]:
        """Each single checkpoint (weight 1 everywhere), then the uniform average, as (source, raw params)."""

        def everywhere(member_weight: Mapping[str, float]) -> dict[str, float]:
            per_label = {label: member_weight[label.rsplit("/", 1)[-1]] for label in self.labels}
            return self.params_of(per_label, self.knob_defaults)

        candidates = [(TrialSource.single(m), {o: float(o == m) for o in self.members}) for m in self.members]
        if len(self.members) > 1:
            share = 1.0 if self.spec.kind == "simplex" else 1.0 / len(self.members)
            candidates.append((TrialSource.uniform(), {o: share for o in self.members}))
        low, high = self.spec.bounds
        return [(label, everywhere(w)) for label, w in candidates if all(low <= x <= high for x in w.values())]


def searchable_parameters() -> dict[str, Parameter]:
    """The parameters a search may vary, by name: every registered method's searchable declarations."""
    return {name: p for name, p in declared_parameters().items() if p.searchable}


def space_for(spec: SpaceSpec, merge: MergeSpec, plan: PoolPlan) -> WeightSpace:
    """Bind ``spec`` to a planned pool: groups that match nothing are refused, ``rest`` added when needed."""
    grouped = assign_groups(plan.tensors, spec.groups)
    groups = [*spec.groups, REST] if spec.groups and len(grouped) < len(plan.tensors) else list(spec.groups)
    defaults = {k: min(max(float(merge.value(k)), low), high) for k, (low, high) in spec.knobs.items()}
    return WeightSpace(spec, plan.members, groups, defaults)
