"""Worker faults: a worker killed mid-search is replaced and its trial re-queued (nothing lost, nothing
counted twice); a worker slot that keeps failing is retired with a log line; failed evaluations are
recorded and repeated failures stop the search; resume stores what the study holds but Parquet lacks.
The first two need Ray's actors (e2e); the others run in this process."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest

from evaluators.backends import BackendSpec
from optimizer.cli import main
from optimizer.search.workers import RayWorkers
from optimizer.store.journal import journal_storage
from tests.helpers import tiny_experiment, tiny_spec, write_experiment
from tests.park import TIMEOUT, search_command, start_parked

BUDGET = 10


@pytest.mark.e2e
def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_re_queued(
    tiny_pool: Path, tmp_path: Path, ray_session
) -> None:  # type: ignore[no-untyped-def]
    """The worker is killed while its trial is in flight: parked (tests/park.py) with every other trial done.
    Ray's actor death and the driver's replacement are under test, so the scores are the dummy backend's."""
    exp = tiny_experiment(tiny_pool, tmp_path, trials=BUDGET)
    run = tmp_path / "runs" / "tiny"
    address = ray_session.get_runtime_context().gcs_address
    log = tmp_path / "driver.log"
    proc, worker = start_parked(search_command(exp, tmp_path / "runs", address), run, BUDGET, log)
    worker.kill()
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        proc.kill()  # only if it hung
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]

    trials = pd.read_parquet(run / "trials.parquet")
    assert trials["trial"].is_unique
    assert (trials["state"] == "COMPLETE").sum() == BUDGET
    died = trials[trials["error"].fillna("").str.contains("died")]
    assert len(died) == 1 and died["state"].item() == "FAIL" and "re-queued" in died["error"].item()
    assert "workers: 1 replaced after dying, retired: none" in out

    study = optuna.load_study(study_name="tiny", storage=journal_storage(run / "study.journal"))
    killed = study.trials[int(died["trial"].item())]
    again = [t for t in study.trials if t.user_attrs.get("requeued_from") == killed.number]
    assert len(again) == 1 and again[0].params == killed.params and again[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.e2e
def test_a_worker_that_keeps_failing_is_retired(tiny_pool: Path, ray_session, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    workers = RayWorkers(tiny_spec(tiny_pool, BackendSpec(backend="dummy", threads=1)), 1, retire_after=2)
    workers.wait_ready()
    first = workers.idle.pop()
    workers.died(first, "killed")
    assert not workers.idle and len(workers.starting) == 1
    [second] = workers.settle()
    assert second is not first and workers.restarts == 1 and workers.name(second) == "worker-0"
    workers.idle.pop()
    with caplog.at_level(logging.WARNING, logger="optimizer.search.workers"):
        workers.failed(second, "CUDA out of memory")
    assert workers.retired == ["worker-0"] and workers.alive == 0 and not workers.idle
    assert "worker-0 retired after 2 failures in a row; last: CUDA out of memory" in caplog.text
    workers.stop()


def test_failed_evaluations_are_recorded_and_repeated_failures_stop_the_search(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HF backend and lm-eval, in this process: every trial fails in lm-eval's metric lookup."""
    import optimizer.experiment.preflight

    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=3)
    exp.write_text(exp.read_text().replace("metric: acc,", "metric: acc, filter: strict-match,"))
    # preflight refuses a filter the task lacks (tests/test_bad_inputs.py); skip it so every trial fails in the worker
    monkeypatch.setattr(optimizer.experiment.preflight, "check_objectives", lambda *args: None)
    argv = ["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]
    assert main(argv) == 1
    trials = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")
    assert (trials["state"] == "FAIL").all() and len(trials) == 3
    assert trials["error"].str.contains("lm-eval gave no 'acc,strict-match'").all()
    assert len(pd.read_parquet(tmp_path / "runs" / "tiny" / "front.parquet")) == 0
    assert "stopped after 3 failed trials in a row; last error:" in capsys.readouterr().err


def test_resume_appends_trials_the_study_holds_but_parquet_lacks(dummy_run: Path, tmp_path: Path) -> None:
    """As after a driver killed between its Optuna write and its Parquet write (a warm-start import)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    run = tmp_path / "run"
    shutil.copytree(dummy_run, run)
    table = pq.read_table(run / "trials.parquet")
    lost = int(pc.max(table.filter(pc.equal(table["state"], "COMPLETE"))["trial"]).as_py())
    [original] = table.filter(pc.equal(table["trial"], lost)).to_pylist()
    pq.write_table(table.filter(pc.not_equal(table["trial"], lost)), run / "trials.parquet")

    assert main(["resume", str(run), "--no-progress", "--in-process"]) == 0
    trials = pd.read_parquet(run / "trials.parquet")
    study = optuna.load_study(study_name="tiny", storage=journal_storage(run / "study.journal"))
    assert trials["trial"].is_unique and (trials["state"] == "COMPLETE").sum() == 7  # nothing re-evaluated
    row = trials.set_index("trial").loc[lost]
    assert [row["score__toy_add_perplexity"], row["score__toy_reverse_acc"]] == study.trials[lost].values
    assert all(
        row[f"weight__{m}"] == pytest.approx(original[f"weight__{m}"]) for m in ("add", "reverse", "sort", "shift")
    )
