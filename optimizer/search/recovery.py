"""Crash recovery: what a stopped or killed driver leaves behind is settled before a run goes on.

The loop writes Parquet first and tells Optuna second, so a study trial left RUNNING is either stored
(complete: tell Optuna its scores) or not (fail it, and queue its parameters again); a complete study
trial missing from Parquet can only come from a warm-start import cut between its two writes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimizer.space.weights import WeightSpace
from optimizer.store.rows import ORPHANED, TrialRecord, TrialSource
from optimizer.store.rows import TrialState as Stored
from optimizer.store.study import source_attrs, trial_fidelity, trial_imported_from, trial_source
from optimizer.store.trials import TrialStore

log = logging.getLogger(__name__)


class Recoverable(Protocol):
    """What recovery reads and writes: the run's study, trial store, space and objective labels."""

    study: optuna.Study
    store: TrialStore
    space: WeightSpace
    labels: list[str]


def requeue(study: optuna.Study, params: dict[str, Any], source: TrialSource, number: int) -> None:
    """Queue ``params`` again as a new trial, remembering the source and the trial it repeats."""
    study.enqueue_trial(params, user_attrs=source_attrs(source, requeued_from=number))


def reconcile(search: Recoverable) -> None:
    """Append to Parquet the trials Optuna holds as complete but Parquet lacks. The loop writes
    Parquet first, so only a warm-start import killed between its two writes leaves such a trial."""
    for trial in search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if search.store.find(trial.number) is not None:
            continue
        log.warning("trial %d is complete in the study but missing from Parquet; appending it", trial.number)
        finished = trial.datetime_complete or datetime.now(UTC)  # Optuna sets it on every complete trial
        search.store.append(
            TrialRecord(
                trial=trial.number,
                state=Stored.COMPLETE,
                source=trial_source(trial),
                imported_from=trial_imported_from(trial),
                weights=search.space.weights(trial.params),
                knobs=search.space.knob_values(trial.params),
                scores=dict(zip(search.labels, trial.values, strict=True)),
                stderr={},
                merge_seconds=None,
                eval_seconds=None,
                worker=None,
                device=None,
                fidelity=trial_fidelity(trial),
                started_at=trial.datetime_start or finished,
                finished_at=finished,
            )
        )


def settle_orphans(search: Recoverable) -> None:
    """Settle the trials a stopped driver left RUNNING: complete from Parquet where it holds them, else failed
    (and re-queued where their parameters are known)."""
    for trial in search.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = search.store.find(trial.number)
        if row is not None and row.complete:
            search.study.tell(trial.number, [row.scores[o] for o in search.labels])
            continue
        if row is None:
            _record_orphan(search, trial)
        search.study.tell(trial.number, state=TrialState.FAIL)


def _record_orphan(search: Recoverable, trial: FrozenTrial) -> None:
    """Store a trial the stopped driver left running and re-queue its parameters.

    A kill while the sampler was still proposing leaves some parameters unset: an enqueued
    trial is re-queued from its fixed parameters, a sampler's half proposal is dropped.
    """
    params = trial.params if search.space.is_complete(trial.params) else trial.system_attrs.get("fixed_params")
    fields: dict[str, Any] = {"trial": trial.number, "source": trial_source(trial), "finished_at": datetime.now(UTC)}
    fields["started_at"] = trial.datetime_start or fields["finished_at"]
    if params is None:
        error = "the driver stopped while the sampler was proposing this trial; dropped"
        search.store.append(TrialRecord.failure(error, weights={}, **fields))
        return
    weights, knobs = search.space.weights(params), search.space.knob_values(params)
    search.store.append(TrialRecord.failure(ORPHANED, weights=weights, knobs=knobs, **fields))
    requeue(search.study, params, trial_source(trial), trial.number)
