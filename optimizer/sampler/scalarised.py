"""Scalarised CMA-ES: the recycling paper's search, inside a multi-objective study.

CMA-ES minimises minus the macro-average of the objectives (each signed by its direction).
Its state is never stored: each proposal replays the finished generations from the study's
trials (parameters are tagged with their generation), so a resumed study continues exactly
and no pickled optimiser is ever read back. Asynchronous: a generation is told once
``population`` of its trials have finished; until then proposals come from the current one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
from cmaes import CMA
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from optimizer.sampler.base import SAMPLERS, SamplerContext, finished_float_space, is_fixed

GENERATION = "cmaes:generation"


class ScalarisedCmaEs(BaseSampler):
    """CMA-ES on the macro-average of the objectives, its state replayed from the study on every proposal (see the
    module docstring). ``population`` defaults to CMA-ES's 4 + ⌊3 ln n⌋ for n parameters."""

    def __init__(self, seed: int, directions: Sequence[str], sigma: float = 0.3, population: int | None = None) -> None:
        self._seed = seed
        self._signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
        self._sigma = sigma
        self._population = population
        self._random = RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The float parameters every finished trial shares (CMA-ES works in their unit cube)."""
        return dict(finished_float_space(study))

    def macro_average(self, values: Sequence[float]) -> float:
        """Mean of the objective values, each signed so that larger is better: the scalar CMA-ES maximises."""
        return float(np.mean(np.asarray(values) * self._signs))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, float]:
        """Replay the finished generations from the study, then ask CMA-ES for this trial's point; tags the trial
        with its generation. Enqueued trials (baselines, re-runs) get nothing."""
        if not search_space or is_fixed(trial):
            return {}
        names = sorted(search_space)
        low = np.array([search_space[n].low for n in names])  # type: ignore[attr-defined]
        span = np.array([search_space[n].high for n in names]) - low  # type: ignore[attr-defined]
        population = self._population or 4 + math.floor(3 * math.log(len(names)))
        # seeded per trial: tell() draws no random numbers, so replay is deterministic
        cma = CMA(
            mean=np.full(len(names), 0.5),
            sigma=self._sigma,
            bounds=np.array([[0.0, 1.0]] * len(names)),
            seed=self._seed * 100_003 + trial.number,
            population_size=population,
        )
        tagged = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if GENERATION in t.system_attrs
        ]
        while True:
            batch = [t for t in tagged if t.system_attrs[GENERATION] == cma.generation][:population]
            if len(batch) < population:
                break
            cma.tell(
                [((np.array([t.params[n] for n in names]) - low) / span, -self.macro_average(t.values)) for t in batch]
            )
        study._storage.set_trial_system_attr(trial._trial_id, GENERATION, cma.generation)
        x = low + cma.ask() * span
        return {n: float(v) for n, v in zip(names, x, strict=True)}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> object:
        """Parameters outside the shared space (the first trials, new ones): drawn at random."""
        return self._random.sample_independent(study, trial, param_name, param_distribution)


@SAMPLERS.register("cmaes")
def _cmaes(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """The recycling paper's recipe: CMA-ES on the macro-average of the objectives."""
    return ScalarisedCmaEs(seed, context.directions)
