"""The swap contract every model backend must keep, checked on the tiny pool by each backend's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from evaluators.backends import BackendSpec
from evaluators.merge import MergePoint
from evaluators.pool import load_pool
from evaluators.tasks import TaskSpec
from evaluators.worker import TrialResult, Worker, WorkerSpec

MEMBERS = ("add", "reverse", "sort", "shift")


def one_hot(member: str) -> MergePoint:
    return MergePoint(weights={m: float(m == member) for m in MEMBERS})


class Evaluates(Protocol):
    """A worker, in this process or behind a Ray actor."""

    def evaluate(self, point: MergePoint) -> TrialResult: ...


def tiny_spec(tiny_pool: Path, runtime: BackendSpec) -> WorkerSpec:
    """A worker scoring a continuous metric (perplexity on add) and a discrete one (accuracy on sort)."""
    return WorkerSpec(
        pool=load_pool(tiny_pool / "pool" / "checkpoints.yaml"),
        objectives={
            "add": TaskSpec(task="toy_add", metric="perplexity"),
            "sort": TaskSpec(task="toy_sort", metric="acc"),
        },
        tasks_dir=tiny_pool / "tasks",
        runtime=runtime,
        bootstrap_iters=0,
    )


def tiny_worker(tiny_pool: Path, runtime: BackendSpec) -> Worker:
    return Worker(tiny_spec(tiny_pool, runtime))


def scores(worker: Evaluates, point: MergePoint) -> dict[str, float]:
    return {k: s.value for k, s in worker.evaluate(point).scores.items()}


def assert_swaps_change_and_restore(worker: Evaluates) -> dict[str, dict[str, float]]:
    """Swapping to another member changes the scores; swapping back gives the first scores exactly."""
    first = scores(worker, one_hot("add"))
    other = scores(worker, one_hot("sort"))
    again = scores(worker, one_hot("add"))
    assert other["add"] != first["add"], "a different checkpoint should score differently"
    assert again == first, "swapping back must restore the original scores exactly"
    return {"add": first, "sort": other}
