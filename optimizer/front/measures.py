"""What the plots and the report show of a trial: its measures (search objectives and held-out tasks), the points
of one pair of measures, and the hover text of a point.

A measure is named by its label, as in the trial table. Held-out tasks are scored for front trials only, so a pair
with a held-out measure holds the front's points and no front line (the front is that of the search objectives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluators.core.errors import ConfigError
from evaluators.core.registry import did_you_mean
from evaluators.scoring.score import score_text
from optimizer.front.table import parameter_names, score_title
from optimizer.store.pareto import pareto_mask
from optimizer.store.rows import Columns, TrialRecord
from optimizer.store.trials import TrialTable

COLOURS = {"trials": "#b0b0b0", "front": "#d62728", "baselines": "#1f77b4"}  # by layer kind, in every picture


@dataclass(frozen=True)
class Measure:
    """One search objective or held-out task; ``direction`` is None for a held-out task whose direction is unknown."""

    label: str
    held_out: bool
    direction: str | None

    @property
    def title(self) -> str:
        """The axis or column title: label, direction arrow, ``(held-out)`` for a held-out task."""
        return score_title(self.label, self.direction, self.held_out)

    @property
    def maximized(self) -> bool:
        """Known to be maximised."""
        return self.direction == "maximize"

    def value(self, record: TrialRecord) -> float | None:
        """The trial's score on this measure (None where it has none)."""
        return (record.held_out if self.held_out else record.scores).get(self.label)

    def stderr(self, record: TrialRecord) -> float | None:
        """The score's standard error (None where the scorer gives none)."""
        stderr = (record.held_out_stderr if self.held_out else record.stderr).get(self.label)
        return None if stderr is None or math.isnan(stderr) else stderr


def measures(columns: Columns) -> list[Measure]:
    """The run's search objectives, then its held-out tasks (their direction as stored with the trials: lm-eval's
    ``higher_is_better`` for the metric, unless the experiment gave one; unknown for runs from before it was
    stored)."""
    searched = [Measure(o, False, d) for o, d in zip(columns.objectives, columns.directions, strict=True)]
    return searched + [Measure(t, True, columns.direction_of(t) or None) for t in columns.held_out]


def _pick(choices: Sequence[Measure], label: str, option: str) -> Measure:
    found = next((m for m in choices if m.label == label), None)
    if found is None:
        labels = [m.label for m in choices]
        raise ConfigError(
            f"{option}: '{label}' is neither an objective nor a held-out task of this run"
            f"{did_you_mean(label, labels)}; choices: {', '.join(labels)}"
        )
    return found


def chosen_pairs(choices: Sequence[Measure], x: str | None, y: str | None) -> list[tuple[Measure, Measure]]:
    """The pairs to plot, as (x, y): the one ``--x``/``--y`` name, else the run's two objectives, else the lower
    triangle of every pair of objectives. ConfigError for a label that is not one of ``choices``, one of --x/--y
    alone, or one measure on both axes."""
    picked = {option: _pick(choices, label, option) for option, label in (("--x", x), ("--y", y)) if label}
    labels = ", ".join(m.label for m in choices)
    if len(picked) == 1:
        given, missing = ("--x", "--y") if "--x" in picked else ("--y", "--x")
        raise ConfigError(f"{given} needs {missing}: name the measure of each axis; choices: {labels}")
    if picked:
        if x == y:
            raise ConfigError(f"--x and --y are both '{x}': plot two different measures; choices: {labels}")
        return [(picked["--x"], picked["--y"])]
    objectives = [m for m in choices if not m.held_out]
    if len(objectives) < 2:
        raise ConfigError(f"this run has one objective: choose the axes with --x and --y; choices: {labels}")
    return [(objectives[c], objectives[r]) for r in range(1, len(objectives)) for c in range(r)]


