"""The search driver: an asynchronous ask/tell loop of an Optuna study over Ray worker actors.

A new trial is proposed as soon as any worker is free (no generation barrier). The first
trials are the baselines (each single checkpoint, then the uniform average). Every finished
trial goes to Optuna's journal file and to the Parquet store, which rewrites the front.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pyarrow as pa
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import Trial, TrialState
from ray.exceptions import RayActorError, RayTaskError
from tqdm import tqdm

from evaluators.errors import ConfigError, MergefrontError
from evaluators.pool import Pool
from evaluators.worker import TrialResult, start_workers
from optimizer.experiment import Experiment
from optimizer.samplers import SAMPLERS
from optimizer.space import SimplexSpace
from optimizer.store import Columns, TrialRecord, TrialStore

log = logging.getLogger(__name__)
JOURNAL = "study.journal"
RUN_META = "run.json"


@dataclass
class _InFlight:
    trial: Trial
    actor: object
    source: str
    weights: dict[str, float]
    started_at: datetime


@dataclass
class SearchSummary:
    run_dir: Path
    complete: int = 0
    failed: int = 0
    wall_seconds: float = 0.0
    merge_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    front: pa.Table | None = None

    def timing_line(self) -> str:
        if not self.eval_seconds:
            return "no trial completed"
        return (
            f"median trial: merge {statistics.median(self.merge_seconds):.3f} s, "
            f"eval {statistics.median(self.eval_seconds):.2f} s"
        )


def create_run_dir(runs_dir: Path, name: str, overwrite: bool) -> Path:
    """Make ``runs_dir/name``; an existing one is replaced only with ``overwrite``."""
    run_dir = runs_dir / name
    if run_dir.exists():
        if not overwrite:
            raise ConfigError(f"run directory {run_dir} already exists; pass --overwrite to replace it or --name to pick another")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir} ({exc.strerror}); choose a writable --runs-dir") from None
    return run_dir


def _write_meta(run_dir: Path, experiment: Experiment, pool: Pool) -> None:
    meta = {
        "experiment": experiment.model_dump(mode="json"),
        "pool": pool.model_dump(mode="json"),
        "study_name": experiment.name,
        "storage": JOURNAL,
        "started_at": datetime.now(UTC).isoformat(),
    }
    (run_dir / RUN_META).write_text(json.dumps(meta, indent=2))


def _start_ray(address: str | None, cpus_needed: int) -> bool:
    """Connect to ``address`` or start a local Ray; returns whether we started it (and must stop it)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, object] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, cpus_needed)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot connect to Ray at '{address}' ({exc}); check --ray-address") from None
    return True


def _cause(exc: Exception) -> str:
    """The last line of a remote traceback: the error type and message that matter."""
    text = str(getattr(exc, "cause", None) or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class Search:
    """One search run: study, workers, store and progress, driven by ``run``."""

    def __init__(self, experiment: Experiment, pool: Pool, run_dir: Path) -> None:
        self.experiment = experiment
        self.pool = pool
        self.run_dir = run_dir
        self.space = SimplexSpace(pool.names)
        self.labels = experiment.labels
        storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL)))
        self.study = optuna.create_study(
            storage=storage,
            study_name=experiment.name,
            directions=experiment.directions,
            sampler=SAMPLERS.get(experiment.sampler.name)(experiment.seed),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names(self.labels)
        for source, params in self.space.baselines()[: experiment.budget.trials]:
            self.study.enqueue_trial(params, user_attrs={"source": source})
        self.store = TrialStore(
            run_dir, Columns(tuple(pool.names), tuple(self.labels), tuple(experiment.directions))
        )
        _write_meta(run_dir, experiment, pool)

    def _submit(self, actor: object) -> tuple[object, _InFlight]:
        trial = self.study.ask(self.space.distributions())
        weights = self.space.weights(trial.params)
        trial.set_user_attr("weights", weights)
        source = str(trial.user_attrs.get("source", "sampler"))
        ref = actor.evaluate.remote(weights)  # type: ignore[attr-defined]
        return ref, _InFlight(trial, actor, source, weights, datetime.now(UTC))

    def _finish(self, job: _InFlight, result: TrialResult | None, error: str | None) -> TrialRecord:
        now = datetime.now(UTC)
        if result is not None:
            values = [result.scores[label].value for label in self.labels]
            self.study.tell(job.trial, values)
            return TrialRecord(
                trial=job.trial.number, state="COMPLETE", source=job.source, weights=job.weights,
                scores={k: s.value for k, s in result.scores.items()},
                stderr={k: s.stderr for k, s in result.scores.items()},
                merge_seconds=result.merge_seconds, eval_seconds=result.eval_seconds,
                worker=result.worker, device=result.device, started_at=job.started_at, finished_at=now,
            )
        job.trial.set_user_attr("error", error)
        self.study.tell(job.trial, state=TrialState.FAIL)
        return TrialRecord(
            trial=job.trial.number, state="FAIL", source=job.source, weights=job.weights, scores={}, stderr={},
            merge_seconds=None, eval_seconds=None, worker=None, device=None,
            started_at=job.started_at, finished_at=now, error=error,
        )

    def run(self, ray_address: str | None = None, progress: bool = True) -> SearchSummary:
        workers = self.experiment.workers
        started = time.perf_counter()
        owns_ray = _start_ray(ray_address, workers.count * (workers.threads or 1))
        summary = SearchSummary(self.run_dir)
        actors: list[object] = []
        try:
            log.info("starting %d worker(s): loading the pool and building the model", workers.count)
            actors = start_workers(self.experiment.worker_spec(self.pool), workers.count)
            try:
                ray.get([a.ready.remote() for a in actors])  # type: ignore[attr-defined]
            except RayActorError as exc:
                raise MergefrontError(f"a worker failed to start: {_cause(exc)}") from None
            self._loop(actors, summary, progress)
        finally:
            for actor in actors:
                ray.kill(actor)
            if owns_ray:
                ray.shutdown()
        summary.wall_seconds = time.perf_counter() - started
        return summary

    def _loop(self, actors: list[object], summary: SearchSummary, progress: bool) -> None:
        budget = self.experiment.budget.trials
        idle, in_flight, asked = list(actors), {}, 0
        bar = tqdm(total=budget, unit="trial", desc="search", disable=not progress, dynamic_ncols=True)
        try:
            while asked < budget or in_flight:
                while idle and asked < budget:
                    ref, job = self._submit(idle.pop())
                    in_flight[ref] = job
                    asked += 1
                [done], _ = ray.wait(list(in_flight), num_returns=1)
                job = in_flight.pop(done)
                result, error = None, None
                try:
                    result = ray.get(done)
                    idle.append(job.actor)
                except RayTaskError as exc:
                    error = _cause(exc)
                    idle.append(job.actor)
                except RayActorError as exc:
                    error = f"worker died: {_cause(exc)}"
                    if not idle and not in_flight:
                        raise MergefrontError(f"every worker died; last error: {error}") from None
                record = self._finish(job, result, error)
                summary.front = self.store.append(record)
                if result is not None:
                    summary.complete += 1
                    summary.merge_seconds.append(result.merge_seconds)
                    summary.eval_seconds.append(result.eval_seconds)
                else:
                    summary.failed += 1
                    log.warning("trial %d failed: %s", job.trial.number, error)
                bar.set_postfix(front=summary.front.num_rows, failed=summary.failed)
                bar.update(1)
        except KeyboardInterrupt:
            for job in in_flight.values():
                summary.front = self.store.append(self._finish(job, None, "interrupted"))
                summary.failed += 1
            raise
        finally:
            bar.close()
