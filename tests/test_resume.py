"""Crash and continue: SIGKILL (or Ctrl-C) the driver mid-search, then `mergefront resume` completes the budget."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from optimizer.cli import main
from optimizer.journal import journal_storage
from optimizer.store import read_table
from tests.conftest import write_experiment

pytestmark = pytest.mark.e2e
BUDGET = 9


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the search ended before it could be killed:\n{proc.stderr.read() if proc.stderr else ''}"
        if path.is_file() and len(read_table(path.parent, path.name)[1]) >= rows:  # one open: the search replaces it meanwhile
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} did not reach {rows} rows in {timeout} s")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_stopped_search_resumes_to_exactly_the_budget(
    tiny_pool: Path, tmp_path: Path, ray_session, capsys: pytest.CaptureFixture[str], sig: signal.Signals, code: int
) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=BUDGET, extra="sampler: {name: tpe}\n")
    run = tmp_path / "runs" / "tiny"
    address = ray_session.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mergefront")), "search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--ray-address", address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_rows(run / "trials.parquet", 3, proc)
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=60)
    assert proc.returncode == code
    before = pd.read_parquet(run / "trials.parquet")
    assert 3 <= (before["state"] == "COMPLETE").sum() < BUDGET

    assert main(["resume", str(run), "--no-progress"]) == 0
    assert f"{BUDGET} trials evaluated" in capsys.readouterr().out
    trials = pd.read_parquet(run / "trials.parquet")
    assert trials["trial"].is_unique
    assert trials["error"].fillna("").str.contains("re-queued").any(), "the stop should have caught a trial in flight"
    assert (trials["state"] == "COMPLETE").sum() == BUDGET
    after = dict(zip(trials["trial"], trials["state"], strict=True))
    assert all(after[n] == state for n, state in zip(before["trial"], before["state"], strict=True))  # nothing rewritten

    study = optuna.load_study(study_name="tiny", storage=journal_storage(run / "study.journal"))
    states = {t.number: t.state for t in study.get_trials()}
    assert optuna.trial.TrialState.RUNNING not in states.values()
    complete = sorted(n for n, s in states.items() if s == optuna.trial.TrialState.COMPLETE)
    assert complete == sorted(trials.loc[trials["state"] == "COMPLETE", "trial"])
    for t in study.get_trials():  # every trial the stopped driver left running was re-queued with its parameters
        if t.state == optuna.trial.TrialState.FAIL and "re-queued" in str(trials.set_index("trial").loc[t.number, "error"]):
            again = [u for u in study.get_trials() if u.user_attrs.get("requeued_from") == t.number]
            assert len(again) == 1 and t.params.items() <= again[0].params.items() and again[0].state == optuna.trial.TrialState.COMPLETE

    # a larger budget given to resume is kept for later resumes
    assert main(["resume", str(run), "--trials", str(BUDGET + 2), "--no-progress"]) == 0
    assert main(["resume", str(run), "--no-progress"]) == 0
    assert f"{BUDGET + 2} trials evaluated" in capsys.readouterr().out
    assert (pd.read_parquet(run / "trials.parquet")["state"] == "COMPLETE").sum() == BUDGET + 2
