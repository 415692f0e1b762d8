"""Two drivers serve one study on a real PostgreSQL server (`search --storage`, then `join`): every trial
number is evaluated exactly once, and the shared Parquet store holds each once, as the study does.

Needs a server: `.ci/run` starts one with `eval "$(.ci/postgres start)"`, which sets MERGEFRONT_TEST_POSTGRES."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import write_experiment

SERVER = os.environ.get("MERGEFRONT_TEST_POSTGRES")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not SERVER, reason="needs a PostgreSQL server: eval \"$(.ci/postgres start)\" (.ci/run does)"),
]
BUDGET = 60  # long enough that the second driver is up (Ray, a worker) before the first is done alone


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
    return subprocess.Popen([cli, *args, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_two_drivers_share_one_study(tiny_pool: Path, tmp_path: Path, database: str) -> None:
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=BUDGET)
    runs = tmp_path / "runs"
    first = mergefront("search", str(exp), "--storage", database, "--runs-dir", str(runs), "--workers", "1", "--threads", "1")
    deadline = time.monotonic() + 120
    while not (runs / "tiny" / "run.json").is_file():
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the first driver wrote no run.json in 120 s"
        time.sleep(0.2)
    second = mergefront("join", str(runs / "tiny"))
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs

    study = optuna.load_study(study_name="tiny", storage=database)
    complete = {t.number: t.values for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}
    assert BUDGET <= len(complete) <= BUDGET + 1  # two drivers checking the budget at once may each start one
    assert not study.get_trials(states=[optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING])

    stored = pd.read_parquet(runs / "tiny" / "trials.parquet")
    assert stored["trial"].is_unique
    assert set(stored["trial"]) == set(complete) and (stored["state"] == "COMPLETE").all()
    for _, row in stored.iterrows():  # the row of each trial is the study's result for it
        assert [row["score.toy_add/perplexity"], row["score.toy_reverse/acc"]] == complete[int(row["trial"])]
    assert stored["driver"].nunique() == 2, stored["driver"].value_counts()  # both drivers evaluated trials
