"""The evaluation worker: holds the pool and ONE live model, merges in place, scores with lm-eval.

``Worker`` is a plain class (usable in-process, e.g. for the toy pool's score table);
``start_workers`` wraps it as Ray actors, one per CPU slot or GPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.backends import BACKENDS, BackendSpec
from evaluators.config import Frozen
from evaluators.environment import PROCESS_ENV, apply_process_env
from evaluators.lmeval import Score, Scorer
from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.resident import ResidentPool
from evaluators.tasks import TaskLibrary, TaskSpec

log = logging.getLogger(__name__)


class WorkerSpec(Frozen):
    """Everything a worker needs, validated on the driver and shipped to each actor once."""

    pool: Pool
    objectives: dict[str, TaskSpec]
    tasks_dir: Path
    runtime: BackendSpec = BackendSpec()
    merge: MergeSpec = MergeSpec()
    bootstrap_iters: int = 100
    seed: int = 0


@dataclass(frozen=True)
class TrialResult:
    """Per-objective scores of one merge, with where and how long it took."""

    scores: dict[str, Score]
    merge_seconds: float
    eval_seconds: float
    worker: str
    device: str


class Worker:
    """Loads the pool once, builds one model once, then evaluates weight vectors."""

    def __init__(self, spec: WorkerSpec, worker_id: str = "worker-0") -> None:
        apply_process_env()
        if spec.runtime.threads:
            torch.set_num_threads(spec.runtime.threads)
        self.worker_id = worker_id
        plan = plan_for(spec.pool, spec.merge)
        self.backend = BACKENDS.get(spec.runtime.backend)(spec.runtime, plan.model_dir())
        self.pool = ResidentPool(plan, spec.merge, self.backend.device)
        self.pool.bind(self.backend.tensors())
        self.scorer = Scorer(spec.objectives, TaskLibrary(spec.tasks_dir), spec.bootstrap_iters, spec.seed)
        log.info("%s ready on %s", worker_id, self.backend.device)

    def ready(self) -> str:
        """Returns once construction finished (Ray calls this to surface start-up errors)."""
        return self.worker_id

    def evaluate(self, weights: Mapping[str, float]) -> TrialResult:
        start = time.perf_counter()
        self.pool.merge_into(weights)
        if self.backend.device.type == "cuda":
            torch.cuda.synchronize(self.backend.device)
        merged = time.perf_counter()
        scores = self.scorer.score(self.backend.lm())
        return TrialResult(
            scores=scores,
            merge_seconds=merged - start,
            eval_seconds=time.perf_counter() - merged,
            worker=self.worker_id,
            device=str(self.backend.device),
        )


def start_workers(spec: WorkerSpec, count: int) -> list:  # list[ray.actor.ActorHandle]
    """Start ``count`` Ray actors (one GPU each on CUDA, ``threads`` CPUs each otherwise)."""
    import ray

    on_gpu = spec.runtime.device.startswith("cuda")
    remote = ray.remote(Worker).options(
        num_cpus=0 if on_gpu else (spec.runtime.threads or 1),
        num_gpus=1 if on_gpu else 0,
        runtime_env={"env_vars": PROCESS_ENV},
    )
    return [remote.remote(spec, f"worker-{i}") for i in range(count)]
