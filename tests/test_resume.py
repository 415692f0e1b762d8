"""Crash and continue: SIGKILL (or Ctrl-C) the driver mid-search, then `mergefront resume` completes the budget.

The driver is stopped parked on Ray (tests/park.py; e2e, with the dummy backend's fast trials), or
interrupted in this process while a trial is being evaluated."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from evaluators.backends.dummy import DummyScorer
from optimizer.cli import main
from optimizer.store.journal import journal_storage
from tests.helpers import tiny_experiment
from tests.park import TIMEOUT, search_command, start_parked

BUDGET = 9


@pytest.mark.e2e
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_stopped_search_resumes_to_exactly_the_budget(
    tiny_pool: Path, tmp_path: Path, ray_session, capsys: pytest.CaptureFixture[str], sig: signal.Signals, code: int
) -> None:
    """The driver is stopped parked (tests/park.py): every trial done but one, in flight on a stopped worker."""
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: tpe}\n", trials=BUDGET)
    run = tmp_path / "runs" / "tiny"
    address = ray_session.get_runtime_context().gcs_address
    log = tmp_path / "driver.log"
    proc, worker = start_parked(search_command(exp, tmp_path / "runs", address), run, BUDGET, log)
    try:
        proc.send_signal(sig)
        proc.wait(timeout=TIMEOUT)
    finally:
        proc.kill()  # only if it hung
        with contextlib.suppress(psutil.NoSuchProcess):  # unless Ray killed it with its driver
            worker.kill()  # frees its CPU for resume's workers
    assert proc.returncode == code, log.read_text()[-3000:]
    # after SIGKILL, resume over Ray (stale actors and all); after Ctrl-C, what the stop left is driver-side
    # state, so that resume runs in this process
    assert_resume_completes_the_budget(run, BUDGET - 1, capsys, *(("--in-process",) if sig == signal.SIGINT else ()))


def test_a_search_interrupted_in_a_trial_resumes_to_exactly_the_budget(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arrives while the worker (in this process) scores the 6th trial."""
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: tpe}\n", trials=BUDGET)
    calls = []
    score = DummyScorer.__call__

    def interrupted_at_the_sixth(self: DummyScorer) -> object:
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return score(self)

    with monkeypatch.context() as patch:
        patch.setattr(DummyScorer, "__call__", interrupted_at_the_sixth)
        argv = ["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]
        assert main(argv) == 130
    assert_resume_completes_the_budget(tmp_path / "runs" / "tiny", 5, capsys, "--in-process")


def assert_resume_completes_the_budget(run: Path, done: int, capsys: pytest.CaptureFixture[str], *flags: str) -> None:
    """``done`` trials complete before resume; resume evaluates exactly the rest of the budget, re-queues
    every trial left in flight with its parameters and rewrites nothing; a larger budget given to
    resume is kept."""
    before = pd.read_parquet(run / "trials.parquet")
    assert (before["state"] == "COMPLETE").sum() == done
    capsys.readouterr()

    assert main(["resume", str(run), "--no-progress", *flags]) == 0
    assert f"{BUDGET} trials evaluated" in capsys.readouterr().out
    trials = pd.read_parquet(run / "trials.parquet")
    assert trials["trial"].is_unique
    assert trials["error"].fillna("").str.contains("re-queued").any(), "the stop should have caught a trial in flight"
    assert (trials["state"] == "COMPLETE").sum() == BUDGET
    after = dict(zip(trials["trial"], trials["state"], strict=True))
    assert all(
        after[n] == state for n, state in zip(before["trial"], before["state"], strict=True)
    )  # nothing rewritten

    study = optuna.load_study(study_name="tiny", storage=journal_storage(run / "study.journal"))
    states = {t.number: t.state for t in study.get_trials()}
    assert optuna.trial.TrialState.RUNNING not in states.values()
    complete = sorted(n for n, s in states.items() if s == optuna.trial.TrialState.COMPLETE)
    assert complete == sorted(trials.loc[trials["state"] == "COMPLETE", "trial"])
    for t in study.get_trials():  # every trial the stopped driver left running was re-queued with its parameters
        if t.state == optuna.trial.TrialState.FAIL and "re-queued" in str(
            trials.set_index("trial").loc[t.number, "error"]
        ):
            again = [u for u in study.get_trials() if u.user_attrs.get("requeued_from") == t.number]
            assert (
                len(again) == 1
                and t.params.items() <= again[0].params.items()
                and again[0].state == optuna.trial.TrialState.COMPLETE
            )

    # a larger budget given to resume is kept for later resumes (in this process: driver logic, no Ray)
    assert main(["resume", str(run), "--trials", str(BUDGET + 2), "--no-progress", "--in-process"]) == 0
    assert main(["resume", str(run), "--no-progress", "--in-process"]) == 0
    assert f"{BUDGET + 2} trials evaluated" in capsys.readouterr().out
    assert (pd.read_parquet(run / "trials.parquet")["state"] == "COMPLETE").sum() == BUDGET + 2
