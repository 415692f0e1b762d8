"""The evaluation worker: holds the pool and ONE live model, merges in place, scores it with the
backend's scorers (lm-eval for the real backends).

``Worker`` is a plain class (usable in-process, e.g. for the toy pool's score table);
``start_worker`` wraps it as a Ray actor, on CPU slots or GPUs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from evaluators.backends import BACKENDS, BackendSpec, SwapTimes
from evaluators.core.config import Frozen
from evaluators.core.environment import PROCESS_ENV, apply_process_env
from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.resident import MergeSetup
from evaluators.pool import Pool
from evaluators.pool.readable import readable_here
from evaluators.scoring.score import Score
from evaluators.scoring.tasks import TaskLibrary, TaskSpec

log = logging.getLogger(__name__)


class WorkerSpec(Frozen):
    """Everything a worker needs, validated on the driver and shipped to each actor once."""

    pool: Pool
    objectives: dict[str, TaskSpec]
    tasks_dir: Path | None = None
    builtin_tasks: bool = False
    runtime: BackendSpec = BackendSpec()
    merge: MergeSpec = MergeSpec()
    groups: dict[str, str] = Field(default_factory=dict)
    held_out: dict[str, TaskSpec] = Field(default_factory=dict)
    screen: int | None = None
    bootstrap_iters: int = 100
    seed: int = 0

    @property
    def source(self) -> MergeSetup:
        """The pool and merge settings the backend opens its pool tier with (the part of the spec a vLLM worker
        process is sent)."""
        return MergeSetup(pool=self.pool, merge=self.merge, groups=self.groups, tier=self.runtime.pool)


@dataclass(frozen=True)
class Promotion:
    """Screening rule: promote to full fidelity unless the front beats the screen scores by ``margin``."""

    front: list[list[float]]  # full-fidelity front, signed so that larger is better
    signs: list[float]
    margin: float

    def promotes(self, scores: list[float]) -> bool:
        """True unless some front point dominates ``scores`` even with ``margin`` added to each (signed) score."""
        signed = [s * sign + self.margin for s, sign in zip(scores, self.signs, strict=True)]
        return not any(all(f >= x for f, x in zip(row, signed, strict=True)) and row != signed for row in self.front)


@dataclass(frozen=True)
class TrialResult:
    """Per-objective scores of one merge, with where and how long it took and on how many examples."""

    scores: dict[str, Score]
    merge_seconds: float
    swap_seconds: float
    eval_seconds: float
    worker: str
    device: str
    screened: int | None = None  # examples per task when only the screening subset was scored

    @property
    def samples(self) -> int:
        """Examples scored across all objectives (stored with the trial)."""
        return sum(s.samples for s in self.scores.values())


class Worker:
    """Loads the pool once, builds one model once, then evaluates weight vectors."""

    def __init__(self, spec: WorkerSpec, worker_id: str = "worker-0") -> None:
        start = time.perf_counter()
        apply_process_env()
        if spec.runtime.threads:
            torch.set_num_threads(spec.runtime.threads)
        self.worker_id = worker_id
        with readable_here(spec.pool, worker_id):
            self.backend = BACKENDS.get(spec.runtime.backend)(spec.runtime, spec.source)
        built = time.perf_counter()
        library = TaskLibrary(spec.tasks_dir, spec.builtin_tasks)
        settings = (library, spec.bootstrap_iters, spec.seed)
        self.scorer = self.backend.scorer(spec.objectives, *settings)
        self.screen_size = spec.screen
        self.screener = self.backend.scorer(spec.objectives, *settings, spec.screen) if spec.screen else None
        self.held_out_scorer = self.backend.scorer(spec.held_out, *settings) if spec.held_out else None
        self.built_in = built - start  # pool opened, model built (imports excluded)
        self.tasks_in = time.perf_counter() - built  # tasks indexed, their data loaded
        log.info("%s", self.ready())

    def ready(self) -> str:
        """Returns once construction finished (Ray calls this to surface start-up errors): its start-up stages for
        the log, since a large model takes minutes to come up: what was built where and in how long, how long the
        tasks took, and which pool tier holds how many bytes of sources."""
        return (
            f"{self.worker_id} ready: {self.backend.model_name} built on {self.backend.device} in {self.built_in:.1f} s,"
            f" tasks loaded in {self.tasks_in:.1f} s; {self.backend.placement}"
        )

    def evaluate(self, point: MergePoint, promotion: Promotion | None = None) -> TrialResult:
        """Merge ``point`` and score the objectives; with ``promotion`` (and a screen size), screen on
        the seeded subset first and go on to the full sets only when the rule promotes the point."""
        swap = self.backend.swap(point)
        start = time.perf_counter()
        if promotion is not None and self.screener is not None:
            screened = self.screener()
            if not promotion.promotes([s.value for s in screened.values()]):
                return self._result(screened, swap, start, self.screen_size)
        return self._result(self.scorer(), swap, start)

    def score_held_out(self, point: MergePoint) -> TrialResult:
        """Merge ``point`` and score the held-out tasks (never seen by the sampler)."""
        if self.held_out_scorer is None:
            raise ValueError("this worker has no held-out tasks")
        swap = self.backend.swap(point)
        start = time.perf_counter()
        return self._result(self.held_out_scorer(), swap, start)

    def _result(
        self, scores: dict[str, Score], swap: SwapTimes, eval_start: float, screened: int | None = None
    ) -> TrialResult:
        return TrialResult(
            scores=scores,
            merge_seconds=swap.merge_seconds,
            swap_seconds=swap.swap_seconds,
            eval_seconds=time.perf_counter() - eval_start,
            worker=self.worker_id,
            device=self.backend.device,
            screened=screened,
        )


def start_worker(spec: WorkerSpec, worker_id: str):  # -> ray.actor.ActorHandle
    """Start one Ray actor: on CUDA it holds one GPU, or a tensor-parallel group under vLLM; on CPU
    ``threads`` CPUs."""
    import ray

    gpus = spec.runtime.gpus_per_worker
    remote = ray.remote(Worker).options(
        num_cpus=0 if gpus else (spec.runtime.threads or 1),
        num_gpus=gpus,
        runtime_env={"env_vars": PROCESS_ENV},
    )
    return remote.remote(spec, worker_id)
