"""Warm start: a run on an enlarged pool reuses the finished trials of an earlier run.

An old weight vector is the same merge with weight 0 for each new member, so its scores stay
valid as long as tasks, evaluation settings, merge method, space and the old members' files are
unchanged (checked through the runs' fingerprints). Imported trials are added to the new study
as complete trials (never re-evaluated) and stored with source ``warm:<run>#<trial>``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from evaluators.errors import ConfigError
from optimizer.fingerprint import check_reusable
from optimizer.store import FULL, KNOB, SCORE, STDERR, TRIALS, WEIGHT, TrialRecord, read_table

if TYPE_CHECKING:
    from optimizer.driver import Search


def _value(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def import_trials(search: Search, old_run: Path, new_fingerprint: dict[str, Any]) -> list[dict[str, float]]:
    """Import ``old_run``'s complete full-fidelity trials into ``search``; returns their raw params."""
    from optimizer.driver import read_meta

    old_meta = read_meta(old_run)
    check_reusable(old_meta["fingerprint"], new_fingerprint, old_run)
    columns, frame = read_table(old_run, TRIALS)
    missing = sorted(set(columns.weights) - set(search.space.labels))
    if missing:
        raise ConfigError(f"cannot warm-start from {old_run}: its weights {missing} have no place in the new space")
    done = frame[(frame["state"] == "COMPLETE") & (frame["fidelity"] == FULL)]
    distributions = search.space.distributions()
    imported = []
    for _, row in done.iterrows():
        weights = {label: float(row[WEIGHT + label]) for label in columns.weights}
        knobs = {k: float(row[KNOB + k]) for k in columns.knobs}
        try:
            params = search.space.params_of(weights, knobs)
        except ConfigError as exc:
            raise ConfigError(f"cannot warm-start from {old_run}: trial {row['trial']} lies outside the new space ({exc})") from None
        values = [float(row[SCORE + o]) for o in search.labels]
        source = f"warm:{old_meta['study_name']}#{int(row['trial'])}"
        search.study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=values, user_attrs={"source": source}))
        number = search.study.get_trials(deepcopy=False)[-1].number
        search.store.append(TrialRecord(
            trial=number, state="COMPLETE", source=source, weights=search.space.weights(params), knobs=knobs,
            scores=dict(zip(search.labels, values, strict=True)),
            stderr={o: _value(row[STDERR + o]) for o in search.labels},
            merge_seconds=_value(row["merge_seconds"]), swap_seconds=_value(row.get("swap_seconds")), eval_seconds=_value(row["eval_seconds"]),
            worker=row["worker"], device=row["device"], started_at=row["started_at"].to_pydatetime(),
            finished_at=row["finished_at"].to_pydatetime(), samples=None if _value(row["samples"]) is None else int(row["samples"]),
        ))
        imported.append(params)
    return imported
