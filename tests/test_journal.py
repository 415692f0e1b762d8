"""The journal survives a killed driver: the lock dies with it, a torn write is cut, a half proposal is settled."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from optimizer.experiment.config import load_experiment
from optimizer.search.driver import Search
from optimizer.store.journal import trim_torn_tail
from tests.helpers import write_experiment


def test_torn_tail_is_cut_to_the_last_complete_line(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    journal.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    assert trim_torn_tail(journal) == 5
    assert journal.read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert trim_torn_tail(journal) == 0
    journal.write_bytes(b"x" * 5000)  # no newline at all, longer than one read
    assert trim_torn_tail(journal) == 5000 and journal.read_bytes() == b""


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "study.journal.flock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pathlib import Path; from optimizer.store.journal import JournalLock; held = JournalLock(Path({str(lock)!r})); held.acquire(); print('held', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        fd = os.open(lock, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the lock should be held by the other process")
            except BlockingIOError:
                pass
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the kill left it held
        finally:
            os.close(fd)
    finally:
        holder.kill()


def test_resume_settles_proposals_cut_short(tiny_pool: Path, tmp_path: Path) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks")
    experiment, pool = load_experiment(exp)
    run = tmp_path / "run"
    run.mkdir()
    search = Search.create(experiment, pool, run)
    names = list(search.space.distributions())
    baseline = search.study.ask()  # the first enqueued baseline, killed after one parameter
    baseline.suggest_float(names[0], 0.0, 1.0)
    search.study.ask().suggest_float(names[1], 0.0, 1.0)  # the next baseline, likewise
    fixed = {t.number: t.system_attrs["fixed_params"] for t in search.study.get_trials()[:2]}

    resumed = Search.resume(run)
    rows = pd.read_parquet(run / "trials.parquet").set_index("trial")
    assert list(rows["state"]) == ["FAIL", "FAIL"]
    assert rows["error"].str.contains("re-queued").all()
    trials = resumed.study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.FAIL]
    again = {
        t.user_attrs["requeued_from"]: t.system_attrs["fixed_params"] for t in trials if "requeued_from" in t.user_attrs
    }
    assert again == fixed
    assert all(t.state == TrialState.WAITING for t in trials if "requeued_from" in t.user_attrs)


def test_resume_drops_a_sampler_proposal_cut_short(tiny_pool: Path, tmp_path: Path) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=1)
    experiment, pool = load_experiment(exp)
    run = tmp_path / "run"
    run.mkdir()
    search = Search.create(experiment, pool, run)
    search.study.tell(search.study.ask().number, state=TrialState.FAIL)  # uses up the one enqueued baseline
    half = search.study.ask()
    half.suggest_float(next(iter(search.space.distributions())), 0.0, 1.0)

    resumed = Search.resume(run)
    row = pd.read_parquet(run / "trials.parquet").set_index("trial").loc[half.number]
    assert row["state"] == "FAIL" and "dropped" in row["error"]
    assert row.filter(like="weight__").isna().all()
    assert resumed.study.get_trials()[half.number].state == TrialState.FAIL
    assert not any("requeued_from" in t.user_attrs for t in resumed.study.get_trials())
