"""Text and JSON views of a front (or of all trials) read from the Parquet store."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import pandas as pd

from optimizer.store.pareto import is_dominated
from optimizer.store.trials import TrialTable


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _float(value: float | None) -> float:
    """A stored value, NaN where it is missing (a failed trial's weights)."""
    return math.nan if value is None else float(value)


def score_text(value: float | None, stderr: float | None) -> str:
    """``0.812±0.021``, ``0.812`` without a standard error, ``-`` without a value."""
    if _number(value) is None:
        return "-"
    if _number(stderr) is None:
        return f"{value:.4g}"
    return f"{value:.4g}±{stderr:.2g}"


def parameter_names(keys: Sequence[str]) -> dict[str, str]:
    """Each merge parameter's name (``lambda``) by its stored key (``scale``), for what users read. The
    declarations import torch, so only a run that searched parameters pays for it."""
    if not keys:
        return {}
    from evaluators.merge import parameter_names as declared_names

    return declared_names(keys)


def table_frame(table: TrialTable) -> pd.DataFrame:
    """One row per trial: number, source, where an imported trial was evaluated (when any was), weights ``w.<label>``
    and knobs (3 decimals), fidelity when not full, scores ± stderr, then held-out scores (``report:<task>``)."""
    columns, records = table.columns, table.records()
    names = parameter_names(columns.knobs)
    screened = any(r.fidelity is not None and not r.fidelity.is_full for r in records)
    imported = any(r.imported for r in records)
    rows = []
    for r in records:
        row: dict[str, object] = {"trial": r.trial, "source": str(r.source)}
        if imported:
            row["imported from"] = str(r.imported_from or "-")
        row.update({f"w.{m}": f"{_float(r.weights.get(m)):.3f}" for m in columns.weights})
        row.update({names[k]: f"{_float(r.knobs.get(k)):.3f}" for k in columns.knobs})
        if screened:
            row["fidelity"] = None if r.fidelity is None else str(r.fidelity)
        row.update({o: score_text(r.scores.get(o), r.stderr.get(o)) for o in columns.objectives})
        row.update({f"report:{t}": score_text(r.held_out.get(t), r.held_out_stderr.get(t)) for t in columns.held_out})
        rows.append(row)
    arrows = {
        o: f"{o} {'↑' if d == 'maximize' else '↓'}" for o, d in zip(columns.objectives, columns.directions, strict=True)
    }
    return pd.DataFrame(rows).rename(columns=arrows)


def format_table(table: TrialTable) -> str:
    """``table_frame`` as plain text, for the terminal."""
    return table_frame(table).to_string(index=False) if len(table) else "(no complete trials)"


def front_json(table: TrialTable) -> str:
    """JSON array of {trial, weights: {label: w}, knobs, scores: {objective: value}, report: {task: value}}
    (``report`` holds the held-out scores)."""
    columns = table.columns
    names = parameter_names(columns.knobs)
    out = [
        {
            "trial": r.trial,
            "weights": {m: _float(r.weights.get(m)) for m in columns.weights},
            "knobs": {names[k]: _float(r.knobs.get(k)) for k in columns.knobs},
            "scores": {o: _float(r.scores.get(o)) for o in columns.objectives},
            "report": {t: r.held_out.get(t) for t in columns.held_out},
        }
        for r in table.records()
    ]
    return json.dumps(out, indent=2)


def merge_verdict(trials: TrialTable, front: TrialTable) -> str:
    """How the searched merges compare with the single checkpoints, in one line."""
    complete = trials.complete()
    singles, merges = complete.singles(), complete.merges().scores().to_numpy(float)
    maximize = [d == "maximize" for d in trials.columns.directions]
    beaten = [
        str(s.source.checkpoint)
        for s, scores in zip(singles.records(), singles.scores().to_numpy(float), strict=True)
        if is_dominated(scores, merges, maximize)
    ]
    return (
        f"{len(front.merges())} of {len(front)} front points are merges that no single checkpoint dominates; "
        f"single checkpoints dominated by a merge: {', '.join(beaten) or 'none'}"
    )
