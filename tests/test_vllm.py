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
from tests.helpers import MEMBERS, assert_swaps_change_and_restore, one_hot, scores, tiny_spec, tiny_worker

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
    from tests.helpers import write_experiment

    engine = ENGINE.model_dump()
    exp = write_experiment(
        tmp_path,
        tiny_pool / "pool" / "checkpoints.yaml",
        tiny_pool / "tasks",
        trials=6,
        extra=f"workers: {{count: 1, backend: vllm, batch_size: 32, vllm: {engine}}}\nevaluation: {{bootstrap_iters: 0}}\n",
    )
    address = ray_session.get_runtime_context().gcs_address
    assert (
        main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--ray-address", address]) == 0
    )
    trials = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 6
    assert (
        (trials["swap_seconds"] >= 0).all()
        and (trials["merge_seconds"] > 0).all()
        and (trials[["samples__toy_add_perplexity", "samples__toy_reverse_acc"]] == 24).all().all()
    )
    assert set(trials["device"]) == {"cpu"} and set(trials["worker"]) == {"worker-0"}


VLLM_FAMILIES = {  # head_dim 64 and untied embeddings: what vLLM's CPU kernels take
    "qwen2": {"model_type": "qwen2"},
    "mixtral": {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2},
}


def family_pool(root: Path, name: str) -> Path:
    """Two random members of one family (different seeds) with the toy tokenizer; returns the pool file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from toy.tokenizer import build_tokenizer

    extra = dict(VLLM_FAMILIES[name])
    config = AutoConfig.for_model(
        extra.pop("model_type"),
        vocab_size=64,
        hidden_size=128,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        **extra,
    )
    for i in range(2):
        torch.manual_seed(i)
        AutoModelForCausalLM.from_config(config).save_pretrained(root / f"m{i}")
        build_tokenizer().save_pretrained(root / f"m{i}")
    (root / "pool.yaml").write_text(
        f"members:\n  - {{name: m0, path: {root / 'm0'}}}\n  - {{name: m1, path: {root / 'm1'}}}\n"
    )
    return root / "pool.yaml"


@pytest.mark.parametrize("family", sorted(VLLM_FAMILIES))
def test_vllm_searches_other_families_and_scores_as_hf_does(family: str, tmp_path: Path, ray_session) -> None:  # type: ignore[no-untyped-def]
    """A short vLLM search on a Qwen2 and a mixture-of-experts pool; a trial's recorded score equals the HF
    backend's on the same merge within the task's standard error."""
    import pandas as pd

    from evaluators.pool import load_pool
    from evaluators.scoring.tasks import TaskSpec
    from evaluators.worker import Worker, WorkerSpec
    from optimizer.cli import main

    pool = family_pool(tmp_path, family)
    tasks = Path(__file__).resolve().parents[1] / "experiments" / "tasks" / "toy"
    engine = ENGINE.model_dump()
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: {family}\npool: {pool}\ntasks_dir: {tasks}\n"
        "objectives:\n  - {task: toy_add, metric: perplexity, direction: minimize, limit: 16}\n"
        f"budget: {{trials: 4}}\nsampler: {{name: random}}\nevaluation: {{bootstrap_iters: 100}}\n"
        f"workers: {{count: 1, backend: vllm, batch_size: 16, threads: 1, vllm: {engine}}}\n"
    )
    address = ray_session.get_runtime_context().gcs_address
    assert (
        main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--ray-address", address]) == 0
    )
    trials = pd.read_parquet(tmp_path / "runs" / family / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 4
    row = trials[trials["source"] == "sampler"].iloc[0]
    hf = Worker(
        WorkerSpec(
            pool=load_pool(pool),
            objectives={"ppl": TaskSpec(task="toy_add", metric="perplexity", limit=16)},
            tasks_dir=tasks,
            runtime=BackendSpec(backend="hf", batch_size=16, dtype="float32"),
            bootstrap_iters=100,
        )
    )
    theirs = hf.evaluate(MergePoint(weights={m: float(row[f"weight__{m}"]) for m in ("m0", "m1")})).scores["ppl"]
    ours = float(row["score__toy_add_perplexity"])
    assert abs(ours - theirs.value) <= (theirs.stderr or 0.0), (family, ours, theirs)
