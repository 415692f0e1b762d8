"""Surrogate-assisted front: a per-objective quadratic in the weights proposes the predicted front.

Each objective is modelled as a quadratic in the recorded weights (and knobs), fitted by ridge
least squares on the finished trials; objectives whose values all lie in [0, 1] (accuracies)
are fitted on the logit scale and squashed back with a sigmoid. Among a few thousand random
candidates, the one whose *predicted* values add the most hypervolume to the measured front
(and to the predictions still being evaluated) is proposed. Its predicted values are kept in
``predictions`` so the driver stores them beside, never instead of, the measured ones. Until
there are as many finished trials as the quadratic has coefficients, quasi-random points are
proposed.
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, QMCSampler
from optuna.trial import FrozenTrial, TrialState

from optimizer.sampler.base import SAMPLERS, SamplerContext, finished_float_space, is_fixed
from optimizer.store.pareto import pareto_mask

EPS = 1e-3


def quadratic_features(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i x_j (i <= j)] per row."""
    i, j = np.triu_indices(x.shape[1])
    return np.hstack([np.ones((len(x), 1)), x, x[:, i] * x[:, j]])


class QuadraticModel:
    """Ridge fit of one quadratic per objective, on the logit scale for [0, 1]-valued objectives."""

    def __init__(self, x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> None:
        self.bounded = ((y >= 0) & (y <= 1)).all(axis=0)
        z = np.where(self.bounded, _logit(np.clip(y, EPS, 1 - EPS)), y)
        phi = quadratic_features(x)
        self.coef = np.linalg.solve(phi.T @ phi + ridge * np.eye(phi.shape[1]), phi.T @ z)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted objective values, one row per row of ``x`` (the features the model was fitted on)."""
        z = quadratic_features(x) @ self.coef
        return np.where(self.bounded, 1.0 / (1.0 + np.exp(-z)), z)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def improvement(candidates: np.ndarray, front: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo hypervolume each candidate adds to ``front`` (maximisation, shared random points)."""
    both = np.vstack([candidates, front])
    low, high = both.min(axis=0), both.max(axis=0)
    low = low - 0.1 * (high - low + 1e-12)
    u = low + rng.random((samples, both.shape[1])) * (high - low)
    covered = (front[:, None, :] >= u[None, :, :]).all(axis=2).any(axis=0) if len(front) else np.zeros(samples, bool)
    free = u[~covered]
    return (candidates[:, None, :] >= free[None, :, :]).all(axis=2).sum(axis=1) / samples


class QuadraticSurrogate(BaseSampler):
    """Proposes the random candidate whose predicted values add the most hypervolume (see the module docstring);
    ``predictions`` holds each proposal's predicted values by trial number, for the driver to store."""

    def __init__(self, seed: int, context: SamplerContext, candidates: int = 4096, mc_samples: int = 20_000) -> None:
        self._seed = seed
        self._context = context
        self._signs = np.array([1.0 if d == "maximize" else -1.0 for d in context.directions])
        self._candidates = candidates
        self._mc_samples = mc_samples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._startup = QMCSampler(seed=seed, scramble=True)
        self.predictions: dict[int, list[float]] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The float parameters every finished trial shares: the space the quadratic is fitted on."""
        return dict(finished_float_space(study))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, float]:
        """The proposal for ``trial``: quasi-random until there are enough finished trials to fit the quadratic, then
        the predicted-front candidate. Enqueued trials (baselines, re-runs) get nothing."""
        if not search_space or is_fixed(trial):
            return {}
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        features = np.array([self._context.features(t.params) for t in done])
        if len(done) < quadratic_features(features[:1]).shape[1]:
            return self._startup.sample_relative(study, trial, search_space)
        model = QuadraticModel(features, np.array([t.values for t in done]))
        rng = np.random.default_rng([self._seed, trial.number])
        names = sorted(search_space)
        low = np.array([search_space[n].low for n in names])  # type: ignore[attr-defined]
        high = np.array([search_space[n].high for n in names])  # type: ignore[attr-defined]
        raw = low + rng.random((self._candidates, len(names))) * (high - low)
        params = [dict(zip(names, row, strict=True)) for row in raw]
        predicted = model.predict(np.array([self._context.features(p) for p in params]))
        signed = predicted * self._signs
        measured = np.array([t.values for t in done]) * self._signs
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        pending = [self.predictions[t.number] for t in running if t.number in self.predictions]
        front = np.vstack([measured, np.array(pending).reshape(-1, len(self._signs)) * self._signs])
        front = front[pareto_mask(front, [True] * front.shape[1])]
        keep = np.flatnonzero(pareto_mask(signed, [True] * signed.shape[1]))
        gain = improvement(signed[keep], front, self._mc_samples, rng)
        best = int(keep[np.argmax(gain)]) if gain.max() > 0 else int(rng.choice(keep))
        self.predictions[trial.number] = [float(v) for v in predicted[best]]
        return {n: float(v) for n, v in params[best].items()}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> object:
        """Parameters outside the shared space: from the quasi-random start-up sampler."""
        return self._startup.sample_independent(study, trial, param_name, param_distribution)


@SAMPLERS.register("surrogate")
def _surrogate(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    """Quadratic per-objective surrogate: proposes the predicted front points."""
    return QuadraticSurrogate(seed, context)
