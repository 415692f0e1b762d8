"""Crash and continue: SIGKILL (or Ctrl-C) the driver mid-search, then `mergefront resume` completes the budget.

The driver is stopped parked on Ray (tests/park.py; e2e, with the dummy backend's fast trials), or
interrupted in this process while a trial is being evaluated. A finished run resumes at once, without workers."""

from __future__ import annotations

import contextlib
import shutil
import signal
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest

from evaluators.backends.dummy import DummyScorer
from optimizer.cli import main
from optimizer.experiment.config import load_experiment
from optimizer.search.driver import Search
from optimizer.search.start import start_run
from optimizer.search.summary import SearchInterrupted
from optimizer.store.journal import journal_storage
from optimizer.store.rows import INTERRUPTED
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
    if sig == signal.SIGINT:  # the trial in flight is re-queued, and the driver says how to go on
        assert f"interrupted: 1 trial re-queued; continue with `mergefront resume {run}`" in log.read_text()
    # after SIGKILL, resume over Ray (stale actors and all); after Ctrl-C, what the stop left is driver-side
    # state, so that resume runs in this process
    assert_resume_completes_the_budget(run, BUDGET - 1, capsys, *(("--in-process",) if sig == signal.SIGINT else ()))


def _interrupted_at_the_sixth_trial(patch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the worker (in this process) scores the 6th trial."""
    calls = []
    score = DummyScorer.__call__

    def interrupted_at_the_sixth(self: DummyScorer) -> object:
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return score(self)

    patch.setattr(DummyScorer, "__call__", interrupted_at_the_sixth)


def test_a_search_interrupted_in_a_trial_resumes_to_exactly_the_budget(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI prints the front and the summary, the interrupted trial counted apart from failures, and the command
    that goes on; exit code 130, as a shell gives for Ctrl-C."""
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: tpe}\n", trials=BUDGET)
    run = tmp_path / "runs" / "tiny"
    with monkeypatch.context() as patch:
        _interrupted_at_the_sixth_trial(patch)
        argv = ["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]
        assert main(argv) == 130
    out, err = capsys.readouterr()
    assert err.endswith(f"mergefront: interrupted: 1 trial re-queued; continue with `mergefront resume {run}`\n")
    assert f"Pareto front of {run} (" in out and "of 5 complete trials, 0 failed, 1 interrupted and re-queued):" in out
    assert (
        "stopped: interrupted (Ctrl-C); this call: 5 trials complete (0 screened only), 0 failed, 1 interrupted" in out
    )
    assert_resume_completes_the_budget(run, 5, capsys, "--in-process")


def test_ctrl_c_stops_a_search_cleanly_with_its_summary(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search.run raises SearchInterrupted (still a KeyboardInterrupt) with the call's summary: the trial in flight
    stored as interrupted and queued again, not failed."""
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: random}\n", trials=BUDGET)
    experiment, pool = load_experiment(exp)
    search = start_run(experiment, pool, exp, tmp_path / "runs")
    with monkeypatch.context() as patch, pytest.raises(SearchInterrupted) as stopped:
        _interrupted_at_the_sixth_trial(patch)
        search.run(progress=False, in_process=True)
    summary = stopped.value.summary
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert (summary.complete, summary.failed, summary.interrupted) == (5, 0, 1)
    assert summary.stop_reason == "interrupted (Ctrl-C)"
    record = search.store.find(5)
    assert record is not None and record.interrupted and record.error == INTERRUPTED
    queued = search.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["requeued_from"] for t in queued] == [5]


def test_resume_of_a_finished_run_starts_no_worker(
    dummy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished run (budget met, no held-out task) is reported as such at once: neither Ray nor a worker is
    started. Given a larger budget, resume starts its worker and runs the rest."""
    import optimizer.search.driver

    run = tmp_path / "tiny"
    shutil.copytree(dummy_run, run)
    started: list[object] = []
    start_workers = optimizer.search.driver.start_workers
    monkeypatch.setattr(optimizer.search.driver, "start_ray", lambda *args: started.append(("ray", args)))
    monkeypatch.setattr(
        optimizer.search.driver, "start_workers", lambda *args: started.append(args) or start_workers(*args)
    )
    capsys.readouterr()
    assert main(["resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert started == []
    assert f"Pareto front of {run} (" in out
    assert out.rstrip().endswith(
        "finished already: 7 trials evaluated; no worker started (resume --trials N searches further)"
    )
    assert main(["resume", str(run), "--trials", "8", "--no-progress", "--in-process"]) == 0
    assert len(started) == 1 and "stopped: 8 trials evaluated; this call: 1 trials complete" in capsys.readouterr().out


def test_a_front_without_its_held_out_scores_is_not_finished(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budget met but the held-out tasks not scored (stopped while they were): resume still has that to do."""
    exp = tiny_experiment(tiny_pool, tmp_path, "held_out: [{task: toy_sort_report, name: sort_report}]\n")
    experiment, pool = load_experiment(exp)
    search = start_run(experiment, pool, exp, tmp_path / "runs")
    with monkeypatch.context() as patch:
        patch.setattr(Search, "_score_held_out", lambda self, workers: self.store.front())
        search.run(progress=False, in_process=True)
    assert search.finished() is None
    assert main(["resume", str(search.run_dir), "--no-progress", "--in-process"]) == 0
    assert Search.join(search.run_dir).finished() == "6 trials evaluated"
    assert pd.read_parquet(search.run_dir / "front.parquet")["held_out__sort_report"].notna().all()


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
