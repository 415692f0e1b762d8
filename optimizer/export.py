"""Export: stream one merge into a Hugging Face model directory with a model card and a mergekit recipe.

Used by ``mergefront export`` (a trial of a run) and ``mergefront merge`` (weights given by hand).
The directory is written under a hidden ``.NAME.partial`` sibling and renamed at the end, so an
interrupted export leaves no half-written model where the user asked for one.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from evaluators.errors import ConfigError
from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.pool.plan import PoolPlan
from optimizer.adapter_export import write_adapter
from optimizer.mergekit import mergekit_recipe
from optimizer.modelcard import Provenance, model_card
from optimizer.space import space_for
from optimizer.store import FRONT, KNOB, REPORT, SCORE, STDERR, TRIALS, WEIGHT, read_table

CARD = "README.md"
RECIPE = "mergekit.yaml"


def check_output(out: Path, force: bool) -> Path:
    """Refuse an existing ``out`` without ``force`` and a place that cannot be written; returns the partial path."""
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a model directory; choose another --out")
    partial = out.with_name(f".{out.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        partial.rmdir()
    except OSError as exc:
        raise ConfigError(f"cannot write to {out.parent} ({exc.strerror}); choose a writable --out") from None
    return partial


def write_merge(
    plan: PoolPlan, spec: MergeSpec, point: MergePoint, weights: Mapping[str, float], out: Path, force: bool,
    provenance: Provenance, groups: Mapping[str, str] | None = None, as_adapter: bool = False,
) -> Path:
    """Stream the merge of ``point`` over the planned pool into ``out`` (a model directory, or with
    ``as_adapter`` a PEFT adapter) with README.md and, where it is exact, mergekit.yaml."""
    partial = check_output(out, force)
    pool = plan.pool
    try:
        if as_adapter:
            write_adapter(plan, spec, weights, bool(groups), partial)
            recipe, note = None, "not written for an adapter; load it with peft on the base named in adapter_config.json"
        else:
            stream_merge(plan, spec, point, partial, groups, progress=True)  # the workers' arithmetic: bit-equal to a CPU worker's merge
            recipe, note = mergekit_recipe(plan, spec, weights, point.knobs, bool(groups))
        (partial / CARD).write_text(model_card(pool, spec, weights, point.knobs, provenance, note))
        if recipe is not None:
            (partial / RECIPE).write_text(recipe)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _front_line(row: pd.Series, front: pd.DataFrame, run: str, objectives: list[str], directions: list[str]) -> str:
    if int(row["trial"]) not in set(front["trial"]):
        return f"This trial is not on the current Pareto front of run '{run}' (another trial beats it on every objective)."
    ranks = []
    for o, d in zip(objectives, directions, strict=True):
        better = (front[SCORE + o] > row[SCORE + o]) if d == "maximize" else (front[SCORE + o] < row[SCORE + o])
        ranks.append(f"{o} #{int(better.sum()) + 1}")
    return f"On the Pareto front of run '{run}' ({len(front)} points); its rank among them: {', '.join(ranks)}."


def export_trial(run_dir: Path, trial: int, out: Path, force: bool, as_adapter: bool = False) -> Path:
    """Export trial ``trial`` of the run in ``run_dir`` to ``out``."""
    from optimizer.driver import read_run

    columns, trials = read_table(run_dir, TRIALS)
    experiment, pool = read_run(run_dir, "its trials no longer describe these files; export from a run on the current pool")
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
    plan = plan_for(pool, experiment.merge)
    space = space_for(experiment.space, experiment.merge, plan)
    _, front = read_table(run_dir, FRONT)
    provenance = Provenance(
        origin=f"trial {trial} of run '{experiment.name}' ({row['source']}, fidelity {row['fidelity']})",
        scores={o: (float(row[SCORE + o]), None if pd.isna(row[STDERR + o]) else float(row[STDERR + o]), d)
                for o, d in zip(columns.objectives, columns.directions, strict=True)},
        report={r: float(row[REPORT + r]) for r in columns.report if not pd.isna(row[REPORT + r])},
        front=_front_line(row, front, experiment.name, list(columns.objectives), list(columns.directions)),
    )
    point = space.point(weights, knobs)
    return write_merge(plan, experiment.merge, point, weights, out, force, provenance, experiment.space.groups, as_adapter)
