"""Pictures of a run: trials as points, the front as a line, baselines labelled (matplotlib, no server).

Two objectives give one scatter; more give a scatter matrix of every pair. Figures are saved as
PNG, or as SVG inside a self-contained HTML page (no script, no CDN), so they work offline.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: smaller, selectable, searchable

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evaluators.core.errors import ConfigError
from evaluators.core.registry import did_you_mean
from optimizer.store.columns import Columns
from optimizer.store.pareto import pareto_mask
from optimizer.store.trials import TrialTable


def _axis_label(columns: Columns, objective: str) -> str:
    direction = columns.directions[columns.objectives.index(objective)]
    return f"{objective} {'↑' if direction == 'maximize' else '↓'}"


def _pair(ax: Axes, trials: TrialTable, front: TrialTable, x: str, y: str, labels: bool) -> None:
    columns, scores, front_scores = trials.columns, trials.scores(), front.scores()
    ax.scatter(scores[x], scores[y], s=14, color="#b0b0b0", label="trials")
    ax.scatter(front_scores[x], front_scores[y], s=22, color="#d62728", label="Pareto front")
    # the line joins the front points that are also undominated in this pair (all of them with 2 objectives)
    maximize = [columns.directions[columns.objectives.index(o)] == "maximize" for o in (x, y)]
    pair_front = front_scores[pareto_mask(front_scores[[x, y]].to_numpy(dtype=float), maximize)].sort_values(x)
    ax.plot(pair_front[x], pair_front[y], "-", color="#d62728")
    baselines = trials.baselines()
    ax.scatter(
        baselines.scores()[x],
        baselines.scores()[y],
        s=40,
        marker="s",
        facecolors="none",
        edgecolors="#1f77b4",
        label="baselines",
    )
    if labels:
        for r in baselines.records():
            ax.annotate(
                r.source.short,
                (r.scores[x], r.scores[y]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
    ax.set_xlabel(_axis_label(columns, x))
    ax.set_ylabel(_axis_label(columns, y))


def check_objective(columns: Columns, name: str | None, option: str) -> None:
    """Refuse (ConfigError naming ``option``) an axis ``name`` that is not one of the run's objectives; None passes."""
    if name is not None and name not in columns.objectives:
        raise ConfigError(
            f"{option}: '{name}' is not an objective of this run{did_you_mean(name, list(columns.objectives))}; objectives: {', '.join(columns.objectives)}"
        )


def front_figure(trials: TrialTable, front: TrialTable, x: str | None = None, y: str | None = None) -> Figure:
    """One scatter for ``x``/``y`` (default: the two objectives), else a scatter matrix of every pair."""
    columns = trials.columns
    check_objective(columns, x, "--x")
    check_objective(columns, y, "--y")
    complete = trials.complete()
    objectives = list(columns.objectives)
    if x or y or len(objectives) == 2:
        x = x or next(o for o in objectives if o != y)
        y = y or next(o for o in objectives if o != x)
        fig, ax = plt.subplots(figsize=(7, 5))
        _pair(ax, complete, front, x, y, labels=True)
        ax.legend(loc="best", fontsize=8)
        return fig
    n = len(objectives)
    fig, axes = plt.subplots(n, n, figsize=(2.6 * n, 2.6 * n), squeeze=False)
    for i, yo in enumerate(objectives):
        for j, xo in enumerate(objectives):
            if i == j:
                axes[i][j].hist(complete.scores()[xo], bins=15, color="#b0b0b0")
                axes[i][j].set_xlabel(_axis_label(columns, xo))
            else:
                _pair(axes[i][j], complete, front, xo, yo, labels=False)
    axes[0][1 if n > 1 else 0].legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def svg(fig: Figure) -> str:
    """The figure as inline SVG markup (text that a page can embed as is)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def save_figure(fig: Figure, out: Path, title: str) -> None:
    """PNG for ``.png``, a standalone page with inline SVG for ``.html``."""
    if out.suffix == ".png":
        fig.savefig(out, dpi=120, bbox_inches="tight")
        plt.close(fig)
    else:
        out.write_text(f"<!doctype html><meta charset='utf-8'><title>{title}</title>\n<h1>{title}</h1>\n{svg(fig)}\n")


def check_output_file(out: Path, suffixes: tuple[str, ...]) -> None:
    """Refuse an output name with another suffix, or in a folder that does not exist."""
    if out.suffix not in suffixes:
        raise ConfigError(f"--out {out}: use a {' or '.join(suffixes)} file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; create it or choose another --out")
