"""The report's trial tables as HTML: per trial, the search objectives and the held-out tasks side by side, each
group with its mean, the best value of each column marked; a second, compact line holds the weights (and knobs)
and the command that exports the trial.

The mean of a group is that of its maximised measures only (accuracies and the like, on one 0-1 scale);
minimised ones (perplexity-like, unbounded and on other scales) are left out, and so is a held-out task whose
direction is unknown. A group with fewer than two maximised measures has no mean (it would repeat a column).
"""

from __future__ import annotations

import html
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optimizer.front.measures import Measure
from optimizer.front.table import ARROWS, parameter_names
from optimizer.store.rows import TrialRecord
from optimizer.store.trials import TrialTable


@dataclass(frozen=True)
class ScoreColumn:
    """One column of scores: its label, tooltip, direction (None: unknown, no best marked) and how to read a trial."""

    label: str
    tooltip: str
    direction: str | None
    value: Callable[[TrialRecord], float | None]
    stderr: Callable[[TrialRecord], float | None]

    def header(self) -> str:
        """The column's header cell: a long label may break after ``/`` or ``_``, never before its arrow."""
        label = html.escape(self.label).replace("/", "/<wbr>").replace("_", "_<wbr>")
        arrow = ARROWS.get(self.direction or "")
        return f"<th title='{html.escape(self.tooltip)}'>{label}{'&nbsp;' + arrow if arrow else ''}</th>"


def _measure_column(m: Measure) -> ScoreColumn:
    direction = {"maximize": "higher is better", "minimize": "lower is better"}.get(
        m.direction or "", "direction unknown"
    )
    return ScoreColumn(m.label, f"{m.title}: {direction}", m.direction, m.value, m.stderr)


def _mean_column(group: Sequence[Measure]) -> list[ScoreColumn]:
    """The group's mean column: the mean of its maximised measures (none for fewer than two)."""
    kept = [m for m in group if m.maximized]
    if len(kept) < 2:
        return []

    def mean(record: TrialRecord) -> float | None:
        values = [m.value(record) for m in kept]
        return None if any(v is None for v in values) else math.fsum(v or 0.0 for v in values) / len(values)

    tooltip = f"mean of the maximised scores: {', '.join(m.label for m in kept)}"
    return [ScoreColumn("mean", tooltip, "maximize", mean, lambda _: None)]


def score_groups(choices: Sequence[Measure]) -> list[tuple[str, list[ScoreColumn]]]:
    """The column groups: the search objectives and their mean, then the held-out tasks (if any) and theirs."""
    searched, held_out = [m for m in choices if not m.held_out], [m for m in choices if m.held_out]
    groups = [("search objectives", searched)] + ([("held-out tasks", held_out)] if held_out else [])
    return [(name, [*map(_measure_column, group), *_mean_column(group)]) for name, group in groups]


def _best(column: ScoreColumn, records: Sequence[TrialRecord]) -> float | None:
    values = [v for r in records if (v := column.value(r)) is not None and not math.isnan(v)]
    if column.direction is None or not values:
        return None
    return max(values) if column.direction == "maximize" else min(values)


def _cell(column: ScoreColumn, record: TrialRecord, best: float | None) -> str:
    value, stderr = column.value(record), column.stderr(record)
    text = "-" if value is None or math.isnan(value) else f"{value:.3f}"  # one precision: decimals line up
    if stderr is not None and value is not None:
        text += f"<small>±{stderr:.3f}</small>"
    return f"<td class='best'>{text}</td>" if value is not None and value == best else f"<td>{text}</td>"


def _detail(record: TrialRecord, table: TrialTable, run_dir: Path, name: str) -> str:
    """The second line of a trial: weights, knobs, fidelity when screened, the run and trial an imported one was
    evaluated in, and the export command."""
    columns = table.columns
    names = parameter_names(columns.knobs)
    parts = [" · ".join(f"{m} <b>{record.weights.get(m, math.nan):.3f}</b>" for m in columns.weights)]
    parts += [" · ".join(f"{names[k]} <b>{record.knobs.get(k, math.nan):.3f}</b>" for k in columns.knobs)]
    if record.fidelity is not None and not record.fidelity.is_full:
        parts.append(f"fidelity {record.fidelity}")
    if record.imported_from is not None:
        parts.append(f"<span class='imported'>imported from {html.escape(str(record.imported_from))}</span>")
    command = f"mergefront export {shlex.quote(str(run_dir))} --trial {record.trial} --out {name}-trial-{record.trial}"
    return (
        f"<span class='weights'>{' &nbsp;|&nbsp; '.join(p for p in parts if p)}</span>"
        f"<code class='export' title='export this trial as a model directory'>{html.escape(command, quote=False)}</code>"
    )


def trials_table(table: TrialTable, choices: Sequence[Measure], run_dir: Path, name: str, table_id: str) -> str:
    """``table``'s trials as an HTML table with two lines per trial (class ``trial``, then ``detail``); a group none
    of them has a score in (held-out tasks, among baselines off the front) is left out."""
    records = table.records()
    groups = [(t, g) for t, g in score_groups(choices) if any(c.value(r) is not None for c in g for r in records)]
    flat = [c for _, group in groups for c in group]
    best = [_best(c, records) for c in flat]
    head = "<tr><th rowspan='2' class='left'>trial</th><th rowspan='2' class='left'>source</th>" + "".join(
        f"<th colspan='{len(group)}' class='group'>{html.escape(title)}</th>" for title, group in groups
    )
    head += "</tr><tr>" + "".join(c.header() for c in flat)
    body = []
    for r in records:
        cells = "".join(_cell(c, r, b) for c, b in zip(flat, best, strict=True))
        body.append(
            f"<tr class='trial'><td rowspan='2' class='number'>{r.trial}</td>"
            f"<td class='source'>{html.escape(str(r.source))}</td>{cells}</tr>"
            f"<tr class='detail'><td colspan='{len(flat) + 1}'>{_detail(r, table, run_dir, name)}</td></tr>"
        )
    many = " class='many'" if len(flat) > 8 else ""  # many columns: each standard error under its value, to fit
    return f"<table id='{table_id}'{many}><thead>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