def grid(pairs: Sequence[tuple[Measure, Measure]]) -> tuple[list[Measure], list[Measure]]:
    """The rows (y measures) and columns (x measures) of the panels of ``pairs``, in order: one row and column for
    one pair; for the lower triangle, pair (x, y) sits in row ``rows.index(y)`` and column ``columns.index(x)``."""
    rows = list(dict.fromkeys(y for _, y in pairs))
    return rows, list(dict.fromkeys(x for x, _ in pairs))


@dataclass(frozen=True)
class Layer:
    """One kind of point of a pair: ``trials`` (the others), ``front`` or ``baselines``; ``labels`` are the texts
    drawn beside the points (trial numbers, baseline names), to the left of a point in the right half of the pair's
    x range (``leftward``) so that they stay inside the panel."""

    kind: str
    records: list[TrialRecord]
    x: list[float]
    y: list[float]
    labels: list[str]
    leftward: list[bool]


def point_label(record: TrialRecord) -> str:
    """What a point is called on a plot: ``#7``, or ``add #0`` for a baseline."""
    return f"{record.source.short} #{record.trial}" if record.source.is_baseline else f"#{record.trial}"


def _layer(kind: str, records: list[TrialRecord], x: Measure, y: Measure, middle: float) -> Layer:
    kept = [r for r in records if x.value(r) is not None and y.value(r) is not None]
    xs, ys = [float(x.value(r) or 0.0) for r in kept], [float(y.value(r) or 0.0) for r in kept]
    labels = [point_label(r) for r in kept] if kind != "trials" else [""] * len(kept)
    return Layer(kind, kept, xs, ys, labels, [v > middle for v in xs])


def pair_layers(trials: TrialTable, front: TrialTable, x: Measure, y: Measure) -> list[Layer]:
    """The points of one pair: the other complete trials, the front's merges, then the baselines (a baseline on the
    front is drawn as a baseline); points without both values are left out, and so are empty layers (a held-out
    measure has no other trials), which would show in a legend."""
    on_front = set(front.numbers)
    complete = trials.complete().records()
    xs = [v for r in complete if (v := x.value(r)) is not None]
    middle = (min(xs) + max(xs)) / 2 if xs else 0.0
    layers = [
        _layer("trials", [r for r in complete if r.trial not in on_front and not r.source.is_baseline], x, y, middle),
        _layer("front", [r for r in front.records() if not r.source.is_baseline], x, y, middle),
        _layer("baselines", [r for r in complete if r.source.is_baseline], x, y, middle),
    ]
    return [layer for layer in layers if layer.records]


def front_line(front: TrialTable, x: Measure, y: Measure) -> tuple[list[float], list[float]]:
    """The front points undominated in this pair of objectives (all of them with two), sorted by x; empty when a
    measure is held out or a direction unknown."""
    if x.held_out or y.held_out or x.direction is None or y.direction is None:
        return [], []
    points = np.array([[x.value(r), y.value(r)] for r in front.records()], dtype=float).reshape(-1, 2)
    kept = points[pareto_mask(points, [x.maximized, y.maximized])] if len(points) else points
    kept = kept[np.argsort(kept[:, 0], kind="stable")]
    return [float(v) for v in kept[:, 0]], [float(v) for v in kept[:, 1]]


def hover_lines(record: TrialRecord, columns: Columns, choices: Sequence[Measure]) -> list[str]:
    """A point's hover text, line by line: trial and source, weights and knobs, then every score ± stderr."""
    names = parameter_names(columns.knobs)
    weights = [f"{m} {record.weights.get(m, math.nan):.3f}" for m in columns.weights]
    rows = [", ".join(weights[i : i + 4]) for i in range(0, len(weights), 4)]  # four a line: many members stay legible
    knobs = ", ".join(f"{names[k]} {record.knobs.get(k, math.nan):.3f}" for k in columns.knobs)
    lines = [f"trial {record.trial} ({record.source})", *(f"weights: {row}" for row in rows)]
    lines += [f"knobs: {knobs}"] if knobs else []
    scored = [m for m in choices if m.value(record) is not None]
    return lines + [f"{m.title}: {score_text(m.value(record), m.stderr(record))}" for m in scored]
