"""Interactive pictures of a run (Plotly) for HTML pages: the front plot of ``mergefront plot FILE.html`` and of
the report, and the report's weights chart. Hovering a point shows its trial number, source, weights and scores.

Pages inline plotly.js once (``PLOTLY_SCRIPT``), so they work offline: nothing is loaded from a CDN.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from optimizer.front.measures import COLOURS, Layer, Measure, front_line, grid, hover_lines, pair_layers, point_label
from optimizer.store.trials import TrialTable

MARKERS: dict[str, dict[str, Any]] = {
    "trials": {"size": 6, "color": COLOURS["trials"]},
    "front": {"size": 9, "color": COLOURS["front"]},
    "baselines": {"size": 11, "symbol": "square-open", "color": COLOURS["baselines"], "line": {"width": 2}},
}
NAMES = {
    "trials": "other trials",
    "front": "Pareto front (trial number)",
    "baselines": "baselines (member, trial number)",
}
CONFIG = {"displaylogo": False, "responsive": True}


def plotly_script() -> str:
    """plotly.js inlined in one script element: what a page needs once, before its figures."""
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a div plus the script that draws it (plotly.js itself is left to ``plotly_script``)."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG))


def _layer_trace(layer: Layer, trials: TrialTable, choices: Sequence[Measure], first: bool) -> go.Scatter:
    hover = ["<br>".join(hover_lines(r, trials.columns, choices)) for r in layer.records]
    return go.Scatter(
        x=layer.x,
        y=layer.y,
        mode="markers" if layer.kind == "trials" else "markers+text",
        marker=MARKERS[layer.kind],
        text=layer.labels,
        textposition=["top left" if left else "top right" for left in layer.leftward],
        textfont={"size": 10, "color": MARKERS[layer.kind]["color"]},
        hovertext=hover,
        hoverinfo="text",
        hoverlabel={"bgcolor": "white", "bordercolor": MARKERS[layer.kind]["color"], "font": {"color": "#222"}},
        name=NAMES[layer.kind],
        legendgroup=layer.kind,
        showlegend=first,
        customdata=[r.trial for r in layer.records],
    )


def front_plotly(
    trials: TrialTable, front: TrialTable, pairs: list[tuple[Measure, Measure]], choices: Sequence[Measure]
) -> go.Figure:
    """One scatter per pair, laid out as ``grid`` says (one panel, or the lower triangle of a matrix); every point's
    hover names its trial, source, weights and its scores on ``choices``."""
    rows, columns = grid(pairs)
    cells = {(rows.index(y), columns.index(x)) for x, y in pairs}
    specs: list[list[dict[str, Any] | None]] = [
        [{} if (r, c) in cells else None for c in range(len(columns))] for r in range(len(rows))
    ]
    fig = make_subplots(
        rows=len(rows),
        cols=len(columns),
        specs=specs,
        shared_xaxes="columns",
        shared_yaxes="rows",
        horizontal_spacing=0.03,
        vertical_spacing=0.03,
    )
    for n, (x, y) in enumerate(pairs):
        row, col = rows.index(y) + 1, columns.index(x) + 1
        line_x, line_y = front_line(front, x, y)
        line = {"color": COLOURS["front"], "width": 1}
        fig.add_trace(
            go.Scatter(x=line_x, y=line_y, mode="lines", line=line, hoverinfo="skip", showlegend=False), row, col
        )
        for layer in pair_layers(trials, front, x, y):
            fig.add_trace(_layer_trace(layer, trials, choices, n == 0), row, col)
        if row == len(rows):
            fig.update_xaxes(title_text=x.title, row=row, col=col)
        if col == 1:
            fig.update_yaxes(title_text=y.title, row=row, col=col)
    single = len(pairs) == 1
    fig.update_layout(
        template="plotly_white",
        height=560 if single else 260 * len(rows) + 80,
        hovermode="closest",
        hoverlabel={"align": "left"},
        margin={"l": 70, "r": 20, "t": 40, "b": 60},
        # one panel: the legend above it; a matrix: the legend in its empty upper triangle
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}
        if single
        else {"x": 1, "y": 1, "xanchor": "right", "yanchor": "top"},
    )
    return fig


def weights_plotly(front: TrialTable) -> go.Figure:
    """One horizontal bar per front trial, one colour per weight label; negative weights (a box space) stack to
    the left of zero."""
    records = front.records()
    names = [point_label(r) for r in records]
    fig = go.Figure(
        [
            go.Bar(
                y=names,
                x=[r.weights.get(label) for r in records],
                name=label,
                orientation="h",
                hovertemplate=f"%{{y}}: {html.escape(label)} %{{x:.3f}}<extra></extra>",
            )
            for label in front.columns.weights
        ]
    )
    fig.update_layout(
        template="plotly_white",
        barmode="relative",
        height=26 * len(records) + 140,
        xaxis_title="weight",
        yaxis={"autorange": "reversed", "type": "category"},
        legend={"title": {"text": "weight label"}},
        margin={"l": 90, "r": 20, "t": 20, "b": 50},
    )
    return fig


def write_plot_page(fig: go.Figure, out: Path, title: str) -> None:
    """A standalone page with the figure and plotly.js inlined (works offline)."""
    out.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>body {{ font-family: system-ui, sans-serif; margin: 1em 2em; }}</style>{plotly_script()}</head>"
        f"<body><h1>{html.escape(title)}</h1>{figure_div(fig, 'front-plot')}</body></html>\n"
    )
