"""Merge operators and the resident in-place merge, against formulas computed independently."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evaluators.merge import OPERATORS, MergePoint
from evaluators.pool import load_pool
from evaluators.scoring.score import Score
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import Worker, WorkerSpec


def test_unknown_operator_suggests_a_name() -> None:
    from evaluators.core.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'linear'"):
        OPERATORS.get("linaer")


@pytest.fixture(scope="module")
def worker(tiny_pool: Path) -> Worker:
    pool = load_pool(tiny_pool / "pool" / "checkpoints.yaml")
    spec = WorkerSpec(
        pool=pool,
        objectives={"rev": TaskSpec(task="toy_reverse", metric="acc", limit=8)},
        tasks_dir=tiny_pool / "tasks",
        bootstrap_iters=0,
    )
    return Worker(spec)


def test_in_place_merge_equals_the_formula(worker: Worker, tiny_pool: Path) -> None:
    names = ["add", "reverse", "sort"]
    files = {n: load_file(tiny_pool / "pool" / n / "model.safetensors") for n in names}
    weights = {"add": 0.2, "reverse": 0.5, "sort": 0.3}
    model = worker.backend.model
    before = {k: v.data_ptr() for k, v in model.state_dict().items()}
    worker.evaluate(MergePoint(weights))
    state = model.state_dict()
    assert worker.backend.model is model
    assert {k: v.data_ptr() for k, v in state.items()} == before  # written in place, same storage
    for key in files["add"]:
        expected = sum(weights[n] * files[n][key].double() for n in names)
        torch.testing.assert_close(state[key].double(), expected, rtol=1e-6, atol=1e-6, msg=key)


def test_swapping_back_restores_scores_exactly(worker: Worker) -> None:
    first = worker.evaluate(MergePoint({"reverse": 1.0})).scores["rev"]
    worker.evaluate(MergePoint({"add": 0.5, "sort": 0.5}))
    again = worker.evaluate(MergePoint({"reverse": 1.0})).scores["rev"]
    assert isinstance(first, Score) and first == again and first.samples == 8
