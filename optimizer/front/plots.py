"""Static pictures of a run for papers (matplotlib, PNG, SVG or PDF): trials as points, the front as a line,
front points labelled with their trial numbers and baselines with member and trial number.

One pair of measures gives one scatter; more than two objectives give the lower triangle of a scatter matrix
(each pair once). The interactive HTML plot is ``optimizer.front.interactive``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: smaller, selectable, searchable

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evaluators.core.errors import ConfigError
from optimizer.front.measures import COLOURS, Measure, front_line, grid, pair_layers
from optimizer.store.trials import TrialTable

STATIC = (".png", ".svg", ".pdf")
STYLES: dict[str, dict[str, Any]] = {
    "trials": {"s": 14, "color": COLOURS["trials"], "label": "other trials"},
    "front": {"s": 24, "color": COLOURS["front"], "label": "Pareto front (trial number)", "zorder": 3},
    "baselines": {
        "s": 44,
        "marker": "s",
        "facecolors": "none",
        "edgecolors": COLOURS["baselines"],
        "label": "baselines (member, trial number)",
        "zorder": 3,
    },
}


def _draw_pair(ax: Axes, trials: TrialTable, front: TrialTable, pair: tuple[Measure, Measure], size: float) -> None:
    x, y = pair
    line_x, line_y = front_line(front, x, y)
    ax.plot(line_x, line_y, "-", color=COLOURS["front"], linewidth=1)
    for layer in pair_layers(trials, front, x, y):
        ax.scatter(layer.x, layer.y, **STYLES[layer.kind])
        for text, px, py, left in zip(layer.labels, layer.x, layer.y, layer.leftward, strict=True):
            if text:
                ax.annotate(
                    text,
                    (px, py),
                    fontsize=size,
                    color=COLOURS[layer.kind],
                    xytext=(-3 if left else 3, 3),
                    textcoords="offset points",
                    ha="right" if left else "left",
                )


def static_figure(trials: TrialTable, front: TrialTable, pairs: list[tuple[Measure, Measure]]) -> Figure:
    """One scatter per pair, laid out as ``grid`` says (one panel, or the lower triangle of a matrix)."""
    rows, columns = grid(pairs)
    side = 7.0 if len(pairs) == 1 else 3.0
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(side * len(columns), side * len(rows) * (5 / 7 if len(pairs) == 1 else 1)),
        squeeze=False,
        sharex="col",
        sharey="row",
    )
    for ax in axes.flat:
        ax.axis("off")  # the upper triangle stays empty; the pairs' panels are turned back on
    for x, y in pairs:
        ax = axes[rows.index(y)][columns.index(x)]
        ax.axis("on")
        _draw_pair(ax, trials, front, (x, y), 8 if len(pairs) == 1 else 6)
        ax.set_xlabel(x.title if rows.index(y) == len(rows) - 1 else "")
        ax.set_ylabel(y.title if columns.index(x) == 0 else "")
    if len(pairs) == 1:
        axes[0][0].legend(loc="best", fontsize=8)
    else:
        handles, labels = axes[-1][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=9)  # in the empty upper triangle
    fig.tight_layout()
    return fig


def save_static(fig: Figure, out: Path) -> None:
    """Write ``fig`` in the format ``out``'s suffix names (one of ``STATIC``)."""
    fig.savefig(out, format=out.suffix.removeprefix("."), dpi=150, bbox_inches="tight")
    plt.close(fig)


def check_output_file(out: Path, suffixes: tuple[str, ...]) -> None:
    """Refuse an output name with another suffix, or in a folder that does not exist."""
    if out.suffix not in suffixes:
        names = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise ConfigError(f"--out {out}: use a {names} file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; create it or choose another --out")
