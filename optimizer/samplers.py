"""Samplers by name: one registry entry per way an experiment can propose weights.

Every sampler sees every objective's value (the study is always multi-objective), so a front
exists whatever the sampler. ``SamplerContext`` gives the custom ones what Optuna cannot:
the objectives' directions and the recorded weights of a parameter set.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
from optuna.distributions import FloatDistribution
from optuna.search_space import intersection_search_space
from optuna.trial import TrialState

from evaluators.registry import Registry


@dataclass(frozen=True)
class SamplerContext:
    directions: list[str]
    features: Callable[[Mapping[str, float]], list[float]]  # raw params -> recorded weights and knobs


SamplerFactory = Callable[[int, SamplerContext], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("gp")
def _gp(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """Gaussian process with log expected hypervolume improvement; each proposal costs seconds with
    3+ objectives (the acquisition is optimised over a box decomposition of the front)."""
    return optuna.samplers.GPSampler(seed=seed)


@SAMPLERS.register("tpe")
def _tpe(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (default): cheap per proposal, models the correlation between member weights."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


@SAMPLERS.register("nsga2")
def _nsga2(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


@SAMPLERS.register("random")
def _random(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("qmc")
def _qmc(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)


@SAMPLERS.register("cmaes")
def _cmaes(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """The recycling paper's recipe: CMA-ES on the macro-average of the objectives."""
    from optimizer.scalarised import ScalarisedCmaEs

    return ScalarisedCmaEs(seed, context.directions)


@SAMPLERS.register("surrogate")
def _surrogate(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """Quadratic per-objective surrogate: proposes the predicted front points."""
    from optimizer.surrogate import QuadraticSurrogate

    return QuadraticSurrogate(seed, context)


def finished_float_space(study: optuna.Study) -> dict[str, FloatDistribution]:
    """The float parameters every finished trial shares: the space the custom samplers model."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {k: d for k, d in intersection_search_space(done).items() if isinstance(d, FloatDistribution)}


def is_fixed(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's parameters were enqueued (baselines, re-runs), not proposed by a sampler."""
    return "fixed_params" in trial.system_attrs
