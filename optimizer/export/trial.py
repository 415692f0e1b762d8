"""``mergefront export RUN_DIR --trial N``: a trial of a run, written by ``optimizer.export.model.write_merge``
with the card's provenance (its scores, held-out scores and place on the front)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evaluators.core.errors import ConfigError
from evaluators.merge.engine import plan_for
from optimizer.export.model import Destination, write_merge
from optimizer.export.modelcard import Provenance
from optimizer.space.weights import space_for
from optimizer.store.trials import FRONT, KNOB, REPORT, SCORE, STDERR, TRIALS, WEIGHT, read_table


def _front_line(row: pd.Series, front: pd.DataFrame, run: str, objectives: list[str], directions: list[str]) -> str:
    if int(row["trial"]) not in set(front["trial"]):
        return (
            f"This trial is not on the current Pareto front of run '{run}' (another trial beats it on every objective)."
        )
    ranks = []
    for o, d in zip(objectives, directions, strict=True):
        better = (front[SCORE + o] > row[SCORE + o]) if d == "maximize" else (front[SCORE + o] < row[SCORE + o])
        ranks.append(f"{o} #{int(better.sum()) + 1}")
    return f"On the Pareto front of run '{run}' ({len(front)} points); its rank among them: {', '.join(ranks)}."


def export_trial(run_dir: Path, trial: int, out: Path, force: bool, as_adapter: bool = False) -> Path:
    """Export trial ``trial`` of the run in ``run_dir`` to ``out``."""
    from optimizer.run.directory import read_run

    columns, trials = read_table(run_dir, TRIALS)
    experiment, pool = read_run(
        run_dir, "its trials no longer describe these files; export from a run on the current pool"
    )
    rows = trials[trials["trial"] == trial]
    if rows.empty:
        raise ConfigError(
            f"trial {trial} is not in {run_dir} (trials {int(trials['trial'].min())}..{int(trials['trial'].max())}); "
            f"`mergefront front {run_dir} --all` lists them"
        )
    row = rows.iloc[0]
    if row["state"] != "COMPLETE":
        raise ConfigError(f"trial {trial} of {run_dir} failed ({row['error']}); export a complete trial")
    weights = {label: float(row[WEIGHT + label]) for label in columns.weights}
    knobs = {k: float(row[KNOB + k]) for k in columns.knobs}
    plan = plan_for(pool, experiment.merge, exact=False)
    space = space_for(experiment.space, experiment.merge, plan)
    _, front = read_table(run_dir, FRONT)
    provenance = Provenance(
        origin=f"trial {trial} of run '{experiment.name}' ({row['source']}, fidelity {row['fidelity']})",
        scores={
            o: (float(row[SCORE + o]), None if pd.isna(row[STDERR + o]) else float(row[STDERR + o]), d)
            for o, d in zip(columns.objectives, columns.directions, strict=True)
        },
        report={r: float(row[REPORT + r]) for r in columns.report if not pd.isna(row[REPORT + r])},
        front=_front_line(row, front, experiment.name, list(columns.objectives), list(columns.directions)),
    )
    point = space.point(weights, knobs)
    to = Destination(out, force, as_adapter)
    return write_merge(plan, experiment.merge, point, weights, provenance, to, experiment.space.groups)
