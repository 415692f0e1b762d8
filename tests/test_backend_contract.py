"""The model-backend contract, checked over every backend on the tiny pool (dummy and hf here; vllm in
`make test-vllm`'s environment): a swap writes the merge in place and the live tensors equal the merge
engine's; the same point scores the same however the backend got there; another member scores
differently; screening scores a seeded subset; held-out tasks are scored; device and placement lines. And
backends are registered by name and imported only when first built."""

from __future__ import annotations

import math
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from evaluators.backends import BackendSpec
from evaluators.core.errors import ConfigError
from evaluators.merge import MergePoint, MergeSpec
from evaluators.scoring.score import Score
from evaluators.scoring.tasks import TaskLibrary, TaskSpec
from evaluators.worker import Worker
from tests.helpers import MEMBERS, assert_swaps_change_and_restore, live_merger, one_hot, tiny_spec

BACKENDS = [
    "dummy",
    "hf",
    pytest.param(
        "vllm",
        marks=[
            pytest.mark.vllm,
            pytest.mark.skipif(find_spec("vllm") is None, reason="vLLM is not installed here (make test-vllm)"),
        ],
    ),
]
MIXED = MergePoint(weights={"add": 0.1, "reverse": 0.2, "sort": 0.3, "shift": 0.4})
HELD_OUT = {"sort_report": TaskSpec(task="toy_sort_report", metric="acc")}


@pytest.fixture(scope="module", params=BACKENDS)
def worker(request: pytest.FixtureRequest, tiny_pool: Path) -> Worker:
    """A worker in this process on the backend, with a held-out task."""
    runtime = BackendSpec(backend=request.param, batch_size=32, threads=1)
    spec = tiny_spec(tiny_pool, runtime).model_copy(update={"held_out": HELD_OUT})
    return Worker(spec)


def test_device_and_placement_are_lines_for_the_log(worker: Worker) -> None:
    assert worker.backend.device == "cpu"
    assert worker.backend.placement.startswith("pool tier ") and "\n" not in worker.backend.placement
    built = worker.backend.model_name  # the tiny pool is a Llama
    assert built in {"dummy scorer (no model)", "LlamaForCausalLM", "a vLLM engine (tensor parallel 1)"}
    assert worker.ready().startswith(f"worker-0 ready: {built} built on cpu in ")
    assert f"tasks loaded in {worker.tasks_in:.1f} s; pool tier " in worker.ready()


def test_a_swap_writes_the_engines_merge_into_the_live_tensors(worker: Worker, tiny_pool: Path) -> None:
    live = getattr(worker.backend, "targets", None)
    if live is None:
        pytest.skip("the live tensors are inside the engine's processes (vLLM: scored against hf in test_vllm)")
    worker.backend.swap(MIXED)
    reference = live_merger(tiny_pool / "pool" / "checkpoints.yaml", MergeSpec())
    expected = dict(reference.merged(MIXED))
    assert set(live) == set(expected)
    for key, tensor in expected.items():
        torch.testing.assert_close(live[key], tensor.to(live[key].dtype), rtol=0, atol=0, msg=key)


def test_the_same_point_scores_the_same_and_another_member_differently(worker: Worker) -> None:
    assert_swaps_change_and_restore(worker)
    first = worker.evaluate(MIXED).scores
    for member in MEMBERS:
        worker.evaluate(one_hot(member))
    assert worker.evaluate(MIXED).scores == first


def test_scores_are_values_with_sample_counts(worker: Worker) -> None:
    scores = worker.evaluate(MIXED).scores
    assert set(scores) == {"add", "sort"}
    for score in scores.values():
        assert isinstance(score, Score) and math.isfinite(score.value) and score.samples > 0
    assert 0 <= scores["sort"].value <= 1 and scores["add"].value > 1  # an accuracy, a perplexity


def test_a_screening_scorer_scores_a_subset(worker: Worker, tiny_pool: Path) -> None:
    library = TaskLibrary(tiny_pool / "tasks")
    specs = {"sort": TaskSpec(task="toy_sort", metric="acc")}
    worker.backend.swap(MIXED)
    full = worker.backend.scorer(specs, library, 0, 0)()["sort"]
    screened = worker.backend.scorer(specs, library, 0, 0, 8)()["sort"]
    assert screened.samples == 8 < full.samples
    assert worker.backend.scorer(specs, library, 0, 0, 8)() == {"sort": screened}  # the same subset every time


def test_held_out_tasks_are_scored(worker: Worker) -> None:
    result = worker.score_held_out(MIXED)
    assert set(result.scores) == {"sort_report"} and result.screened is None
    assert 0 <= result.scores["sort_report"].value <= 1 and result.scores["sort_report"].samples > 0
    assert result.device == worker.backend.device and result.worker == "worker-0"


def test_backends_are_imported_when_first_built_not_when_an_experiment_is_read() -> None:
    """Reading an experiment imports no backend, lm-eval or transformers (it took 7-9 s); the names are
    known at once, and an unknown one is refused with the list."""
    code = (
        "import sys, optimizer.experiment.config\n"
        "from evaluators.backends import BACKENDS\n"
        "heavy = ('lm_eval', 'transformers', 'sklearn', 'evaluators.backends.hf', 'evaluators.backends.dummy')\n"
        "print(BACKENDS.names(), [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['dummy', 'hf', 'vllm'] []"
    from evaluators.backends import BACKENDS

    with pytest.raises(
        ConfigError, match=r"unknown model backend 'dumy' \(did you mean 'dummy'\?\); available: dummy, hf, vllm"
    ):
        BACKENDS.check("dumy")
    assert BACKENDS.get("dummy").__module__ == "evaluators.backends.dummy"
