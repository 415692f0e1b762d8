"""Optuna's own samplers, registered under short names."""

from __future__ import annotations

import warnings

import optuna

from optimizer.sampler.base import SAMPLERS, SamplerContext


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
