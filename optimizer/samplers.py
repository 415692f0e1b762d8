"""Samplers by name: one registry entry per Optuna sampler an experiment can choose."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from evaluators.registry import Registry

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("tpe")
def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE: cheap per proposal, models the correlation between member weights."""
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


@SAMPLERS.register("gp")
def _gp(seed: int) -> optuna.samplers.BaseSampler:
    """Gaussian process with log expected hypervolume improvement: the most sample-efficient."""
    return optuna.samplers.GPSampler(seed=seed)


@SAMPLERS.register("nsga2")
def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


@SAMPLERS.register("random")
def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("qmc")
def _qmc(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=seed, scramble=True)
