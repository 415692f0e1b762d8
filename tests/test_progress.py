"""What a search shows while it runs: a log line per start-up stage and per finished trial where there is no bar
(``--no-progress``, or stderr not a terminal: a log file, cron), a bar with the front's best values on a terminal,
and ``--no-progress`` on every command that draws a bar. Dummy-backend searches in this process."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from optimizer.cli import build_parser, main
from optimizer.search.progress import TrialBar, short_labels
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from tests.helpers import OBJECTIVES, non_dominated, tiny_experiment

TRIALS = 6


def _search(tiny_pool: Path, tmp_path: Path, *flags: str) -> pd.DataFrame:
    exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: random}\n", trials=TRIALS)
    assert main(["search", str(exp), "--runs-dir", str(tmp_path / "runs"), "--in-process", *flags]) == 0
    return pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet").sort_values("trial")


@pytest.mark.parametrize("flags", [("--no-progress",), ()], ids=["no-progress", "not-a-terminal"])
def test_without_a_bar_each_finished_trial_is_a_log_line(
    tiny_pool: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
) -> None:
    """One INFO line per trial, in the order they finished (in process: trial order), with its source, scores and
    standard errors, the front's size then and the count done; the start-up stages come before. Under pytest stderr
    is no terminal, so the bar is left out even when not told to."""
    with caplog.at_level(logging.INFO):
        trials = _search(tiny_pool, tmp_path, *flags)
    lines = [r.getMessage() for r in caplog.records if r.name == "optimizer.search.progress"]
    assert len(lines) == len(trials) == TRIALS
    for n, (line, row) in enumerate(zip(lines, trials.to_dict("records"), strict=True)):
        scores = ", ".join(
            f"{label.split('/')[0]} {row[f'score__{column}']:.3f}±{row[f'stderr__{column}']:.3f}"
            for label, column in ((o, o.replace("/", "_")) for o in OBJECTIVES)
        )
        front = len(non_dominated(trials.iloc[: n + 1]))
        assert line == f"trial {n} finished ({row['source']}): {scores}; front {front}; {n + 1}/{TRIALS} done"
    messages = [r.getMessage() for r in caplog.records]
    startup = [
        "starting 1 worker in this process (--in-process): loading the pool and building the model",
        "worker-0 ready: dummy scorer (no model) built on cpu in ",
    ]
    first = [next(i for i, m in enumerate(messages) if m.startswith(s)) for s in startup]
    assert first == sorted(first) and first[-1] < messages.index(lines[0])
    assert "search:" not in capsys.readouterr().err  # no bar


def test_on_a_terminal_the_bar_shows_the_fronts_best_values(
    tiny_pool: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stderr a terminal: a bar instead of the trial lines, ending on the front's size and its best perplexity
    (lowest) and accuracy (highest)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with caplog.at_level(logging.INFO):
        _search(tiny_pool, tmp_path)
    front = pd.read_parquet(tmp_path / "runs" / "tiny" / "front.parquet")
    best = f"toy_add {front['score__toy_add_perplexity'].min():.3f}, toy_reverse {front['score__toy_reverse_acc'].max():.3f}"
    err = capsys.readouterr().err
    assert "search: 100%" in err and f"{TRIALS}/{TRIALS}" in err
    assert f"front {len(front)} | best {best}" in err.split("\r")[-1]
    assert not [r for r in caplog.records if r.name == "optimizer.search.progress"]


def _record(trial: int, perplexity: float, accuracy: float) -> TrialRecord:
    now = datetime.now(UTC)
    return TrialRecord(
        trial=trial,
        state=TrialState.COMPLETE,
        source=TrialSource.sampler(),
        weights={},
        scores=dict(zip(OBJECTIVES, (perplexity, accuracy), strict=True)),
        stderr={},
        merge_seconds=None,
        eval_seconds=None,
        worker=None,
        device=None,
        started_at=now,
        finished_at=now,
    )


def test_the_bar_shows_the_best_value_in_each_objectives_direction() -> None:
    bar = TrialBar(OBJECTIVES, [-1.0, 1.0], budget=10, done=0)  # perplexity minimised, accuracy maximised
    front = [_record(0, 3.0, 0.7), _record(1, 2.0, 0.5)]
    assert bar.postfix(front, failed=1) == "front 2 | best toy_add 2.000, toy_reverse 0.700 | 1 failed"
    assert bar.postfix([], failed=0) == "front 0"


def test_objectives_are_named_by_their_task_where_that_tells_them_apart() -> None:
    assert short_labels(["toy_add/perplexity", "toy_reverse/acc"]) == ["toy_add", "toy_reverse"]
    assert short_labels(["toy_add/perplexity", "toy_add/acc"]) == ["toy_add/perplexity", "toy_add/acc"]
    assert short_labels(["add", "reverse"]) == ["add", "reverse"]


def test_starting_ray_says_where(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The first start-up stage (seconds, before the workers' own lines): a local Ray, or the cluster's address."""
    import ray

    from optimizer.search.workers import start_ray

    started: list[dict[str, object]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.append(kwargs))
    with caplog.at_level(logging.INFO, logger="optimizer.search.workers"):
        assert start_ray(None, 10_000) and start_ray("10.0.0.5:6379", 1)
    assert [r.getMessage() for r in caplog.records] == [
        "starting a local Ray with 10000 CPUs",
        "connecting to Ray at 10.0.0.5:6379",
    ]
    assert started[0]["num_cpus"] == 10_000 and started[1]["address"] == "10.0.0.5:6379"


def test_every_command_that_draws_a_bar_takes_no_progress() -> None:
    parser = build_parser()
    commands = [
        ["search"],
        ["resume", "RUN"],
        ["join", "RUN"],
        ["watch", "EXP"],
        ["export", "RUN", "--trial", "1", "--out", "o"],
        ["merge", "--weights", "a=1", "--out", "o"],
        ["toy", "build"],
    ]
    for command in commands:
        assert parser.parse_args([*command, "--no-progress"]).no_progress is True, command
        assert parser.parse_args(command).no_progress is False, command
