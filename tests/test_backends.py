"""Model backends on the tiny pool: in-place swaps change the scores and swapping back restores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.backends import BackendSpec, VllmSpec
from tests.helpers import assert_swaps_change_and_restore, one_hot, tiny_worker


def test_hf_swap_changes_scores_and_swapping_back_restores_them(tiny_pool: Path) -> None:
    worker = tiny_worker(tiny_pool, BackendSpec(backend="hf", batch_size=32))
    assert_swaps_change_and_restore(worker)
    result = worker.evaluate(one_hot("reverse"))
    assert result.swap_seconds == 0.0 and result.merge_seconds > 0 and result.eval_seconds > 0
    assert result.samples == 2 * 24 and result.device == "cpu"


@pytest.mark.parametrize(
    ("spec", "gpus"),
    [
        (BackendSpec(device="cpu"), 0),
        (BackendSpec(device="cuda"), 1),
        (BackendSpec(backend="vllm", device="cuda", vllm=VllmSpec(tensor_parallel_size=4)), 4),
        (BackendSpec(backend="vllm", device="cpu", vllm=VllmSpec(tensor_parallel_size=2)), 0),
    ],
)
def test_a_worker_holds_one_gpu_or_one_tensor_parallel_group(spec: BackendSpec, gpus: int) -> None:
    assert spec.gpus_per_worker == gpus


def test_batch_size_defaults_to_auto_on_gpu_only() -> None:
    assert BackendSpec(device="cuda:1").resolved_batch_size == "auto"
    assert BackendSpec(device="cpu").resolved_batch_size == 64
    assert BackendSpec(device="cuda", batch_size=8).resolved_batch_size == 8


def test_objectives_with_and_without_the_chat_template_are_scored_apart(pool_copy: Path) -> None:
    """Two objectives on one task, one through the tokenizer's chat template: different prompts, different scores."""
    import json

    from evaluators.pool import load_pool
    from evaluators.scoring.tasks import TaskSpec
    from evaluators.worker import Worker, WorkerSpec

    pool = load_pool(pool_copy / "pool" / "checkpoints.yaml")
    config = pool.model_dir() / "tokenizer_config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "chat_template": "{% for m in messages %}0{{ m['content'] }}{% endfor %}"}))
    spec = WorkerSpec(
        pool=pool,
        objectives={
            "plain": TaskSpec(task="toy_add", metric="perplexity"),
            "chat": TaskSpec(task="toy_add", metric="perplexity", apply_chat_template=True),
        },
        tasks_dir=pool_copy / "tasks",
        runtime=BackendSpec(batch_size=32),
        bootstrap_iters=0,
    )
    result = Worker(spec).evaluate(one_hot("add"))
    assert result.scores["plain"].value != result.scores["chat"].value
    assert result.samples == 2 * 24
