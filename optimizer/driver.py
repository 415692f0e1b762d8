"""The search driver: an asynchronous ask/tell loop of an Optuna study over Ray worker actors.

A new trial is proposed as soon as any worker is free (no generation barrier). The first
trials are the baselines (each single checkpoint, then the uniform average). A finished trial
is written to Parquet first and told to Optuna second, so after a crash ``resume`` can tell
Optuna what Parquet already holds, and re-queue what neither finished: no trial is lost or
stored twice. Held-out report tasks are scored for the front trials when the search stops.

Several drivers may serve one study on shared storage (``mergefront join``): trial numbers come
from the storage, the budget counts every driver's trials, and the Parquet store is shared under
a lock. Two drivers checking the budget at the same moment can overshoot it by one trial each.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import statistics
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import optuna
import pyarrow as pa
from optuna.trial import FrozenTrial, Trial, TrialState
from tqdm import tqdm

from evaluators.errors import ConfigError, MergefrontError
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.worker import Promotion, TrialResult
from optimizer.experiment import Experiment
from optimizer.fingerprint import fingerprint, member_digests
from optimizer.preflight import preflight
from optimizer.rundir import read_meta, write_meta
from optimizer.sampler import SAMPLERS, SamplerContext
from optimizer.space import space_for
from optimizer.storage import JOURNAL, check_storage_url, open_storage, study_exists
from optimizer.store import FULL, KNOB, REPORT, SCORE, WEIGHT, Columns, TrialRecord, TrialStore
from optimizer.warmstart import import_trials
from optimizer.workers import InProcessWorkers, RayWorkers, TrialFailed, WorkerLost, WorkerPool

log = logging.getLogger(__name__)
WARM = "warm:"


class Clock(Protocol):
    """Where the time budgets read time (``Search.clock``). A test sets its own, so that a budget stops
    a search at a trial it can name, however fast or loaded the machine."""

    def now(self) -> float:
        """Seconds on a clock that never goes back (the wall-time budget and the run's wall time)."""
        ...

    def worker_seconds(self, row: dict[str, Any]) -> float:
        """Worker time a stored trial used (the worker-hours budget)."""
        ...


class RealClock:
    """The driver's monotonic clock, and the merge, swap and evaluation time each worker measured."""

    def now(self) -> float:
        return time.perf_counter()

    def worker_seconds(self, row: dict[str, Any]) -> float:
        return sum(row.get(c) or 0.0 for c in ("merge_seconds", "swap_seconds", "eval_seconds"))


@dataclass
class _InFlight:
    trial: Trial
    actor: Any
    source: str
    weights: dict[str, float]
    knobs: dict[str, float]
    predicted: dict[str, float]
    started_at: datetime


@dataclass
class SearchSummary:
    run_dir: Path
    complete: int = 0
    failed: int = 0
    screened: int = 0
    wall_seconds: float = 0.0
    stop_reason: str = ""
    restarts: int = 0
    retired: list[str] = field(default_factory=list)
    records: list[TrialRecord] = field(default_factory=list)
    front: pa.Table | None = None

    def timing_line(self) -> str:
        done = [r for r in self.records if r.state == "COMPLETE"]
        if not done:
            return "no trial completed"
        merge = statistics.median(r.merge_seconds or 0.0 for r in done)
        swap = statistics.median(r.swap_seconds or 0.0 for r in done)
        evaluation = statistics.median(r.eval_seconds or 0.0 for r in done)
        return f"median trial: merge {merge:.3f} s, swap {swap:.3f} s, eval {evaluation:.2f} s"

    def workers_line(self) -> str:
        retired = ", ".join(self.retired) or "none"
        return f"workers: {self.restarts} replaced after dying, retired: {retired}"

    def idle_line(self) -> str:
        """Worker idle time between consecutive trials of this call, from the trials' timestamps."""
        by_worker: dict[str, list[TrialRecord]] = {}
        for r in self.records:
            if r.worker:
                by_worker.setdefault(r.worker, []).append(r)
        idle = busy = 0.0
        for runs in by_worker.values():
            runs.sort(key=lambda r: r.started_at)
            busy += sum((r.finished_at - r.started_at).total_seconds() for r in runs)
            idle += sum(max(0.0, (b.started_at - a.finished_at).total_seconds()) for a, b in itertools.pairwise(runs))
        share = idle / (idle + busy) if idle + busy else 0.0
        return f"worker idle between trials: {idle:.1f} s in total, {share:.1%} of worker time"


def create_run_dir(runs_dir: Path, name: str, overwrite: bool) -> Path:
    """Make ``runs_dir/name``; an existing one is replaced only with ``overwrite``."""
    run_dir = runs_dir / name
    if run_dir.exists():
        if not overwrite:
            raise ConfigError(
                f"run directory {run_dir} already exists; pass --overwrite to replace it, --name to pick another, or `mergefront resume {run_dir}`"
            )
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create run directory {run_dir} ({exc.strerror}); choose a writable --runs-dir"
        ) from None
    return run_dir


