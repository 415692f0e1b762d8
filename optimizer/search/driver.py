"""The search driver: an asynchronous ask/tell loop of an Optuna study over a ``WorkerPool`` (Ray actors, or one
worker in this process). A trial is proposed as soon as a worker is free (no generation barrier); the baselines come
first (each single checkpoint, then the uniform average; after a warm start, those not imported, each new member alone
first). A finished trial goes to Parquet first and to Optuna second, so after a crash ``resume`` tells Optuna what
Parquet holds and re-queues what neither finished: no trial is lost or stored twice. Held-out tasks are scored for the
front trials when the search stops. Ctrl-C stores the trials in flight as interrupted and re-queues them
(SearchInterrupted); a run with nothing left to do returns at once, starting no worker.

Several drivers may serve one study on shared storage (``mergefront join``): trial numbers come
from the storage, the budget counts every driver's trials, and the Parquet store is shared under
a lock. Two drivers checking the budget at the same moment can overshoot it by one trial each.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
from optuna.trial import Trial, TrialState

from evaluators.core.errors import MergefrontError
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.worker import Promotion, TrialResult
from optimizer.experiment.config import Experiment
from optimizer.run.directory import Places, RunMeta, read_meta, read_run, write_meta
from optimizer.sampler import SAMPLERS, SamplerContext
from optimizer.search.progress import TrialLines, trial_progress
from optimizer.search.recovery import reconcile, requeue, settle_orphans
from optimizer.search.summary import Clock, RealClock, SearchInterrupted, SearchSummary
from optimizer.search.warmstart import Imported, import_trials
from optimizer.search.workers import TrialFailed, WorkerLost, WorkerPool, start_ray, start_workers
from optimizer.space.weights import space_for
from optimizer.store.columns import Columns
from optimizer.store.rows import INTERRUPTED, Fidelity, TrialRecord, TrialSource
from optimizer.store.rows import TrialState as Stored
from optimizer.store.study import (
    JOURNAL,
    note_error,
    note_fidelity,
    note_merge,
    open_storage,
    source_attrs,
    trial_imported_from,
    trial_source,
)
from optimizer.store.trials import TrialStore

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    trial: Trial
    actor: Any
    source: TrialSource
    weights: dict[str, float]
    knobs: dict[str, float]
    predicted: dict[str, float]
    started_at: datetime


class Search:
    """One search run: study, workers, store and progress. Build with ``create`` or ``resume``.
    The time budgets read ``clock``; a test may replace it before ``run``. A pool set as ``workers``
    before ``run`` (bench/search.py's, a test's) is readied, used and stopped instead of starting one."""

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
            tuple(o.label for o in experiment.held_out),
            tuple(o.direction or "" for o in experiment.held_out),
            run=experiment.name,
        )
        self.store = TrialStore(run_dir, columns)
        self.clock: Clock = RealClock()
        self.workers: WorkerPool | None = None

    @classmethod
    def create(
        cls, experiment: Experiment, pool: Pool, run_dir: Path, warm_from: Path | None = None, storage: str = JOURNAL
    ) -> Search:
        """A new run in the (new, empty) ``run_dir``; with ``warm_from``, import that run's trials first."""
        meta = RunMeta.start(experiment, pool, run_dir, storage)
        write_meta(run_dir, meta)
        search = cls(experiment, pool, run_dir, storage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            search.study.set_metric_names(search.labels)
        imported = Imported() if warm_from is None else import_trials(search, warm_from, meta.fingerprint)
        for source, params in imported.baselines(search.space)[: experiment.budget.trials]:
            search.study.enqueue_trial(params, user_attrs=source_attrs(source))
        return search

    @classmethod
    def resume(cls, run_dir: Path, places: Places | None = None) -> Search:
        """Reopen a stopped or killed run (files moved to ``places`` are recorded there); trials it left running are
        settled from Parquet or re-queued. Only while no other driver serves the study: theirs would be settled too."""
        search = cls.join(run_dir, places)
        if places is not None and places.given():
            write_meta(run_dir, read_meta(run_dir).relocated(search.experiment, search.pool, run_dir))
        reconcile(search)
        settle_orphans(search)
        return search

    @classmethod
    def join(cls, run_dir: Path, places: Places | None = None) -> Search:
        """One more driver for a run that others may be serving: same study, same store."""
        experiment, pool = read_run(run_dir, f"start a new run (optionally --warm-start {run_dir})", places)
        return cls(experiment, pool, run_dir, read_meta(run_dir).storage)

    def set_trials(self, trials: int) -> None:
        """Change the trial budget, in ``run.json`` too so a later resume keeps it."""
        self.experiment = self.experiment.model_copy(
            update={"budget": self.experiment.budget.model_copy(update={"trials": trials})}
        )
        write_meta(self.run_dir, read_meta(self.run_dir).with_experiment(self.experiment, self.run_dir))

    # ----- the loop -----

    def evaluated(self) -> int:
        """Complete trials this run evaluated itself (imported warm-start trials excluded)."""
        return sum(1 for r in self.store.records if r.complete and not r.imported)

    def _claimed(self) -> int:
        """Trials evaluated or under evaluation by any driver of the study (imported ones excluded)."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        return sum(1 for t in trials if trial_imported_from(t) is None)

    def worker_hours(self) -> float:
        """Summed worker time of the stored trials, in hours, as ``clock`` measures it (the ``worker_hours`` budget)."""
        return sum(self.clock.worker_seconds(r) for r in self.store.records) / 3600

    def _promotion(self, source: TrialSource) -> Promotion | None:
        if self.experiment.evaluation.screen is None or not source.is_sampler:
            return None
        front = self.store.front_records()
        rows = [[r.scores[o] * s for o, s in zip(self.labels, self.signs, strict=True)] for r in front]
        return Promotion(rows, self.signs, self.experiment.evaluation.margin)

    def _submit(self, workers: WorkerPool, actor: Any, in_flight: dict[Any, _InFlight]) -> None:
        """Ask the study for a trial and start it on ``actor``; it is in ``in_flight`` while the call is made (an
        in-process call runs the whole trial there: a Ctrl-C during it finds the trial to re-queue)."""
        trial = self.study.ask(self.space.distributions())
        weights, knobs = self.space.weights(trial.params), self.space.knob_values(trial.params)
        note_merge(trial, weights, knobs)
        source = trial_source(trial)
        prediction = getattr(self.sampler, "predictions", {}).get(trial.number)
        predicted = dict(zip(self.labels, prediction, strict=True)) if prediction else {}
        pending = object()  # the call's handle, until the call returns it
        in_flight[pending] = _InFlight(trial, actor, source, weights, knobs, predicted, datetime.now(UTC))
        ref = workers.call(actor, "evaluate", self.space.point(weights, knobs), self._promotion(source))
        in_flight[ref] = in_flight.pop(pending)

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
            note_error(job.trial, error)
            self.study.tell(job.trial, state=TrialState.FAIL)
            return record
        fidelity = Fidelity.FULL if result.screened is None else Fidelity(result.screened)
        record = TrialRecord(
            state=Stored.COMPLETE,
            scores={k: s.value for k, s in result.scores.items()},
            stderr={k: s.stderr for k, s in result.scores.items()},
            merge_seconds=result.merge_seconds,
            swap_seconds=result.swap_seconds,
            eval_seconds=result.eval_seconds,
            worker=result.worker,
            device=result.device,
            fidelity=fidelity,
            samples={label: score.samples for label, score in result.scores.items()},
            **common,
        )
        self.store.append(record)
        note_fidelity(job.trial, fidelity)
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

    def finished(self) -> str | None:
        """Why this run has nothing left to do (its trial or worker-hour budget is met and every front trial has its
        held-out scores), or None: ``run`` then returns at once, without Ray or workers."""
        spent = self._budget_left(self.clock.now())
        return spent if spent is not None and not self._held_out_todo() else None

    def run(self, ray_address: str | None = None, progress: bool = True, in_process: bool = False) -> SearchSummary:
        """Evaluate trials until the budget stops the search; ``in_process`` runs one worker in this process instead
        of Ray actors (``workers.count`` is then ignored); ``progress``: a bar, else a log line per trial. Ctrl-C
        stops it cleanly: SearchInterrupted, with the summary."""
        summary = SearchSummary(self.run_dir)
        if (finished := self.finished()) is not None:
            log.info("%s is finished (%s): nothing to evaluate", self.run_dir, finished)
            summary.stop_reason, summary.finished_before, summary.front = finished, True, self.store.front()
            return summary
        spec = self.experiment.workers
        started = self.clock.now()  # the budget counts the workers' start-up
        owns_ray = self.workers is None and not in_process and start_ray(ray_address, spec.count * (spec.threads or 1))
        workers = self.workers
        try:
            if workers is None:
                workers = start_workers(self.experiment.worker_spec(self.pool), spec.count, in_process)
            workers.wait_ready()
            self._loop(workers, summary, progress, started)
            summary.front = self._score_held_out(workers)
        finally:
            summary.wall_seconds = self.clock.now() - started
            if workers is not None:
                summary.restarts, summary.retired = workers.restarts, list(workers.retired)
                workers.stop()
            if owns_ray:
                import ray

                ray.shutdown()
        return summary

    def _loop(self, workers: WorkerPool, summary: SearchSummary, bar: bool, started: float) -> None:
        """The trials, shown as they finish; on Ctrl-C the trials in flight are re-queued (SearchInterrupted)."""
        in_flight: dict[Any, _InFlight] = {}
        budget = self.experiment.budget.trials
        with trial_progress(self.labels, self.signs, budget, self.evaluated(), bar) as progress:
            try:
                self._trials(workers, summary, progress, started, in_flight)
            except KeyboardInterrupt:
                self._drain(in_flight, summary)
                summary.stop_reason = "interrupted (Ctrl-C)"
                raise SearchInterrupted(summary) from None

    def _trials(
        self,
        workers: WorkerPool,
        summary: SearchSummary,
        progress: TrialLines,
        started: float,
        in_flight: dict[Any, _InFlight],
    ) -> None:
        """Start trials on idle workers and take finished ones until the budget or the workers run out."""
        failures_in_a_row, limit = 0, max(3, workers.alive)
        while True:
            stop = self._budget_left(started)
            while workers.idle and stop is None:
                self._submit(workers, workers.idle.pop(), in_flight)
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
            record = self._finish(job, result, error)
            summary.records.append(record)
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
                summary.screened += result.screened is not None
            progress.trial(record, self.store.front_records(), self.evaluated(), summary.failed)

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
        """Store the trials still running as interrupted (failed in the study) and queue their weights again, for
        ``resume``; the summary counts them apart from failures."""
        for job in in_flight.values():
            summary.records.append(self._finish(job, None, INTERRUPTED))
            self._requeue(job.trial.params, job.source, job.trial.number)
            summary.interrupted += 1
        in_flight.clear()

    def _requeue(self, params: dict[str, Any], source: TrialSource, number: int) -> None:
        requeue(self.study, params, source, number)

    def _score_held_out(self, workers: WorkerPool) -> pa.Table:
        """Score the held-out tasks for front trials that have none yet (on every live worker, replacements still
        starting included: only then is it worth waiting for them)."""
        front = self.store.front()
        held_out = self.store.columns.held_out
        if not held_out:
            return front
        todo = self._held_out_todo()
        actors = workers.settle() if todo else []
        log.info("scoring %d front trial(s) on the held-out tasks %s", len(todo), ", ".join(held_out))
        refs = {}
        for i, row in enumerate(todo):
            weights = {m: row.weights[m] for m in self.space.labels}
            knobs = {k: row.knobs[k] for k in self.space.knobs}
            refs[workers.call(actors[i % len(actors)], "score_held_out", self.space.point(weights, knobs))] = row.trial
        for ref, trial in refs.items():
            result: TrialResult = workers.result(ref)
            front = self.store.set_held_out(
                trial, {k: s.value for k, s in result.scores.items()}, {k: s.stderr for k, s in result.scores.items()}
            )
        return front

    def _held_out_todo(self) -> list[TrialRecord]:
        """The front trials without held-out scores (none when the run has no held-out task)."""
        held_out = self.store.columns.held_out
        return [r for r in self.store.front_records() if held_out and held_out[0] not in r.held_out]
