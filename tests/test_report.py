"""Plots and the HTML report of a finished run (dummy scores, held-out tasks); the interactive plot and the report
are rendered in a real headless Chromium: a hover is opened and read back, the page's width is measured."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from optimizer.cli import main
from optimizer.front.interactive import front_plotly, weights_plotly
from optimizer.front.measures import chosen_pairs, measures
from optimizer.front.plots import static_figure
from optimizer.front.report_table import trials_table
from optimizer.store.columns import Columns
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from optimizer.store.trials import TRIALS, TrialTable, read_trials
from tests.helpers import search, tiny_experiment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "Chromium is not installed here; .ci/run installs Debian's chromium"
# the flags this machine needs: no sandbox as root, and no background connections to a closed network
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=20000",  # page time, not wall time: the scripts (plotly.js, ours) run to their end
    "--enable-logging=stderr",
    "--v=0",
]
HANG = 600  # seconds for one Chromium run; bounds a hang only (a loaded machine starts it slowly)
REVERSE = "  - {task: toy_reverse, metric: acc, direction: maximize}\n"
MORE = "  - {task: toy_sort, metric: acc}\n  - {task: toy_shift, metric: acc}\n"  # maximised: lm-eval's default
HELD_OUT = "held_out: [toy_add_report, toy_reverse_report, toy_sort_report, toy_shift_report]\n"
WIDTH = 1280  # the narrowest page the report must fit


@pytest.fixture(scope="module")
def run(tiny_pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 12-trial dummy search of the tiny pool on four objectives (a perplexity and three accuracies),
    its front scored on four held-out tasks: as wide a table as the demo's."""
    root = tmp_path_factory.mktemp("held-out-run")
    exp = tiny_experiment(tiny_pool, root, HELD_OUT, trials=12)
    exp.write_text(exp.read_text().replace(REVERSE, REVERSE + MORE))
    search(exp, root / "runs", "--in-process")
    return root / "runs" / "tiny"


def _chromium(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=True,
    )


def _with_script(page: Path, script: str) -> Path:
    """A copy of ``page`` that runs ``script`` once the page has loaded."""
    copy = page.with_name(f"probe-{page.name}")
    copy.write_text(
        page.read_text().replace("</body>", f"<script>addEventListener('load', () => {{{script}}});</script></body>")
    )
    return copy


def _offline(page: str) -> None:
    """No element of ``page`` loads anything from the network (plotly.js's own code holds links, to map tiles for
    one, that a scatter never follows)."""
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", page, flags=re.DOTALL)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", markup), "nothing may load from the network"
    assert not re.search(r"<script[^>]*src", markup), "plotly.js must be inlined"


def _no_errors(stderr: str) -> None:
    assert "Uncaught" not in stderr and not re.search(r"CONSOLE.*(error|Error)", stderr), stderr


def test_static_plots_carry_trial_numbers(run: Path, tmp_path: Path) -> None:
    magic = {".png": b"\x89PNG\r\n\x1a\n", ".svg": b"<?xml", ".pdf": b"%PDF-"}
    for suffix, start in magic.items():
        assert main(["plot", str(run), "--out", str(tmp_path / f"front{suffix}")]) == 0
        assert (tmp_path / f"front{suffix}").read_bytes().startswith(start), suffix
    image = matplotlib.image.imread(tmp_path / "front.png")
    assert image.shape[0] > 300 and image.shape[1] > 400 and image[..., :3].std() > 0.05
    labels = set(re.findall(r"<text[^>]*>([^<]*)</text>", (tmp_path / "front.svg").read_text()))
    trials = read_trials(run, TRIALS).complete()
    front = read_trials(run)
    assert {f"#{r.trial}" for r in front.records() if not r.source.is_baseline} <= labels, labels
    assert {f"{r.source.short} #{r.trial}" for r in trials.baselines().records()} <= labels, labels  # add #0, ...


