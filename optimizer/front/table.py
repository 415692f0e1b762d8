"""Text and JSON views of a front (or of all trials) read from the Parquet store, and the verdict a search ends
with."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from evaluators.scoring.score import score_text
from optimizer.store.pareto import is_dominated
from optimizer.store.rows import TrialRecord
from optimizer.store.trials import TrialTable

WIDTH = 100  # terminal columns the table is wrapped to (``--wide``: not wrapped)
ARROWS = {"maximize": "↑", "minimize": "↓"}


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _float(value: float | None) -> float:
    """A stored value, NaN where it is missing (a failed trial's weights)."""
    return math.nan if value is None else float(value)


def parameter_names(keys: Sequence[str]) -> dict[str, str]:
    """Each merge parameter's name (``lambda``) by its stored key (``scale``), for what users read. The
    declarations import torch, so only a run that searched parameters pays for it."""
    if not keys:
        return {}
    from evaluators.merge import parameter_names as declared_names

    return declared_names(keys)


def score_title(label: str, direction: str | None, held_out: bool = False) -> str:
    """A score's column or axis title: label, direction arrow (none when unknown), ``(held-out)``."""
    arrow = ARROWS.get(direction or "", "")
    return " ".join(part for part in (label, arrow, "(held-out)" if held_out else "") if part)


def _title(table: TrialTable, label: str, held_out: bool = False) -> str:
    """``score_title`` with the direction the table's columns store for ``label``."""
    return score_title(label, table.columns.direction_of(label), held_out)


def table_frame(table: TrialTable, front: Collection[int] | None = None) -> pd.DataFrame:
    """One row per trial: its number (marked ``*`` when ``front`` is given and holds it), source, where an imported
    trial was evaluated (when any was), fidelity when not full, scores ± stderr, held-out scores, then the weights
    ``w.<label>`` and knobs; every number with 3 decimals."""
    columns, records = table.columns, table.records()
    names = parameter_names(columns.knobs)
    screened = any(r.fidelity is not None and not r.fidelity.is_full for r in records)
    imported = any(r.imported for r in records)
    rows = []
    for r in records:
        row: dict[str, object] = {"trial": f"{r.trial}{'*' if front is not None and r.trial in front else ''}"}
        row["source"] = str(r.source)
        if imported:
            row["imported from"] = str(r.imported_from or "-")
        if screened:
            row["fidelity"] = None if r.fidelity is None else str(r.fidelity)
        row.update({_title(table, o): score_text(r.scores.get(o), r.stderr.get(o)) for o in columns.objectives})
        row.update(
            {_title(table, t, True): score_text(r.held_out.get(t), r.held_out_stderr.get(t)) for t in columns.held_out}
        )
        row.update({f"w.{m}": f"{_float(r.weights.get(m)):.3f}" for m in columns.weights})
        row.update({names[k]: f"{_float(r.knobs.get(k)):.3f}" for k in columns.knobs})
        rows.append(row)
    return pd.DataFrame(rows)


def format_table(table: TrialTable, front: Collection[int] | None = None, wide: bool = False) -> str:
    """``table_frame`` as plain text for the terminal: one table, or with more than ``WIDTH`` columns (unless
    ``wide``) one block each for the scores, the held-out scores and the weights, each cut into pieces that fit and
    each piece keyed by trial; a ``*`` after the number marks front trials when ``front`` is given."""
    if not len(table):
        return "(no complete trials)"
    frame = table_frame(table, front)
    note = "\n(* on the Pareto front)" if front is not None else ""
    text = frame.to_string(index=False)
    if wide or max(map(len, text.splitlines())) <= WIDTH:
        return text + note
    knobs = set(parameter_names(table.columns.knobs).values())
    held = [c for c in frame.columns if c.endswith("(held-out)")]
    weights = [c for c in frame.columns if c.startswith("w.") or c in knobs]
    scores = [c for c in frame.columns if c not in ("trial", *held, *weights)]
    frame = frame.rename(columns={c: c.removesuffix(" (held-out)") for c in held})  # the block's title says it
    held = [c.removesuffix(" (held-out)") for c in held]
    blocks = [("", scores), ("held-out tasks", held), ("weights", weights)]
    texts = [
        (f"{title}:\n" if title else "") + frame[["trial", *piece]].to_string(index=False)
        for title, columns in blocks
        for piece in _pieces(frame, columns)
    ]
    return "\n\n".join(texts) + note


def _pieces(frame: pd.DataFrame, columns: list[str]) -> list[list[str]]:
    """``columns`` cut, in order, into runs that fit ``WIDTH`` beside the trial column (a column wider than that
    alone is a run of its own)."""

    def width(c: str) -> int:
        return 1 + max(len(c), int(frame[c].astype(str).str.len().max()))

    pieces: list[list[str]] = []
    used = WIDTH
    for c in columns:
        if used + width(c) > WIDTH:
            pieces.append([])
            used = width("trial")
        pieces[-1].append(c)
        used += width(c)
    return pieces


def front_json(table: TrialTable, front: Collection[int]) -> str:
    """JSON array, one object per trial: trial, state, error, source, imported_from, on_front, weights, knobs (by name), scores,
    stderr, held_out, held_out_stderr (null where missing)."""
    columns = table.columns
    names = parameter_names(columns.knobs)
    out = [
        {
            "trial": r.trial,
            "state": r.state.value,
            "error": r.error,
            "source": str(r.source),
            "imported_from": None if r.imported_from is None else str(r.imported_from),
            "on_front": r.trial in front,
            "weights": {m: _number(r.weights.get(m)) for m in columns.weights},
            "knobs": {names[k]: _number(r.knobs.get(k)) for k in columns.knobs},
            "scores": {o: _number(r.scores.get(o)) for o in columns.objectives},
            "stderr": {o: _number(r.stderr.get(o)) for o in columns.objectives},
            "held_out": {t: _number(r.held_out.get(t)) for t in columns.held_out},
            "held_out_stderr": {t: _number(r.held_out_stderr.get(t)) for t in columns.held_out},
        }
        for r in table.records()
    ]
    return json.dumps(out, indent=2)


def _best(records: Sequence[TrialRecord], label: str, direction: str) -> TrialRecord | None:
    """The record with the best score on ``label`` (the first of equals), None without records."""
    scored = [r for r in records if _number(r.scores.get(label)) is not None]
    if not scored:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    return max(scored, key=lambda r: sign * r.scores[label])


def merge_verdict(trials: TrialTable, front: TrialTable) -> str:
    """What the search found, in a few lines: how many front points are merges; per objective the best single
    checkpoint against the best merge; which single checkpoints some merge dominates (better or equal everywhere,
    better somewhere)."""
    columns = trials.columns
    full = trials.full()  # scores on a screening subset are not comparable
    singles, merges = full.singles().records(), full.merges().records()
    n = len(front.singles())
    counts = f"{len(front.merges())} of {len(front)} front points are merges, {n} single checkpoint{'s' * (n != 1)}"
    lines = [f"verdict: {counts}"]
    for label, direction in zip(columns.objectives, columns.directions, strict=True):
        single, merge = _best(singles, label, direction), _best(merges, label, direction)
        parts = [
            f"best {kind} {r.scores[label]:.3f} ({r.source.short + ', ' if r.source.is_baseline else ''}trial {r.trial})"
            for kind, r in (("single", single), ("merge", merge))
            if r is not None
        ]
        lines.append(f"  {_title(trials, label)}: {'; '.join(parts)}")
    maximize = [d == "maximize" for d in columns.directions]
    merge_scores = np.array([[r.scores[o] for o in columns.objectives] for r in merges], dtype=float)
    beaten = []
    for s in singles:
        scores = np.array([s.scores[o] for o in columns.objectives], dtype=float)
        if is_dominated(scores, merge_scores, maximize):
            beaten.append(f"{s.source.short} (trial {s.trial})")
    lines.append(f"  single checkpoints a merge dominates: {', '.join(beaten) or 'none'}")
    return "\n".join(lines)