def read_run(run_dir: Path, fix: str) -> tuple[Experiment, Pool]:
    """The experiment and pool a run was started with; refused (with ``fix``) if the pool's files changed since."""
    meta = read_meta(run_dir)
    experiment = Experiment.model_validate(meta["experiment"])
    pool = Pool.model_validate(meta["pool"])
    if member_digests(pool) != meta["fingerprint"]["members"]:
        raise ConfigError(f"the pool's files changed since {run_dir} started; {fix}")
    return experiment, pool


def check_ray_address(address: str | None) -> None:
    """Refuse a cluster address where nothing listens, before any run directory is written."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        raise ConfigError(
            f"--ray-address '{address}' is not HOST:PORT (e.g. 10.0.0.5:6379, the head's GCS port)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster with `ray start --head` or fix the address"
        ) from None


def start_run(
    experiment: Experiment,
    pool: Pool,
    source: Path,
    runs_dir: Path,
    *,
    overwrite: bool = False,
    warm_from: Path | None = None,
    storage: str = JOURNAL,
    ray_address: str | None = None,
) -> Search:
    """Check everything that can be checked, then create the run directory and its study, so that
    bad input leaves nothing behind."""
    if warm_from is not None:
        read_meta(warm_from)
    preflight(experiment, pool, source)
    check_ray_address(ray_address)
    if storage != JOURNAL:
        shared = open_storage(runs_dir, check_storage_url(storage))
        if study_exists(shared, experiment.name):
            if not overwrite:
                raise ConfigError(
                    f"{storage} already holds a study named '{experiment.name}'; pass --name to start another, "
                    "--overwrite to replace it, or `mergefront join RUN_DIR` to add a driver to its run"
                )
            optuna.delete_study(study_name=experiment.name, storage=shared)
    run_dir = create_run_dir(runs_dir, experiment.name, overwrite)
    log.info("run directory: %s", run_dir)
    try:
        return Search.create(experiment, pool, run_dir, warm_from, storage)
    except ConfigError:
        shutil.rmtree(run_dir)  # a refused warm start leaves nothing half-written
        raise


def _start_ray(address: str | None, cpus_needed: int) -> bool:
    """Connect to ``address`` or start a local Ray; returns whether we started it (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, cpus_needed)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot connect to Ray at '{address}' ({exc}); check --ray-address") from None
    return True


def _source(trial: Trial | FrozenTrial) -> str:
    """Where a trial's weights came from: a baseline label, ``sampler``, or ``warm:...``."""
    return str(trial.user_attrs.get("source", "sampler"))


