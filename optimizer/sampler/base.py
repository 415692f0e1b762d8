"""The sampler registry and what every sampler may use: ``SamplerContext`` gives the custom ones
what Optuna cannot (the objectives' directions and the recorded weights of a parameter set)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution
from optuna.search_space import intersection_search_space
from optuna.trial import TrialState

from evaluators.core.registry import Registry


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler factory gets besides its seed: the objectives' directions, and the map from a trial's raw
    parameters to the weights and knobs the trial records (the features a model should see)."""

    directions: list[str]
    features: Callable[[Mapping[str, float]], list[float]]  # raw params -> recorded weights and knobs


SamplerFactory = Callable[[int, SamplerContext], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


def finished_float_space(study: optuna.Study) -> dict[str, FloatDistribution]:
    """The float parameters every finished trial shares: the space the custom samplers model."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {k: d for k, d in intersection_search_space(done).items() if isinstance(d, FloatDistribution)}


def is_fixed(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's parameters were enqueued (baselines, re-runs), not proposed by a sampler."""
    return "fixed_params" in trial.system_attrs
