"""The vLLM backend on the tiny pool (head_dim 64): weights swapped into a live engine through vLLM's
public surface. Runs in the vLLM environment that `make test-vllm` builds; skipped where vLLM is absent."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from evaluators.backends import BackendSpec, VllmSpec
from evaluators.merge import MergePoint
from evaluators.worker import TrialResult, start_worker
from tests.swap_checks import MEMBERS, assert_swaps_change_and_restore, one_hot, scores, tiny_spec, tiny_worker

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test-vllm` builds an environment with it")
# On CPU, vLLM sizes its KV cache as a share of the machine's memory; two engines live at once here
# (this module's and the Ray worker's), so each gets 1 GiB. Set before the tests start Ray.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
pytestmark = pytest.mark.vllm

ENGINE = VllmSpec(dtype="float32", enforce_eager=True, max_model_len=64, gpu_memory_utilization=0.5)


class ActorWorker:
    """A vLLM worker as the search runs it: a Ray actor. The engine's threads then live and die with the
    actor's process; in pytest's own process vLLM's output thread could still be freeing tensors while
    the interpreter exits, which aborts it (seen once in CI)."""

    def __init__(self, actor) -> None:  # type: ignore[no-untyped-def]
        self._actor = actor

    def evaluate(self, point: MergePoint) -> TrialResult:
        import ray

        return ray.get(self._actor.evaluate.remote(point))


@pytest.fixture(scope="module")
def vllm_worker(tiny_pool: Path, ray_session) -> ActorWorker:  # type: ignore[no-untyped-def]
    spec = tiny_spec(tiny_pool, BackendSpec(backend="vllm", batch_size=32, vllm=ENGINE, threads=1))
    return ActorWorker(start_worker(spec, "worker-0"))


def test_vllm_swap_changes_scores_and_swapping_back_restores_them(vllm_worker) -> None:  # type: ignore[no-untyped-def]
    assert_swaps_change_and_restore(vllm_worker)
    result = vllm_worker.evaluate(MergePoint(weights=dict.fromkeys(MEMBERS, 0.25)))
    assert result.merge_seconds > 0 and result.swap_seconds >= 0 and result.samples == 2 * 24


def test_vllm_scores_a_merge_as_the_hf_backend_does(vllm_worker, tiny_pool: Path) -> None:  # type: ignore[no-untyped-def]
    """Same merge, same tasks: the engine's fused layouts got the right tensors (and no stale KV)."""
    hf = tiny_worker(tiny_pool, BackendSpec(backend="hf", batch_size=32))
    for point in (MergePoint(weights={"add": 0.6, "reverse": 0.1, "sort": 0.3, "shift": 0.0}), one_hot("sort")):
        ours, theirs = scores(vllm_worker, point), scores(hf, point)
        assert math.isclose(ours["add"], theirs["add"], rel_tol=1e-3), (ours, theirs)
        assert abs(ours["sort"] - theirs["sort"]) <= 1 / 24 + 1e-9, (ours, theirs)  # one near-tie may flip


def test_search_with_the_vllm_backend_in_a_ray_worker(tiny_pool: Path, tmp_path: Path, ray_session) -> None:  # type: ignore[no-untyped-def]
    """The whole loop: a Ray actor holds one engine, trials are swapped into it, Parquet gets the accounting."""
    import pandas as pd

    from optimizer.cli import main
    from tests.conftest import write_experiment

    engine = ENGINE.model_dump()
    exp = write_experiment(
        tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=6,
        extra=f"workers: {{count: 1, backend: vllm, batch_size: 32, vllm: {engine}}}\nevaluation: {{bootstrap_iters: 0}}\n",
    )
    address = ray_session.get_runtime_context().gcs_address
    assert main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--ray-address", address]) == 0
    trials = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 6
    assert (trials["swap_seconds"] >= 0).all() and (trials["merge_seconds"] > 0).all() and (trials["samples"] == 2 * 24).all()
    assert set(trials["device"]) == {"cpu"} and set(trials["worker"]) == {"worker-0"}