class Search:
    """One search run: study, workers, store and progress. Build with ``create`` or ``resume``.
    The time budgets read ``clock``; a test may replace it before ``run``."""

    def __init__(self, experiment: Experiment, pool: Pool, run_dir: Path, storage: str = JOURNAL) -> None:
        self.experiment = experiment
        self.pool = pool
        self.run_dir = run_dir
        self.space = space = space_for(experiment.space, experiment.merge, plan_for(pool, experiment.merge))
        self.labels = experiment.labels
        self.signs = [1.0 if d == "maximize" else -1.0 for d in experiment.directions]
        context = SamplerContext(list(experiment.directions), self.space.features)
        self.sampler = SAMPLERS.get(experiment.sampler.name)(experiment.seed, context)
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self.study = optuna.create_study(
            storage=open_storage(run_dir, storage),
            study_name=experiment.name,
            directions=experiment.directions,
            sampler=self.sampler,
            load_if_exists=True,
        )
        columns = Columns(
            tuple(space.labels),
            tuple(self.labels),
            tuple(experiment.directions),
            tuple(space.knobs),
            tuple(o.label for o in experiment.report),
        )
        self.store = TrialStore(run_dir, columns)
        self.clock: Clock = RealClock()

    @classmethod
    def create(
        cls, experiment: Experiment, pool: Pool, run_dir: Path, warm_from: Path | None = None, storage: str = JOURNAL
    ) -> Search:
        """A new run in the (new, empty) ``run_dir``; with ``warm_from``, import that run's trials first."""
        meta: dict[str, Any] = {
            "experiment": experiment.model_dump(mode="json"),
            "pool": pool.model_dump(mode="json"),
            "study_name": experiment.name,
            "storage": storage,
            "fingerprint": fingerprint(experiment, pool),
            "started_at": datetime.now(UTC).isoformat(),
        }
        write_meta(run_dir, meta)
        search = cls(experiment, pool, run_dir, storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            search.study.set_metric_names(search.labels)
        imported: list[dict[str, float]] = []
        if warm_from is not None:
            imported = import_trials(search, warm_from, meta["fingerprint"])
        for source, params in search.space.baselines()[: experiment.budget.trials]:
            if params not in imported:
                search.study.enqueue_trial(params, user_attrs={"source": source})
        return search

    @classmethod
    def resume(cls, run_dir: Path) -> Search:
        """Reopen a stopped or killed run; trials it left running are settled from Parquet or re-queued.
        Only while no other driver serves the study: their running trials would be settled too."""
        search = cls.join(run_dir)
        search._reconcile()
        search._settle_orphans()
        return search

    @classmethod
    def join(cls, run_dir: Path) -> Search:
        """One more driver for a run that others may be serving: same study, same store."""
        experiment, pool = read_run(run_dir, f"start a new run (optionally --warm-start {run_dir})")
        return cls(experiment, pool, run_dir, read_meta(run_dir).get("storage", JOURNAL))

    def set_trials(self, trials: int) -> None:
        """Change the trial budget, in ``run.json`` too so a later resume keeps it."""
        self.experiment = self.experiment.model_copy(
            update={"budget": self.experiment.budget.model_copy(update={"trials": trials})}
        )
        meta = read_meta(self.run_dir)
        meta["experiment"] = self.experiment.model_dump(mode="json")
        write_meta(self.run_dir, meta)

    def _reconcile(self) -> None:
        """Append to Parquet the trials Optuna holds as complete but Parquet lacks. The loop writes
        Parquet first, so only a warm-start import killed between its two writes leaves such a trial."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if self.store.find(trial.number) is not None:
                continue
            log.warning("trial %d is complete in the study but missing from Parquet; appending it", trial.number)
            finished = trial.datetime_complete or datetime.now(UTC)  # Optuna sets it on every complete trial
            self.store.append(
                TrialRecord(
                    trial=trial.number,
                    state="COMPLETE",
                    source=_source(trial),
                    weights=self.space.weights(trial.params),
                    knobs=self.space.knob_values(trial.params),
                    scores=dict(zip(self.labels, trial.values, strict=True)),
                    stderr={},
                    merge_seconds=None,
                    eval_seconds=None,
                    worker=None,
                    device=None,
                    fidelity=str(trial.user_attrs.get("fidelity", FULL)),
                    started_at=trial.datetime_start or finished,
                    finished_at=finished,
                )
            )

    def _settle_orphans(self) -> None:
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            row = self.store.find(trial.number)
            if row is not None and row["state"] == "COMPLETE":
                self.study.tell(trial.number, [cast(float, row[SCORE + o]) for o in self.labels])
                continue
            if row is None:
                self._record_orphan(trial)
            self.study.tell(trial.number, state=TrialState.FAIL)

    def _record_orphan(self, trial: FrozenTrial) -> None:
        """Store a trial the stopped driver left running and re-queue its parameters.

        A kill while the sampler was still proposing leaves some parameters unset: an enqueued
        trial is re-queued from its fixed parameters, a sampler's half proposal is dropped.
        """
        params = trial.params if self.space.is_complete(trial.params) else trial.system_attrs.get("fixed_params")
        fields: dict[str, Any] = {"trial": trial.number, "source": _source(trial), "finished_at": datetime.now(UTC)}
        fields["started_at"] = trial.datetime_start or fields["finished_at"]
        if params is None:
            error = "the driver stopped while the sampler was proposing this trial; dropped"
            self.store.append(TrialRecord.failure(error, weights={}, **fields))
            return
        error = "the driver stopped before this trial finished; re-queued"
        weights, knobs = self.space.weights(params), self.space.knob_values(params)
        self.store.append(TrialRecord.failure(error, weights=weights, knobs=knobs, **fields))
        self._requeue(params, _source(trial), trial.number)

    # ----- the loop -----

    def evaluated(self) -> int:
        """Complete trials this run evaluated itself (imported warm-start trials excluded)."""
        return sum(1 for r in self.store.rows if r["state"] == "COMPLETE" and not str(r["source"]).startswith(WARM))

    def _claimed(self) -> int:
        """Trials evaluated or under evaluation by any driver of the study (imported ones excluded)."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        return sum(1 for t in trials if not _source(t).startswith(WARM))

    def worker_hours(self) -> float:
        return sum(self.clock.worker_seconds(r) for r in self.store.rows) / 3600

    def _promotion(self, source: str) -> Promotion | None:
        if self.experiment.evaluation.screen is None or source != "sampler":
            return None
        front = self.store.front().to_pylist()
        rows = [[float(r[SCORE + o]) * s for o, s in zip(self.labels, self.signs, strict=True)] for r in front]
        return Promotion(rows, self.signs, self.experiment.evaluation.margin)

    def _submit(self, workers: WorkerPool, actor: Any) -> tuple[Any, _InFlight]:
        trial = self.study.ask(self.space.distributions())
        weights, knobs = self.space.weights(trial.params), self.space.knob_values(trial.params)
        source = _source(trial)
        prediction = getattr(self.sampler, "predictions", {}).get(trial.number)
        predicted = dict(zip(self.labels, prediction, strict=True)) if prediction else {}
        started_at = datetime.now(UTC)
        ref = workers.call(actor, "evaluate", self.space.point(weights, knobs), self._promotion(source))
        return ref, _InFlight(trial, actor, source, weights, knobs, predicted, started_at)

    def _finish(self, job: _InFlight, result: TrialResult | None, error: str | None) -> TrialRecord:
        """Parquet first, then Optuna (see the module docstring)."""
        common: dict[str, Any] = {
            "trial": job.trial.number,
            "source": job.source,
            "weights": job.weights,
            "knobs": job.knobs,
            "predicted": job.predicted,
            "started_at": job.started_at,
            "finished_at": datetime.now(UTC),
            "driver": self.driver,
        }
        if result is None:
            record = TrialRecord.failure(error or "failed", **common)
            self.store.append(record)
            job.trial.set_user_attr("error", error)
            self.study.tell(job.trial, state=TrialState.FAIL)
            return record
        record = TrialRecord(
            state="COMPLETE",
            scores={k: s.value for k, s in result.scores.items()},
            stderr={k: s.stderr for k, s in result.scores.items()},
            merge_seconds=result.merge_seconds,
            swap_seconds=result.swap_seconds,
            eval_seconds=result.eval_seconds,
            worker=result.worker,
            device=result.device,
            fidelity=result.fidelity,
            samples=result.samples,
            **common,
        )
        self.store.append(record)
        job.trial.set_user_attr("fidelity", result.fidelity)
        self.study.tell(job.trial, [result.scores[label].value for label in self.labels])
        return record

    def _budget_left(self, started: float) -> str | None:
        """Why no further trial may start, or None."""
        budget = self.experiment.budget
        if self._claimed() >= budget.trials:
            return f"{budget.trials} trials evaluated"
        if budget.wall_minutes is not None and self.clock.now() - started >= 60 * budget.wall_minutes:
            return f"wall time of {budget.wall_minutes} min reached"
        if budget.worker_hours is not None and self.worker_hours() >= budget.worker_hours:
            return f"{budget.worker_hours} worker-hours used"
        return None

    def run(self, ray_address: str | None = None, progress: bool = True, in_process: bool = False) -> SearchSummary:
        """Evaluate trials until the budget stops the search; ``in_process`` runs one worker in this
        process instead of Ray actors (``workers.count`` is then ignored)."""
        spec = self.experiment.workers
        started = self.clock.now()  # the budget counts the workers' start-up
        owns_ray = not in_process and _start_ray(ray_address, spec.count * (spec.threads or 1))
        summary = SearchSummary(self.run_dir)
        workers: WorkerPool | None = None
        try:
            worker_spec = self.experiment.worker_spec(self.pool)
            if in_process:
                log.info("starting 1 worker in this process (--in-process): loading the pool and building the model")
                workers = InProcessWorkers(worker_spec)
            else:
                log.info("starting %d worker(s): loading the pool and building the model", spec.count)
                workers = RayWorkers(worker_spec, spec.count)
            workers.wait_ready()
            self._loop(workers, summary, progress, started)
            summary.restarts, summary.retired = workers.restarts, list(workers.retired)
            summary.front = self._report(workers)
        finally:
            if workers is not None:
                workers.stop()
            if owns_ray:
                import ray

                ray.shutdown()
        summary.wall_seconds = self.clock.now() - started
        return summary

    def _loop(self, workers: WorkerPool, summary: SearchSummary, progress: bool, started: float) -> None:
        in_flight: dict[Any, _InFlight] = {}
        failures_in_a_row, limit = 0, max(3, workers.alive)
        bar = tqdm(
            total=self.experiment.budget.trials,
            initial=self.evaluated(),
            unit="trial",
            desc="search",
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            while True:
                stop = self._budget_left(started)
                while workers.idle and stop is None:
                    ref, job = self._submit(workers, workers.idle.pop())
                    in_flight[ref] = job
                    stop = self._budget_left(started)
                if not in_flight and (stop is not None or not workers.starting):
                    summary.stop_reason = stop or "no worker left"
                    return
                done = workers.wait([*in_flight, *workers.starting])
                if done in workers.starting:
                    workers.started(done)
                    continue
                job = in_flight.pop(done)
                result, error, died = self._collect(done, job, workers)
                summary.records.append(self._finish(job, result, error))
                if died:
                    self._requeue(job.trial.params, job.source, job.trial.number)
                if result is None:
                    summary.failed += 1
                    failures_in_a_row += 1
                    log.warning("trial %d failed: %s", job.trial.number, error)
                    if failures_in_a_row >= limit or not (
                        workers.alive and (workers.idle or workers.starting or in_flight)
                    ):
                        self._drain(in_flight, summary)
                        raise MergefrontError(
                            f"stopped after {failures_in_a_row} failed trials in a row; last error: {error}"
                        )
                else:
                    failures_in_a_row = 0
                    summary.complete += 1
                    summary.screened += result.fidelity != FULL
                    bar.update(1)
                bar.set_postfix(front=self.store.front().num_rows, failed=summary.failed)
        except KeyboardInterrupt:
            self._drain(in_flight, summary)
            raise
        finally:
            bar.close()

    def _collect(self, ref: Any, job: _InFlight, workers: WorkerPool) -> tuple[TrialResult | None, str | None, bool]:
        """The trial's result, or why it failed and whether its worker died. A trial whose worker died
        is queued again with the same weights (the death says nothing about them); the worker is
        replaced, or retired when it keeps failing."""
        try:
            result: TrialResult = workers.result(ref)
        except TrialFailed as exc:
            error = str(exc)
            workers.failed(job.actor, error)
            return None, error, False
        except WorkerLost as exc:
            error = f"{workers.name(job.actor)} died ({exc}); re-queued"
            workers.died(job.actor, error)
            return None, error, True
        workers.succeeded(job.actor)
        return result, None, False

    def _drain(self, in_flight: dict[Any, _InFlight], summary: SearchSummary) -> None:
        """Mark trials still running as failed and queue their weights again, for ``resume``."""
        for job in in_flight.values():
            summary.records.append(self._finish(job, None, "interrupted; re-queued"))
            self._requeue(job.trial.params, job.source, job.trial.number)
            summary.failed += 1
        in_flight.clear()

    def _requeue(self, params: dict[str, Any], source: str, number: int) -> None:
        self.study.enqueue_trial(params, user_attrs={"source": source, "requeued_from": number})

    def _report(self, workers: WorkerPool) -> pa.Table:
        """Score the held-out report tasks for front trials that have none yet (on every live worker,
        replacements still starting included: only then is it worth waiting for them)."""
        front = self.store.front()
        report = self.store.columns.report
        if not report:
            return front
        todo = [r for r in front.to_pylist() if r[REPORT + report[0]] is None]
        actors = workers.settle() if todo else []
        log.info("scoring %d front trial(s) on the report tasks %s", len(todo), ", ".join(report))
        refs = {}
        for i, row in enumerate(todo):
            weights = {m: row[WEIGHT + m] for m in self.space.labels}
            knobs = {k: row[KNOB + k] for k in self.space.knobs}
            refs[workers.call(actors[i % len(actors)], "report", self.space.point(weights, knobs))] = row["trial"]
        for ref, trial in refs.items():
            result: TrialResult = workers.result(ref)
            front = self.store.set_report(
                trial, {k: s.value for k, s in result.scores.items()}, {k: s.stderr for k, s in result.scores.items()}
            )
        return front
