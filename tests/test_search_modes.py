"""Search modes end to end on the tiny pool: screening with held-out report tasks, grouped box spaces
with a searched λ under scalarised CMA-ES, and the surrogate's predictions kept apart from scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.cli import main
from tests.conftest import write_experiment

pytestmark = pytest.mark.e2e


def search(tmp_path: Path, tiny_pool: Path, extra: str, trials: int) -> pd.DataFrame:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=trials, extra=extra)
    assert main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    return pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")


def test_screening_keeps_the_front_full_fidelity_and_reports_held_out_tasks(tiny_pool: Path, tmp_path: Path, ray_session: object) -> None:
    extra = "sampler: {name: random}\nevaluation: {screen: 8, margin: 0.0}\nreport: [{task: toy_sort_report, name: sort_report}]\n"
    trials = search(tmp_path, tiny_pool, extra, trials=12)
    front = pd.read_parquet(tmp_path / "runs" / "tiny" / "front.parquet")
    baselines = trials[trials["source"] != "sampler"]
    assert (baselines["fidelity"] == "full").all() and (baselines["samples"] == 48).all()  # 2 tasks x 24 examples
    screened = trials[trials["fidelity"] == "screen:8"]
    assert (screened["samples"] == 16).all()
    assert set(trials["fidelity"]) <= {"full", "screen:8"} and len(screened) > 0
    assert (front["fidelity"] == "full").all()
    # report scores exist exactly for the front, and are accuracies
    has_report = trials["report.sort_report"].notna()
    assert set(trials.loc[has_report, "trial"]) == set(front["trial"])
    assert front["report.sort_report"].between(0, 1).all() and front["report_stderr.sort_report"].notna().all()


def test_grouped_box_space_with_searched_scale_under_cmaes(tiny_pool: Path, tmp_path: Path, ray_session: object) -> None:
    extra = (
        "merge: {method: task_arithmetic}\n"
        "space: {kind: box, low: -0.5, high: 1.5, groups: {attn: 'self_attn\\.'}, knobs: {scale: [0.5, 1.5]}}\n"
        "sampler: {name: cmaes}\n"
    )
    trials = search(tmp_path, tiny_pool, extra, trials=9)
    members = ["add", "reverse", "sort", "shift"]
    labels = [f"{g}/{m}" for g in ("attn", "rest") for m in members]
    assert [c for c in trials if c.startswith("weight.")] == [f"weight.{x}" for x in labels]
    single = trials[trials["source"] == "single:sort"].iloc[0]
    assert single["knob.scale"] == 1.0 and single["weight.attn/sort"] == single["weight.rest/sort"] == 1.0
    sampled = trials[trials["source"] == "sampler"]
    assert len(sampled) == 4 and (trials["state"] == "COMPLETE").all()
    assert sampled["knob.scale"].between(0.5, 1.5).all()
    w = sampled[[f"weight.{x}" for x in labels]].to_numpy()
    assert ((w >= -0.5) & (w <= 1.5)).all() and (w < 0).any() | (np.abs(w.sum(axis=1) - 1) > 1e-6).any()


def test_surrogate_predictions_are_stored_beside_measurements(tiny_pool: Path, tmp_path: Path, ray_session: object) -> None:
    trials = search(tmp_path, tiny_pool, "sampler: {name: surrogate}\n", trials=24)
    predicted = trials[trials["predicted.toy_reverse/acc"].notna()]
    assert len(predicted) >= 3, "after 15 trials the surrogate proposes the rest"
    assert (trials.loc[trials["source"] != "sampler", "predicted.toy_reverse/acc"].isna()).all()
    assert predicted["predicted.toy_reverse/acc"].between(0, 1).all()
    assert not np.allclose(predicted["predicted.toy_reverse/acc"], predicted["score.toy_reverse/acc"])


@pytest.mark.parametrize(
    ("budget", "reason"),
    [("{trials: 200, worker_hours: 0.0003}", "0.0003 worker-hours used"), ("{trials: 200, wall_minutes: 0.75}", "wall time of 0.75 min reached")],
)
def test_time_budgets_stop_the_search(
    tiny_pool: Path, tmp_path: Path, ray_session: object, capsys: pytest.CaptureFixture[str], budget: str, reason: str
) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", extra="sampler: {name: random}\n")
    exp.write_text(exp.read_text().replace("budget: {trials: 6}", f"budget: {budget}"))
    assert main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert f"stopped: {reason}" in capsys.readouterr().out
    trials = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")
    assert 1 <= (trials["state"] == "COMPLETE").sum() < 200
