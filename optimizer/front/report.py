"""One self-contained HTML page about a run: metadata and cost, the interactive front plot, the front table, the
front's weights and the baselines.

plotly.js is inlined once and the CSS is inline, so the page works offline and can be mailed or attached to a
model card. The tables fit a 1280 px wide page; a run with very many measures scrolls its table, not the page.
"""

from __future__ import annotations

import html
from pathlib import Path

from optimizer.front.interactive import figure_div, front_plotly, plotly_script, weights_plotly
from optimizer.front.measures import Measure, chosen_pairs, measures
from optimizer.front.report_table import trials_table
from optimizer.run.directory import RunMeta, read_meta
from optimizer.store.rows import TrialState
from optimizer.store.trials import FRONT, TRIALS, TrialTable, read_trials

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 76em; color: #222; }
h2 { margin-top: 1.6em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 0.5em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; font-weight: 600; }
th.group { text-align: center; background: #e8ecf3; }
td.number, td.source, th.left { text-align: left; white-space: nowrap; }
td.source { white-space: normal; overflow-wrap: anywhere; max-width: 11em; }
table.many td small { display: block; margin-left: 0; }
tr.detail .weights { overflow-wrap: anywhere; }
td.number { font-weight: 600; vertical-align: top; }
td small { color: #777; margin-left: 0.2em; }
td.best { font-weight: 700; background: #e3f4e1; }
tr.detail td { text-align: left; font-size: 0.9em; color: #444; border-top: none; padding-bottom: 0.5em; }
tr.detail b { font-weight: 600; color: #222; }
tr.trial td:not(.number) { border-bottom: none; }
code.export { display: block; margin-top: 0.2em; color: #555; font-size: 0.95em; user-select: all; overflow-wrap: anywhere; }
.note { font-size: 0.85em; color: #555; margin: 0 0 1em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
"""
NOTE = (
    "Per trial: scores ± standard error; <b>bold on green</b>: the best of its column (↑ highest, ↓ lowest). "
    "mean ↑: the mean of the group's maximised scores (a minimised, perplexity-like score is on another scale and "
    "left out). Below each trial: its weights and the command that exports it as a model directory. "
    "Held-out tasks are scored for front trials only."
)


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


def _front_plot(trials: TrialTable, front: TrialTable, choices: list[Measure]) -> str:
    """The plot ``mergefront plot`` draws by default; a run with one objective has none (no pair to plot)."""
    if len(trials.columns.objectives) < 2:
        return "<p>One objective: no trade-off to plot.</p>"
    return figure_div(front_plotly(trials, front, chosen_pairs(choices, None, None), choices), "front-plot")


def write_report(run_dir: Path, out: Path) -> None:
    """Write the run's HTML page to ``out``, from ``run_dir``'s stored tables and ``run.json`` (no study is opened)."""
    meta = read_meta(run_dir)
    front = read_trials(run_dir, FRONT).sorted_by(None)
    trials = read_trials(run_dir, TRIALS)
    baselines = trials.complete().baselines()
    choices = measures(trials.columns)
    title = f"mergefront run '{meta.name}'"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>{plotly_script()}</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _metadata(run_dir, meta, trials, front),
        "<h2>Trade-offs</h2><p class='note'>Hover a point for its trial, weights and scores; drag to zoom.</p>",
        _front_plot(trials, front, choices),
        f"<h2>Pareto front ({len(front)} trials)</h2><p class='note'>{NOTE}</p>",
        f"<div class='scroll'>{trials_table(front, choices, run_dir, meta.name, 'front-table')}</div>",
        "<h2>Weights of the front</h2>",
        figure_div(weights_plotly(front), "front-weights"),
        "<h2>Baselines</h2>",
        f"<div class='scroll'>{trials_table(baselines, choices, run_dir, meta.name, 'baselines-table')}</div>",
        "</body></html>",
    ]
    out.write_text("\n".join(parts))