def test_held_out_scores_are_plotted_for_the_front(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "held-out.svg"
    assert main(["plot", str(run), "--x", "toy_reverse/acc", "--y", "toy_sort_report/acc", "--out", str(out)]) == 0
    svg = out.read_text()
    assert "toy_sort_report/acc ↑ (held-out)" in svg  # its direction: that of the objectives with the same metric
    front = read_trials(run)
    others = set(read_trials(run, TRIALS).numbers) - set(front.numbers)
    labels = set(re.findall(r"<text[^>]*>#(\d+)</text>", svg))
    assert {str(t) for t in front.numbers} >= labels and not labels & {str(t) for t in others}
    assert svg.count("<text") > 2


def test_html_plot_is_offline_and_its_hover_names_trial_weights_and_scores(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "front.html"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    _offline(page)
    assert "* plotly.js v" in page and page.count("<script") == 2  # plotly.js inlined, then the figure
    for r in read_trials(run).records():
        weights = ", ".join(f"{m} {r.weights[m]:.3f}" for m in ("add", "reverse", "sort", "shift"))
        assert f"trial {r.trial} ({r.source})" in page and f"weights: {weights}" in page, r.trial


def test_scatter_matrix_is_the_lower_triangle() -> None:
    columns = Columns(weights=("a", "b"), objectives=("p", "q", "r", "s"), directions=("maximize",) * 4)
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    sources = [TrialSource.single("a"), TrialSource.single("b"), TrialSource.uniform(), *[TrialSource.sampler()] * 5]
    records = [
        TrialRecord(
            trial=n,
            state=TrialState.COMPLETE,
            source=source,
            weights={"a": 0.5, "b": 0.5},
            scores={o: float(v) for o, v in zip(columns.objectives, rng.random(4), strict=True)},
            stderr={},
            merge_seconds=None,
            eval_seconds=None,
            worker=None,
            device=None,
            started_at=now,
            finished_at=now,
        )
        for n, source in enumerate(sources)
    ]
    trials, front = TrialTable.of(columns, records), TrialTable.of(columns, records[:5])
    choices = measures(columns)
    pairs = chosen_pairs(choices, None, None)
    assert [(x.label, y.label) for x, y in pairs] == [
        ("p", "q"),
        ("p", "r"),
        ("q", "r"),
        ("p", "s"),
        ("q", "s"),
        ("r", "s"),
    ]
    figure = static_figure(trials, front, pairs)
    assert sum(ax.axison for ax in figure.axes) == 6 and len(figure.axes) == 9  # 3 x 3, the upper 3 left empty
    interactive = front_plotly(trials, front, pairs, choices)
    panels = {(t.xaxis, t.yaxis) for t in interactive.data}
    assert len(panels) == 6
    assert len(static_figure(trials, front, chosen_pairs(choices, "p", "r")).axes) == 1


def test_front_table_puts_search_and_held_out_side_by_side_and_marks_the_best() -> None:
    columns = Columns(
        weights=("a", "b"),
        objectives=("acc1", "acc2", "ppl"),
        directions=("maximize", "maximize", "minimize"),
        held_out=("h1", "h2"),
        held_out_directions=("maximize", ""),  # h2's direction unknown: its column is not marked
    )
    now = datetime.now(UTC)
    rows = [((0.5, 0.7, 9.0), (0.4, 0.6)), ((0.9, 0.1, 3.0), (0.2, 0.3)), ((0.6, 0.7, 5.0), (0.5, 0.1))]
    records = [
        TrialRecord(
            trial=n,
            state=TrialState.COMPLETE,
            source=TrialSource.sampler(),
            weights={"a": 1.5, "b": -0.5},
            scores=dict(zip(columns.objectives, scores, strict=True)),
            stderr={},
            merge_seconds=None,
            eval_seconds=None,
            worker=None,
            device=None,
            started_at=now,
            finished_at=now,
            held_out=dict(zip(columns.held_out, held_out, strict=True)),
        )
        for n, (scores, held_out) in enumerate(rows)
    ]
    table = TrialTable.of(columns, records)
    page = trials_table(table, measures(columns), Path("runs/my run"), "exp", "t")
    heads = [html.unescape(h).replace("\xa0", " ") for h in re.findall(r"<th[^>]*>([^<]*)</th>", page)]
    assert heads[2:] == ["search objectives", "held-out tasks", "acc1 ↑", "acc2 ↑", "ppl ↓", "mean ↑", "h1 ↑", "h2"]
    cells = [
        re.findall(r"<td( class='best')?>([^<]*)", row) for row in re.findall(r"<tr class='trial'>(.*?)</tr>", page)
    ]
    values = [[text for _, text in row] for row in cells]
    assert values[0] == ["0.500", "0.700", "9.000", "0.600", "0.400", "0.600"]  # mean of acc1, acc2; ppl left out
    best = [[text for mark, text in row if mark] for row in cells]
    # per column: acc1 max in row 1, acc2 max in rows 0 and 2, ppl min in row 1, mean max in row 2, h1 max in row 2;
    # h2 has no known direction and no mark; the held-out group has one maximised task, so no mean
    assert best == [["0.700"], ["0.900", "3.000"], ["0.700", "0.650", "0.500"]]
    assert page.count("mergefront export 'runs/my run' --trial 1 --out exp-trial-1") == 1
    assert "b <b>-0.500</b>" in page
    bars = weights_plotly(table)
    assert bars.layout.barmode == "relative" and list(bars.data[1].x) == [-0.5] * 3  # negative weights are drawn


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_plot_hover_opens_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "front.html"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    probe = _with_script(
        out,
        """const gd = document.getElementById('front-plot');
        const curve = gd._fullData.findIndex(t => t.legendgroup === 'front');
        Plotly.Fx.hover(gd, [{curveNumber: curve, pointNumber: 0}]);
        const label = gd.querySelector('.hoverlayer .hovertext');
        document.body.setAttribute('data-hover', label ? label.textContent : 'no hover label');""",
    )
    dom = _chromium(probe, tmp_path / "profile", "--dump-dom")
    _no_errors(dom.stderr)
    hover = re.search(r'data-hover="([^"]*)"', dom.stdout)
    assert hover is not None, dom.stdout[-2000:]
    first = next(r for r in read_trials(run).records() if not r.source.is_baseline)
    assert hover.group(1).startswith(f"trial {first.trial} (sampler)weights: add {first.weights['add']:.3f}")
    assert f"toy_reverse/acc ↑: {first.scores['toy_reverse/acc']:.4g}" in hover.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_fits_the_page_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    _offline(page)
    assert page.count("* plotly.js v") == 1  # once, for both figures
    probe = _with_script(
        out,
        """const root = document.documentElement, table = document.querySelector('#front-table').parentElement;
        document.body.setAttribute('data-width', [root.scrollWidth, innerWidth, table.scrollWidth, table.clientWidth].join(' '));
        document.body.setAttribute('data-points', document.querySelectorAll('#front-plot .scatterlayer .point').length);""",
    )
    dom = _chromium(probe, tmp_path / "profile", f"--window-size={WIDTH},1000", "--dump-dom")
    _no_errors(dom.stderr)
    found = re.search(r'data-width="(\d+) (\d+) (\d+) (\d+)"', dom.stdout)
    assert found is not None, dom.stdout[-2000:]
    page_width, window, table_width, table_box = map(int, found.groups())
    assert window == WIDTH and page_width <= window and table_width <= table_box, found.groups()
    points = re.search(r'data-points="(\d+)"', dom.stdout)
    panels = 3 + 2 + 1  # four objectives: the lower triangle of a 4 x 4 matrix, each trial once per panel
    assert points is not None and int(points.group(1)) == panels * len(read_trials(run, TRIALS).complete())
    front = read_trials(run)
    table = re.search(r'<table id="front-table"[^>]*>.*?</table>', dom.stdout, re.DOTALL)
    assert table is not None, "the front table is missing"
    rows = re.findall(r'<tr class="trial">.*?</tr>\s*<tr class="detail">.*?</tr>', table.group(0), re.DOTALL)
    assert len(rows) == len(front)
    for trial, row in zip(front.sorted_by(None).numbers, rows, strict=True):  # best first on the first objective
        assert (
            f'class="number">{trial}<' in row
            and f"mergefront export {run} --trial {trial} --out tiny-trial-{trial}" in row
        )
    assert table.group(0).count('class="best"') >= 4 + 1 + 4 + 1  # objectives, their mean, held-out tasks, theirs

    shot = tmp_path / "report.png"
    _chromium(out, tmp_path / "profile", f"--window-size={WIDTH},2400", f"--screenshot={shot}")
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[1] == WIDTH and (pixels.mean(axis=2) < 0.9).mean() > 0.02, "the page rendered (nearly) blank"
