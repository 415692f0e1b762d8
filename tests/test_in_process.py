"""The in-process worker pool (``--in-process``): the same search as over Ray actors, and the same
handling of failed trials and of a worker that cannot start."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evaluators.backends import BackendSpec
from evaluators.core.errors import MergefrontError
from evaluators.merge import MergePoint
from optimizer.experiment.config import load_experiment
from optimizer.search.start import start_run
from optimizer.search.workers import InProcessWorkers, TrialFailed
from tests.helpers import TINY_RUN_TRIALS, tiny_experiment, tiny_spec, write_experiment


@pytest.mark.e2e
def test_an_in_process_search_records_what_the_ray_search_records(
    tiny_run: Path, tiny_pool: Path, tmp_path: Path
) -> None:
    """tiny_run is the same experiment searched by two Ray actors: trial for trial, the same weights
    (a seeded sampler) and the same scores (the same worker code, one thread, on CPU)."""
    from optimizer.cli import main

    exp = write_experiment(
        tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=TINY_RUN_TRIALS
    )
    assert main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]) == 0
    ours = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet").set_index("trial").sort_index()
    ray = pd.read_parquet(tiny_run / "trials.parquet").set_index("trial").sort_index()
    columns = [c for c in ray.columns if c.startswith(("weight__", "score__", "stderr__"))] + ["state", "source"]
    assert len(ours) == len(ray) == TINY_RUN_TRIALS
    pd.testing.assert_frame_equal(ours[columns], ray[columns])
    assert set(ours["worker"]) == {"worker-0"}


def test_in_process_failures_are_counted_and_the_worker_retired(
    tiny_pool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workers = InProcessWorkers(tiny_spec(tiny_pool, BackendSpec(batch_size=32, threads=1)), retire_after=2)
    workers.wait_ready()
    worker = workers.idle.pop()
    bad = workers.call(worker, "evaluate", MergePoint({"nobody": 1.0}))
    assert workers.wait([bad]) is bad
    with pytest.raises(TrialFailed) as caught:
        workers.result(bad)
    workers.failed(worker, str(caught.value))
    assert workers.idle == [worker] and workers.alive == 1
    workers.idle.pop()
    with caplog.at_level(logging.WARNING, logger="optimizer.search.workers"):
        workers.failed(worker, str(caught.value))
    assert workers.retired == ["worker-0"] and workers.alive == 0 and not workers.idle
    assert "worker-0 retired after 2 failures in a row" in caplog.text


def test_an_in_process_worker_that_cannot_start_is_reported_as_over_ray(tiny_pool: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_pool, copy)
    spec = tiny_spec(copy, BackendSpec(batch_size=32, threads=1))
    shutil.rmtree(copy / "pool" / "add")
    with pytest.raises(
        MergefrontError,
        match=r"^a worker failed to start: evaluators\.core\.errors\.PoolError: worker-0 cannot read the pool",
    ):
        InProcessWorkers(spec).wait_ready()


class _Recording(InProcessWorkers):
    """An in-process pool that records what the search asked of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[str] = []

    def wait_ready(self) -> None:
        self.log.append("wait_ready")
        super().wait_ready()

    def call(self, worker: Any, method: str, *args: Any) -> Any:
        self.log.append(method)
        return super().call(worker, method, *args)

    def stop(self) -> None:
        self.log.append("stop")
        super().stop()


def test_a_search_runs_on_a_worker_pool_it_is_given(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Search.workers`` set before ``run`` (bench/search.py's seam): the given pool is readied, takes every trial
    and is stopped, no Ray is started, and the run records what ``--in-process`` records."""
    import optimizer.search.driver

    ray_starts: list[object] = []
    monkeypatch.setattr(optimizer.search.driver, "start_ray", lambda *args: ray_starts.append(args))
    trials = {}
    for mode in ("given", "in_process"):
        (tmp_path / mode).mkdir()
        exp = tiny_experiment(tiny_pool, tmp_path / mode, "sampler: {name: random}\n", trials=6)
        experiment, pool = load_experiment(exp)
        search = start_run(experiment, pool, exp, tmp_path / mode / "runs")
        if mode == "given":
            search.workers = workers = _Recording(experiment.worker_spec(pool))
            summary = search.run(progress=False)
            assert workers.log == ["wait_ready", *["evaluate"] * 6, "stop"]
            assert ray_starts == []  # (another test's Ray session may be up: only a start counts)
        else:
            summary = search.run(progress=False, in_process=True)
        assert (summary.complete, summary.failed) == (6, 0)
        trials[mode] = pd.read_parquet(search.run_dir / "trials.parquet").set_index("trial").sort_index()
    columns = [c for c in trials["given"].columns if c.startswith(("weight__", "score__"))] + [
        "state",
        "source",
        "worker",
    ]
    pd.testing.assert_frame_equal(trials["given"][columns], trials["in_process"][columns])
