"""Text and JSON views of a front (or of all trials) read from the Parquet store."""

from __future__ import annotations

import json
import math

import pandas as pd

from optimizer.store.pareto import is_dominated
from optimizer.store.trials import KNOB, REPORT, REPORT_STDERR, SCORE, STDERR, WEIGHT, Columns


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _score(value: float | None, stderr: float | None) -> str:
    if _number(value) is None:
        return "-"
    if _number(stderr) is None:
        return f"{value:.4g}"
    return f"{value:.4g}±{stderr:.2g}"


def table_frame(columns: Columns, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: number, source, weights ``w.<label>`` and knobs (3 decimals), fidelity when
    not full, scores ± stderr, then held-out report scores (``report:<task>``)."""
    rows = []
    for _, r in frame.iterrows():
        row = {"trial": int(r["trial"]), "source": r["source"]}
        row.update({f"w.{m}": f"{r[WEIGHT + m]:.3f}" for m in columns.weights})
        row.update({k: f"{r[KNOB + k]:.3f}" for k in columns.knobs})
        if (frame["fidelity"].fillna("full") != "full").any():
            row["fidelity"] = r["fidelity"]
        row.update({o: _score(r[SCORE + o], r[STDERR + o]) for o in columns.objectives})
        row.update({f"report:{t}": _score(r[REPORT + t], r[REPORT_STDERR + t]) for t in columns.report})
        rows.append(row)
    arrows = {
        o: f"{o} {'↑' if d == 'maximize' else '↓'}" for o, d in zip(columns.objectives, columns.directions, strict=True)
    }
    return pd.DataFrame(rows).rename(columns=arrows)


def format_table(columns: Columns, frame: pd.DataFrame) -> str:
    """``table_frame`` as plain text, for the terminal."""
    return table_frame(columns, frame).to_string(index=False) if len(frame) else "(no complete trials)"


def front_json(columns: Columns, frame: pd.DataFrame) -> str:
    """JSON array of {trial, weights: {label: w}, knobs, scores: {objective: value}, report: {task: value}}."""
    out = [
        {
            "trial": int(r["trial"]),
            "weights": {m: float(r[WEIGHT + m]) for m in columns.weights},
            "knobs": {k: float(r[KNOB + k]) for k in columns.knobs},
            "scores": {o: float(r[SCORE + o]) for o in columns.objectives},
            "report": {t: _number(r[REPORT + t]) for t in columns.report},
        }
        for _, r in frame.iterrows()
    ]
    return json.dumps(out, indent=2)


def merge_verdict(columns: Columns, trials: pd.DataFrame, front: pd.DataFrame) -> str:
    """How the searched merges compare with the single checkpoints, in one line."""
    complete = trials[trials["state"] == "COMPLETE"]
    singles = complete[complete["source"].str.startswith("single:")]
    merges = complete[~complete["source"].str.startswith("single:")]
    merges_on_front = int((~front["source"].str.startswith("single:")).sum())
    scores = [SCORE + o for o in columns.objectives]
    maximize = [d == "maximize" for d in columns.directions]
    beaten = [
        s["source"].removeprefix("single:")
        for _, s in singles.iterrows()
        if is_dominated(s[scores].to_numpy(float), merges[scores].to_numpy(float), maximize)
    ]
    return (
        f"{merges_on_front} of {len(front)} front points are merges that no single checkpoint dominates; "
        f"single checkpoints dominated by a merge: {', '.join(beaten) or 'none'}"
    )
