"""One self-contained HTML page about a run: front plot, front table, front weights, baselines, metadata, cost.

Everything is inline (SVG figures, CSS), with no script and no CDN, so the page works offline and
can be mailed or attached to a model card.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from optimizer.front.plots import front_figure, svg
from optimizer.front.table import table_frame
from optimizer.run.directory import RunMeta, read_meta
from optimizer.store.rows import TrialState
from optimizer.store.trials import FRONT, TRIALS, TrialTable, read_trials

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; }
"""


def _weights_figure(front: TrialTable) -> str:
    """Stacked horizontal bars: one bar per front trial, one colour per weight label."""
    columns, weights = front.columns, front.weights()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(front) + 1.2))
    left = pd.Series(0.0, index=range(len(front)))
    names = [f"trial {t}" for t in front.numbers]
    for label in columns.weights:
        values = weights[label].fillna(0.0).clip(lower=0.0).reset_index(drop=True)
        ax.barh(names, values, left=left, label=label)
        left += values
    ax.set_xlabel("weight (negative box weights are not drawn)")
    ax.invert_yaxis()
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(front) < 4 else -0.08),
        ncol=min(6, len(columns.weights)),
        fontsize=8,
    )
    return svg(fig)


def _metadata(run_dir: Path, meta: RunMeta, trials: TrialTable, front: TrialTable) -> str:
    complete = trials.complete()
    imported = f" ({n} imported from earlier runs)" if (n := len(complete.imported())) else ""
    busy = complete.timings().fillna(0.0).to_numpy().sum()
    wall = trials.span_seconds()
    rows = {
        "run": str(run_dir),
        "started": meta.started_at,
        "members": ", ".join(meta.member_names),
        "merge": f"{meta.merge_method} over a {meta.space_kind} space",
        "sampler": meta.sampler_name,
        "trials": f"{len(complete)} complete{imported}, {trials.count(TrialState.FAIL)} failed; {len(front)} on the front",
        "cost": f"{busy / 3600:.3f} worker-hours (merge + swap + evaluation); {wall:.1f} s from first trial to last",
    }
    return (
        "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows.items()) + "</dl>"
    )


def write_report(run_dir: Path, out: Path) -> None:
    """Write the run's HTML page to ``out``, from ``run_dir``'s stored tables and ``run.json`` (no study is opened)."""
    meta = read_meta(run_dir)
    front = read_trials(run_dir, FRONT).sorted_by(None)
    trials = read_trials(run_dir, TRIALS)
    baselines = trials.complete().baselines()
    title = f"mergefront run '{meta.name}'"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _metadata(run_dir, meta, trials, front),
        "<h2>Trade-offs</h2>",
        f"<figure id='front-plot'>{svg(front_figure(trials, front))}</figure>",
        f"<h2>Pareto front ({len(front)} trials)</h2>",
        table_frame(front).to_html(index=False, table_id="front-table", border=0),
        "<h2>Weights of the front</h2>",
        f"<figure id='front-weights'>{_weights_figure(front)}</figure>",
        "<h2>Baselines</h2>",
        table_frame(baselines).to_html(index=False, table_id="baselines-table", border=0),
        "</body></html>",
    ]
    out.write_text("\n".join(parts))
