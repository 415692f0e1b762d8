"""Search modes on the tiny pool: screening with held-out tasks, grouped box spaces with a searched
λ under scalarised CMA-ES, the surrogate's predictions kept apart from scores, and the time budgets (on a
clock that the test advances per trial, so they stop at a known trial on any machine). Real searches
(Optuna, Parquet, the merge engine) with the dummy backend in this process (``--in-process``); one
budget test runs two Ray workers, for the trial still in flight when the budget runs out."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evaluators.backends.dummy import EXAMPLES
from optimizer.cli import main
from optimizer.experiment.config import load_experiment
from optimizer.search.driver import Search
from optimizer.search.start import start_run
from optimizer.search.summary import RealClock
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from tests.helpers import search as run_search
from tests.helpers import tiny_experiment


def search(tmp_path: Path, tiny_pool: Path, extra: str, trials: int) -> pd.DataFrame:
    return run_search(tiny_experiment(tiny_pool, tmp_path, extra, trials), tmp_path / "runs", "--in-process")


def test_screening_keeps_the_front_full_fidelity_and_reports_held_out_tasks(tiny_pool: Path, tmp_path: Path) -> None:
    extra = "sampler: {name: random}\nevaluation: {screen: 8, margin: 0.0}\nheld_out: [{task: toy_sort_report, name: sort_report}]\n"
    trials = search(tmp_path, tiny_pool, extra, trials=12)
    front = pd.read_parquet(tmp_path / "runs" / "tiny" / "front.parquet")
    baselines = trials[trials["source"] != "sampler"]
    samples = ["samples__toy_add_perplexity", "samples__toy_reverse_acc"]  # examples per objective
    assert (baselines["fidelity"] == "full").all() and (baselines[samples] == EXAMPLES).all().all()
    screened = trials[trials["fidelity"] == "screen:8"]
    assert (screened[samples] == 8).all().all()
    assert set(trials["fidelity"]) <= {"full", "screen:8"} and len(screened) > 0
    assert (front["fidelity"] == "full").all()
    # held-out scores (stored as held_out__<task>) exist exactly for the front, and are accuracies
    has_report = trials["held_out__sort_report"].notna()
    assert set(trials.loc[has_report, "trial"]) == set(front["trial"])
    assert front["held_out__sort_report"].between(0, 1).all() and front["held_out_stderr__sort_report"].notna().all()


def test_grouped_box_space_with_searched_lambda_under_cmaes(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = (
        "merge: {method: task_arithmetic}\n"
        "space: {kind: box, low: -0.5, high: 1.5, groups: {attn: 'self_attn\\.'}, knobs: {lambda: [0.5, 1.5]}}\n"
        "sampler: {name: cmaes}\n"
    )
    trials = search(tmp_path, tiny_pool, extra, trials=9)
    members = ["add", "reverse", "sort", "shift"]
    labels = [f"{g}/{m}" for g in ("attn", "rest") for m in members]
    assert [c for c in trials if c.startswith("weight__")] == [f"weight__{x.replace('/', '_')}" for x in labels]
    single = trials[trials["source"] == "single:sort"].iloc[0]
    assert single["knob__scale"] == 1.0 and single["weight__attn_sort"] == single["weight__rest_sort"] == 1.0
    sampled = trials[trials["source"] == "sampler"]
    assert len(sampled) == 4 and (trials["state"] == "COMPLETE").all()
    assert sampled["knob__scale"].between(0.5, 1.5).all()
    w = sampled[[f"weight__{x.replace('/', '_')}" for x in labels]].to_numpy()
    assert ((w >= -0.5) & (w <= 1.5)).all() and (w < 0).any() | (np.abs(w.sum(axis=1) - 1) > 1e-6).any()
    # stored as knob.scale (the format), shown under the parameter's name
    capsys.readouterr()
    assert main(["front", str(tmp_path / "runs" / "tiny"), "--json"]) == 0
    assert {tuple(r["knobs"]) for r in json.loads(capsys.readouterr().out)} == {("lambda",)}
    assert main(["front", str(tmp_path / "runs" / "tiny")]) == 0
    words = capsys.readouterr().out.split()
    assert "lambda" in words and "scale" not in words  # a column of the weights block


def test_surrogate_predictions_are_stored_beside_measurements(tiny_pool: Path, tmp_path: Path) -> None:
    trials = search(tmp_path, tiny_pool, "sampler: {name: surrogate}\n", trials=19)
    predicted = trials[trials["predicted__toy_reverse_acc"].notna()]
    assert len(predicted) >= 3, "after 15 trials the surrogate proposes the rest"
    assert (trials.loc[trials["source"] != "sampler", "predicted__toy_reverse_acc"].isna()).all()
    assert predicted["predicted__toy_reverse_acc"].between(0, 1).all()
    assert not np.allclose(predicted["predicted__toy_reverse_acc"], predicted["score__toy_reverse_acc"])


class TrialClock:
    """Time that passes only as trials complete: ``step`` seconds of wall time per complete trial, and
    ``step`` seconds of worker time charged to each, so a time budget runs out at a known trial."""

    def __init__(self, search: Search, step: float) -> None:
        self.search = search
        self.step = step

    def now(self) -> float:
        return self.step * self.search.evaluated()

    def worker_seconds(self, record: TrialRecord) -> float:
        return self.step if record.complete else 0.0


def start(tiny_pool: Path, tmp_path: Path, budget: dict[str, float]) -> Search:
    """A created run on the tiny pool (dummy backend, 2 workers over Ray, random sampler) with ``budget``
    besides 200 trials."""
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: random}\n", trials=200)
    experiment, pool = load_experiment(exp)
    experiment = experiment.model_copy(update={"budget": experiment.budget.model_copy(update=budget)})
    return start_run(experiment, pool, exp, tmp_path / "runs")


@pytest.mark.parametrize(
    ("budget", "reason", "spent_at"),
    [
        ({"worker_hours": 0.01}, "0.01 worker-hours used", 4),
        ({"wall_minutes": 0.45}, "wall time of 0.45 min reached", 3),
    ],
    ids=["worker_hours", "wall_minutes"],
)
def test_time_budgets_stop_the_search(
    tiny_pool: Path, tmp_path: Path, budget: dict[str, float], reason: str, spent_at: int
) -> None:
    """10 s per complete trial: 36 s of worker time are spent by the 4th trial, 27 s of wall time by the 3rd."""
    search = start(tiny_pool, tmp_path, budget)
    search.clock = TrialClock(search, step=10.0)
    summary = search.run(progress=False, in_process=True)
    assert summary.stop_reason == reason
    assert (summary.complete, summary.failed) == (spent_at, 0)  # no trial starts once the budget is spent
    assert (pd.read_parquet(search.run_dir / "trials.parquet")["state"] == "COMPLETE").sum() == spent_at
    assert search.worker_hours() == pytest.approx(10.0 * spent_at / 3600)


@pytest.mark.e2e
def test_the_trial_in_flight_when_a_budget_runs_out_completes(
    tiny_pool: Path, tmp_path: Path, ray_session: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Two Ray workers: the worker-hour budget is spent by the 4th trial; the trial then running on the
    other worker still completes, and no trial starts after it. Each worker's ready line reaches the driver's log."""
    search = start(tiny_pool, tmp_path, {"worker_hours": 0.01})
    search.clock = TrialClock(search, step=10.0)
    with caplog.at_level(logging.INFO, logger="optimizer.search.workers"):
        summary = search.run(progress=False)
    ready = sorted(r.getMessage() for r in caplog.records if " ready: " in r.getMessage())
    assert [line.split(" ready: ")[0] for line in ready] == ["worker-0", "worker-1"]
    assert all(
        "dummy scorer (no model) built on cpu in " in line and "s after it was started" in line for line in ready
    )
    assert summary.stop_reason == "0.01 worker-hours used"
    assert (summary.complete, summary.failed) == (5, 0)
    assert (pd.read_parquet(search.run_dir / "trials.parquet")["state"] == "COMPLETE").sum() == 5
    assert search.worker_hours() == pytest.approx(10.0 * 5 / 3600)


def test_the_wall_time_budget_counts_the_workers_start_up(tiny_pool: Path, tmp_path: Path) -> None:
    """On real time: a budget of 60 ns is spent before the worker is up (on any machine), so no trial starts."""
    search = start(tiny_pool, tmp_path, {"wall_minutes": 1e-9})
    summary = search.run(progress=False, in_process=True)
    assert summary.stop_reason == "wall time of 1e-09 min reached"
    assert summary.complete == summary.failed == 0 and not search.store.records


def test_the_real_clock_charges_the_time_workers_measured() -> None:
    now = datetime.now(UTC)
    common: dict[str, Any] = {"trial": 0, "source": TrialSource.sampler(), "started_at": now, "finished_at": now}
    done = TrialRecord(
        state=TrialState.COMPLETE,
        weights={},
        scores={},
        stderr={},
        merge_seconds=0.5,
        eval_seconds=2.0,
        worker="w",
        device="cpu",
        **common,
    )
    assert RealClock().worker_seconds(done) == 2.5
    assert RealClock().worker_seconds(TrialRecord.failure("boom", weights={}, **common)) == 0.0
