"""Warm start: a run on a changed pool reuses the finished trials of an earlier run.

An old weight vector is the same merge with weight 0 for each new member, so its scores stay
valid as long as tasks, evaluation settings, merge method and space are unchanged and the members
it gave weight to have the same content (checked through the runs' fingerprints). A trial that
gave weight to a member whose files changed, or that left the pool, is not reused; a member found
under a new name (same content) keeps its weights. Imported trials are added to the new study as
complete trials (never re-evaluated) under new numbers; each keeps its source (a single baseline
``single:<member>`` stays one, under the member's new name) and names, in ``imported_from``, the run
and trial that evaluated it. The new run's baselines then come first: each added or changed
member alone, then any other baseline not imported (the uniform average of the new pool).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna

from evaluators.core.errors import ConfigError
from optimizer.experiment.fingerprint import check_reusable
from optimizer.run.directory import read_meta
from optimizer.space.weights import WeightSpace
from optimizer.store.rows import TrialRecord, TrialRef, TrialSource, TrialState
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


@dataclass(frozen=True)
class Imported:
    """What a warm start brought into a new run: the raw params of the merges already scored, and the members its
    old run never scored as they are now (added or changed). Empty for a run that imported nothing."""

    scored: list[dict[str, float]] = field(default_factory=list)
    new_members: tuple[str, ...] = ()

    def baselines(self, space: WeightSpace) -> list[tuple[TrialSource, dict[str, float]]]:
        """The space's baselines still to evaluate (as source, raw params): those whose merge was not imported,
        each new member alone first, then the others in the space's order."""

        def merge(params: dict[str, float]) -> tuple[float, ...]:
            """Recorded weights and knobs, rounded: the simplex's normalisation leaves 1/n a bit off for some n."""
            return tuple(round(x, 9) for x in space.features(params))

        scored = {merge(params) for params in self.scored}
        todo = [(source, params) for source, params in space.baselines() if merge(params) not in scored]
        return sorted(todo, key=lambda baseline: baseline[0].checkpoint not in self.new_members)


def import_trials(search: ImportTarget, old_run: Path, new_fingerprint: dict[str, Any]) -> Imported:
    """Import ``old_run``'s complete full-fidelity trials into ``search``."""
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
    scored = []
    for row in usable.records():
        weights = {renamed(label): row.weights[label] for label in kept}
        knobs = {k: row.knobs[k] for k in columns.knobs}
        try:
            params = search.space.params_of(weights, knobs)
        except ConfigError as exc:
            raise ConfigError(
                f"cannot warm-start from {old_run}: trial {row.trial} lies outside the new space ({exc})"
            ) from None
        checkpoint = row.source.checkpoint
        source = row.source if checkpoint is None else TrialSource.single(change.renamed.get(checkpoint, checkpoint))
        origin = row.imported_from or TrialRef(old_meta.study_name, row.trial)  # where it was evaluated
        values = [row.scores[o] for o in search.labels]
        attrs = source_attrs(source, imported_from=origin)
        search.study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, values=values, user_attrs=attrs)
        )
        number = search.study.get_trials(deepcopy=False)[-1].number
        record = _record(row, number, source, origin, search.space.weights(params), knobs, search.labels)
        search.store.append(record)
        scored.append(params)
    return Imported(scored, (*change.added, *change.changed))


def _record(
    row: TrialRecord,
    number: int,
    source: TrialSource,
    origin: TrialRef,
    weights: dict[str, float],
    knobs: dict[str, float],
    labels: list[str],
) -> TrialRecord:
    """An old run's stored trial as trial ``number`` of the new run, imported from ``origin``: its scores, timings and
    worker kept."""
    return TrialRecord(
        trial=number,
        state=TrialState.COMPLETE,
        source=source,
        imported_from=origin,
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
