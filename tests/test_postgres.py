"""Two drivers serve one study on a real PostgreSQL server (a run created with `--storage`, then two
`join`s): every trial number is evaluated exactly once, and the shared Parquet store holds each once,
as the study does.

Both drivers start claiming trials at the same moment, so both evaluate trials on any machine: until
each has its worker up and waits to claim its first trial, the test holds a lock that lets them read
the study but not write to it.

Needs a server: `.ci/run` starts one with `eval "$(.ci/postgres start)"`, which sets MERGEFRONT_TEST_POSTGRES."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pandas as pd
import pytest

from optimizer.experiment.config import load_experiment
from optimizer.search.start import start_run
from tests.helpers import write_experiment

SERVER = os.environ.get("MERGEFRONT_TEST_POSTGRES")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SERVER, reason='needs a PostgreSQL server: eval "$(.ci/postgres start)" (.ci/run does)'),
]
BUDGET = 10
START_TIMEOUT = 600  # bounds a hang only: both drivers start a Ray and load a worker meanwhile


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"mergefront_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(SERVER, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield make_url(SERVER).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def mergefront(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cli = str(Path(sys.executable).with_name("mergefront"))
    return subprocess.Popen(
        [cli, *args, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


@contextmanager
def claims_held(database: str) -> Iterator[Callable[[], int]]:
    """Hold a lock on the study's trials table: drivers can read the study but claim no trial until the
    block ends. Yields a count of the sessions waiting to claim one."""
    import psycopg

    waiting = "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = 'trials'::regclass AND NOT granted"
    with psycopg.connect(database) as gate, psycopg.connect(database, autocommit=True) as watch:
        gate.execute("LOCK TABLE trials IN EXCLUSIVE MODE")  # committed (released) when the block ends
        yield lambda: int(watch.execute(waiting).fetchone()[0])


def wait_until(condition: Callable[[], bool], drivers: list[subprocess.Popen[str]], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        for driver in drivers:
            assert driver.poll() is None, driver.communicate()[0]
        assert time.monotonic() < deadline, f"{what}: not within {START_TIMEOUT} s"
        time.sleep(0.2)


def test_two_drivers_share_one_study(tiny_pool: Path, tmp_path: Path, database: str) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=BUDGET)
    experiment, pool = load_experiment(exp)
    experiment = experiment.model_copy(update={"workers": experiment.workers.model_copy(update={"count": 1})})
    run = start_run(experiment, pool, exp, tmp_path / "runs", storage=database).run_dir  # as `search --storage` does
    drivers: list[subprocess.Popen[str]] = []
    try:
        with claims_held(database) as waiting:
            drivers += [mergefront("join", str(run)) for _ in range(2)]
            wait_until(lambda: waiting() == 2, drivers, "both drivers up, each waiting to claim its first trial")
        outputs = [p.communicate(timeout=600)[0] for p in drivers]
    finally:
        for p in drivers:
            p.kill()  # only if the test failed before they finished
    assert [p.returncode for p in drivers] == [0, 0], outputs

    study = optuna.load_study(study_name="tiny", storage=database)
    complete = {t.number: t.values for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}
    assert BUDGET <= len(complete) <= BUDGET + 1  # two drivers checking the budget at once may each start one
    assert not study.get_trials(states=[optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING])

    stored = pd.read_parquet(run / "trials.parquet")
    assert stored["trial"].is_unique
    assert set(stored["trial"]) == set(complete) and (stored["state"] == "COMPLETE").all()
    for _, row in stored.iterrows():  # the row of each trial is the study's result for it
        assert [row["score__toy_add_perplexity"], row["score__toy_reverse_acc"]] == complete[int(row["trial"])]
    assert stored["driver"].nunique() == 2, stored["driver"].value_counts()  # both drivers evaluated trials
