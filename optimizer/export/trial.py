"""``mergefront export RUN_DIR --trial N``: a trial of a run, written by ``optimizer.export.model.write_merge``
with the card's provenance (its scores, held-out scores and place on the front)."""

from __future__ import annotations

from pathlib import Path

from evaluators.core.errors import ConfigError
from evaluators.merge.engine import plan_for
from optimizer.export.model import Destination, write_merge
from optimizer.export.modelcard import Provenance
from optimizer.run.directory import Places, read_run
from optimizer.space.weights import space_for
from optimizer.store.rows import TrialRecord
from optimizer.store.trials import FRONT, TRIALS, TrialTable, read_trials


def _front_line(row: TrialRecord, front: TrialTable, run: str) -> str:
    if row.trial not in set(front.numbers):
        return f"This trial is not on the current Pareto front of run '{run}' (another trial is at least as good on every objective and better on one)."
    ranks, scores = [], front.scores()
    for o, d in zip(front.columns.objectives, front.columns.directions, strict=True):
        better = (scores[o] > row.scores[o]) if d == "maximize" else (scores[o] < row.scores[o])
        ranks.append(f"{o} #{int(better.sum()) + 1}")
    return f"On the Pareto front of run '{run}' ({len(front)} points); its rank among them: {', '.join(ranks)}."


def export_trial(run_dir: Path, trial: int, to: Destination, places: Places | None = None) -> Path:
    """Export trial ``trial`` of the run in ``run_dir`` to ``to`` (its files where ``places`` says they moved)."""
    trials = read_trials(run_dir, TRIALS)
    columns = trials.columns
    experiment, pool = read_run(
        run_dir, "its trials no longer describe these files; export from a run on the current pool", places
    )
    row = trials.find(trial)
    if row is None:
        raise ConfigError(
            f"trial {trial} is not in {run_dir} (trials {min(trials.numbers)}..{max(trials.numbers)}); "
            f"`mergefront front {run_dir} --all` lists them"
        )
    if not row.complete:
        raise ConfigError(f"trial {trial} of {run_dir} failed ({row.error}); export a complete trial")
    weights = {label: row.weights[label] for label in columns.weights}
    knobs = {k: row.knobs[k] for k in columns.knobs}
    plan = plan_for(pool, experiment.merge, exact=False)
    space = space_for(experiment.space, experiment.merge, plan)
    provenance = Provenance(
        origin=f"trial {trial} of run '{experiment.name}' ({row.source}, fidelity {row.fidelity})",
        scores={
            o: (row.scores[o], row.stderr.get(o), d)
            for o, d in zip(columns.objectives, columns.directions, strict=True)
        },
        held_out=dict(row.held_out),
        front=_front_line(row, read_trials(run_dir, FRONT), experiment.name),
        samples=row.samples,
    )
    point = space.point(weights, knobs)
    return write_merge(plan, experiment.merge, point, weights, provenance, to, experiment.space.groups)
