"""Warm start: a run on a changed pool reuses the finished trials of an earlier run.

An old weight vector is the same merge with weight 0 for each new member, so its scores stay
valid as long as tasks, evaluation settings, merge method and space are unchanged and the members
it gave weight to have the same content (checked through the runs' fingerprints). A trial that
gave weight to a member whose files changed, or that left the pool, is not reused; a member found
under a new name (same content) keeps its weights. Imported trials are added to the new study as
complete trials (never re-evaluated) and stored with source ``warm:<run>#<trial>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import optuna

from evaluators.core.errors import ConfigError
from optimizer.experiment.fingerprint import check_reusable
from optimizer.run.directory import read_meta
from optimizer.space.weights import WeightSpace
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from optimizer.store.study import source_attrs
from optimizer.store.trials import TRIALS, TrialStore, read_trials

log = logging.getLogger(__name__)


def _member(label: str) -> str:
    """The member a weight label belongs to (labels are ``member`` or ``group/member``)."""
    return label.rsplit("/", 1)[-1]


class ImportTarget(Protocol):
    """What a warm start writes into: the new search's space, objectives, study and trial store."""

    space: WeightSpace
    labels: list[str]
    study: optuna.Study
    store: TrialStore


def import_trials(search: ImportTarget, old_run: Path, new_fingerprint: dict[str, Any]) -> list[dict[str, float]]:
    """Import ``old_run``'s complete full-fidelity trials into ``search``; returns their raw params."""
    old_meta = read_meta(old_run)
    change = check_reusable(old_meta.fingerprint, new_fingerprint, old_run)
    table = read_trials(old_run, TRIALS)
    columns = table.columns

    def renamed(label: str) -> str:
        member = _member(label)
        return label[: len(label) - len(member)] + change.renamed.get(member, member)

    kept = [label for label in columns.weights if _member(label) not in change.stale]
    missing = sorted({renamed(label) for label in kept} - set(search.space.labels))
    if missing:
        raise ConfigError(f"cannot warm-start from {old_run}: its weights {missing} have no place in the new space")
    done = table.full()
    stale = [label for label in columns.weights if _member(label) in change.stale]
    usable = done.where((done.weights()[stale].fillna(0.0) == 0.0).all(axis=1)) if stale else done
    if len(usable) < len(done):
        log.warning(
            "not reusing %d of %d trials of %s: they gave weight to %s",
            len(done) - len(usable),
            len(done),
            old_run,
            ", ".join(sorted(change.stale)),
        )
    distributions = search.space.distributions()
    imported = []
    for row in usable.records():
        weights = {renamed(label): row.weights[label] for label in kept}
        knobs = {k: row.knobs[k] for k in columns.knobs}
        try:
            params = search.space.params_of(weights, knobs)
        except ConfigError as exc:
            raise ConfigError(
                f"cannot warm-start from {old_run}: trial {row.trial} lies outside the new space ({exc})"
            ) from None
        values = [row.scores[o] for o in search.labels]
        source = TrialSource.warm(old_meta.study_name, row.trial)
        search.study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=distributions, values=values, user_attrs=source_attrs(source)
            )
        )
        number = search.study.get_trials(deepcopy=False)[-1].number
        search.store.append(_record(row, number, source, search.space.weights(params), knobs, search.labels))
        imported.append(params)
    return imported


def _record(
    row: TrialRecord,
    number: int,
    source: TrialSource,
    weights: dict[str, float],
    knobs: dict[str, float],
    labels: list[str],
) -> TrialRecord:
    """An old run's stored trial as trial ``number`` of the new run: its scores, timings and worker kept."""
    return TrialRecord(
        trial=number,
        state=TrialState.COMPLETE,
        source=source,
        weights=weights,
        knobs=knobs,
        scores={o: row.scores[o] for o in labels},
        stderr={o: row.stderr.get(o) for o in labels},
        merge_seconds=row.merge_seconds,
        swap_seconds=row.swap_seconds,
        eval_seconds=row.eval_seconds,
        worker=row.worker,
        device=row.device,
        started_at=row.started_at,
        finished_at=row.finished_at,
        samples=row.samples,
    )
