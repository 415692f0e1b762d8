"""Plots and the HTML report of a real run; the report is rendered in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from optimizer.cli import main
from optimizer.front.plots import front_figure
from optimizer.store.columns import Columns
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from optimizer.store.trials import TrialTable, read_trials

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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
    "--enable-logging=stderr",
    "--v=0",
]
HANG = 600  # seconds for one Chromium run; bounds a hang only (a loaded machine starts it slowly)


def test_plot_png_and_html(dummy_run: Path, tmp_path: Path) -> None:
    assert main(["plot", str(dummy_run), "--out", str(tmp_path / "front.png")]) == 0
    image = matplotlib.image.imread(tmp_path / "front.png")
    assert image.shape[0] > 300 and image.shape[1] > 400 and image[..., :3].std() > 0.05
    assert (
        main(
            [
                "plot",
                str(dummy_run),
                "--x",
                "toy_reverse/acc",
                "--y",
                "toy_add/perplexity",
                "--out",
                str(tmp_path / "front.html"),
            ]
        )
        == 0
    )
    page = (tmp_path / "front.html").read_text()
    assert "<svg" in page and "<script" not in page
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", page)
    assert {"add", "reverse", "sort", "shift", "uniform"} <= set(labels), labels  # every baseline is labelled


def test_more_than_two_objectives_give_a_scatter_matrix() -> None:
    columns = Columns(
        weights=("a", "b"),
        objectives=("p", "q", "r"),
        directions=("maximize", "minimize", "maximize"),
        knobs=(),
        held_out=(),
    )
    rng = np.random.default_rng(0)
    sources = [TrialSource.single("a"), TrialSource.single("b"), TrialSource.uniform()]
    now = datetime.now(UTC)
    records = [
        TrialRecord(
            trial=n,
            state=TrialState.COMPLETE,
            source=source,
            weights={},
            scores={o: float(v) for o, v in zip(columns.objectives, rng.random(3), strict=True)},
            stderr={},
            merge_seconds=None,
            eval_seconds=None,
            worker=None,
            device=None,
            started_at=now,
            finished_at=now,
        )
        for n, source in enumerate([*sources, TrialSource.sampler(), TrialSource.sampler()])
    ]
    trials, front = TrialTable.of(columns, records), TrialTable.of(columns, records[:3])
    figure = front_figure(trials, front, None, None)
    assert len(figure.axes) == 9
    assert len(front_figure(trials, front, "p", "r").axes) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed here; .ci/run installs Debian's chromium")
def test_report_renders_in_headless_chromium(dummy_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(dummy_run), "--out", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page), "the report must not load anything from the network"

    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=True,
    )
    front = read_trials(dummy_run)
    table = re.search(r'<table[^>]*id="front-table".*?</table>', dom.stdout, re.DOTALL)
    assert table is not None, "the front table is missing"
    assert len(re.findall(r"<tr", table.group(0))) == len(front) + 1  # header + one row per front trial
    plot = re.search(r'<figure id="front-plot">(.*?)</figure>', dom.stdout, re.DOTALL)
    assert plot is not None and "<svg" in plot.group(1) and plot.group(1).count("<path") > 10, (
        "the front plot is missing"
    )
    assert "Uncaught" not in dom.stderr and not re.search(r"CONSOLE.*(error|Error)", dom.stderr), dom.stderr

    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=HANG,
        check=True,
    )
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02, "the page rendered (nearly) blank"
