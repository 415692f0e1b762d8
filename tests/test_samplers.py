"""Custom samplers against hand-computed expectations: scalarised CMA-ES, the quadratic surrogate, screening."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from evaluators.worker import Promotion
from optimizer.sampler import SAMPLERS, SamplerContext
from optimizer.sampler.scalarised import GENERATION, ScalarisedCmaEs
from optimizer.sampler.surrogate import QuadraticModel, QuadraticSurrogate, improvement, quadratic_features

SPACE = {"x.a": FloatDistribution(0, 1), "x.b": FloatDistribution(0, 1)}
optuna.logging.set_verbosity(optuna.logging.ERROR)


def objectives(p: dict[str, float]) -> list[float]:
    """Two conflicting objectives, both maximised, best trade-offs along a + b = 1."""
    a, b = p["x.a"], p["x.b"]
    return [2 - (a - 1) ** 2 - b**2, 2 - a**2 - (b - 1) ** 2]  # beyond [0, 1]: fitted without the logit


def context() -> SamplerContext:
    return SamplerContext(["maximize", "maximize"], lambda p: [p["x.a"], p["x.b"]])


def run(sampler: optuna.samplers.BaseSampler, n: int) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.enqueue_trial({"x.a": 0.5, "x.b": 0.5})  # the first completed trial fixes the search space
    for _ in range(n):
        trial = study.ask(SPACE)
        study.tell(trial, objectives(trial.params))
    return study


def test_every_registered_sampler_proposes_in_range() -> None:
    for name in SAMPLERS.names():
        study = run(SAMPLERS.get(name)(0, context()), 12)
        assert all(0 <= v <= 1 for t in study.trials for v in t.params.values()), name


def test_cmaes_improves_the_macro_average_and_is_stateless() -> None:
    sampler = ScalarisedCmaEs(3, ["maximize", "maximize"], population=6)
    study = run(sampler, 48)
    gens: dict[int, list[float]] = {}
    for t in study.trials:
        if GENERATION in t.system_attrs:
            gens.setdefault(t.system_attrs[GENERATION], []).append(sampler.macro_average(t.values))
    assert max(gens) >= 5, "told generations must advance"
    assert np.mean(gens[max(gens) - 1]) > np.mean(gens[0])
    # a fresh sampler (e.g. after resume) proposes exactly what the old one would: no hidden state
    pending = study.ask(SPACE).number
    frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, pending))
    again = ScalarisedCmaEs(3, ["maximize", "maximize"], population=6)
    assert sampler.sample_relative(study, frozen, SPACE) == again.sample_relative(study, frozen, SPACE)


def test_cmaes_macro_average_signs_minimised_objectives() -> None:
    assert ScalarisedCmaEs(0, ["maximize", "minimize"]).macro_average([0.8, 0.2]) == pytest.approx(0.3)


def test_quadratic_model_recovers_a_quadratic_exactly() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((30, 2))
    y = (2 + x[:, 0] - 3 * x[:, 1] + 4 * x[:, 0] * x[:, 1] - x[:, 1] ** 2)[:, None] + 5  # outside [0, 1]: no logit
    model = QuadraticModel(x, y, ridge=0.0)
    assert quadratic_features(x).shape[1] == 6
    np.testing.assert_allclose(model.predict(np.array([[0.3, 0.7]])), [[7 + 0.3 - 2.1 + 0.84 - 0.49]], rtol=1e-9)


def test_quadratic_model_fits_accuracies_on_the_logit_scale() -> None:
    x = np.linspace(0, 1, 20)[:, None]
    y = 1 / (1 + np.exp(-(4 * x - 2)))  # a sigmoid of a line: exact on the logit scale
    model = QuadraticModel(x, y, ridge=0.0)
    assert model.bounded.all()
    np.testing.assert_allclose(model.predict(np.array([[0.25]])), [[1 / (1 + np.exp(1.0))]], rtol=1e-6)


def test_improvement_is_zero_for_dominated_and_positive_for_new_ground() -> None:
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    gain = improvement(np.array([[0.4, 0.4], [0.8, 0.8]]), front, 20_000, np.random.default_rng(0))
    assert gain[0] > 0 and gain[1] > gain[0]
    assert improvement(np.array([[0.9, -0.1]]), front, 5_000, np.random.default_rng(0))[0] == 0


def test_surrogate_predicts_the_trials_it_proposes() -> None:
    sampler = QuadraticSurrogate(0, context(), candidates=512, mc_samples=4000)
    study = run(sampler, 16)
    proposed = [t for t in study.trials if t.number in sampler.predictions]
    assert len(proposed) >= 5, "after 6 trials (6 coefficients) every proposal is the surrogate's"
    for t in proposed[-5:]:  # the objective is quadratic, so once fitted on enough trials it predicts closely
        np.testing.assert_allclose(sampler.predictions[t.number], objectives(t.params), atol=0.05)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_screen_promotion_rule() -> None:
    rule = Promotion(front=[[0.8, -10.0]], signs=[1.0, -1.0], margin=0.05)  # acc 0.8 at perplexity 10
    assert not rule.promotes([0.7, 11.0])  # beaten by more than the margin on both
    assert rule.promotes([0.78, 10.5])  # within the margin on accuracy
    assert rule.promotes([0.9, 20.0])  # a trade-off
