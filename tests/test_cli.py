"""The command line's own conventions: ``--version``, bare ``mergefront``, ``-v`` anywhere, ``pool check`` of an
experiment, did-you-mean for member names."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from optimizer.cli import build_parser, main
from tests.helpers import tiny_experiment


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command path (``('pool', 'check')``, ``('front',)``, ...)."""
    paths: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                nested = _commands(child, (*prefix, name))
                paths += nested or [(*prefix, name)]
    return paths


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mergefront {version('mergefront')}"


def test_bare_mergefront_prints_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out == build_parser().format_help()
    assert "search" in out and "COMMAND" in out


def test_verbose_is_accepted_after_every_command() -> None:
    parser = build_parser()
    commands = _commands(parser)
    assert ("pool", "check") in commands and ("search",) in commands
    for command in commands:
        # the positional a command needs, if any: parse_known_args leaves required ones to us
        needs = {"resume", "join", "front", "plot", "report", "dashboard", "export", "watch"}
        given = [*command, *(["RUN"] if command[0] in needs else [])]
        extra = {"plot": ["--out", "x.png"], "report": ["--out", "x.html"], "export": ["--trial", "1", "--out", "o"]}
        given += extra.get(command[0], [])
        given += ["--weights", "a=1", "--out", "o"] if command[0] == "merge" else []
        assert parser.parse_args([*given, "-v"]).verbose is True, command
        assert parser.parse_args(["-v", *given]).verbose is True, command
        assert parser.parse_args(given).verbose is False, command


def test_pool_check_of_an_experiment_checks_its_pool(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = tiny_experiment(tiny_pool, tmp_path)
    assert main(["pool", "check", str(experiment)]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("ok: pool ") and "4 members" in last and "mergeable with linear" in last
    # the same pool checked directly ends with the same verdict, under its default method
    assert main(["pool", "check", str(tiny_pool / "pool" / "checkpoints.yaml"), "--method", "linear"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split(": ", 1)[1] == last.split(": ", 1)[1]


def test_an_unknown_member_in_weights_gets_a_suggestion(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = tiny_pool / "pool" / "checkpoints.yaml"
    assert main(["merge", "--pool", str(pool), "--weights", "srt=1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'sort'?" in err
    assert not (tmp_path / "out").exists()


def test_merge_shows_a_bar_on_a_terminal_unless_told_not_to(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bar where stderr is no terminal (a log file: its frames would be carriage-return noise)."""
    pool = str(tiny_pool / "pool" / "checkpoints.yaml")
    assert main(["merge", "--pool", pool, "--weights", "add=1", "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["merge", "--pool", pool, "--weights", "add=1", "--out", str(tmp_path / "b")]) == 0
    assert "merge: 100%" in capsys.readouterr().err
    assert main(["merge", "--pool", pool, "--weights", "add=1", "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
