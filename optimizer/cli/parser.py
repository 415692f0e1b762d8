"""The ``mergefront`` argument parser: its commands, their options and the argument types that refuse
bad values (one line and exit code 2, like any other bad input)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from evaluators.core.errors import ConfigError
from evaluators.core.registry import did_you_mean
from optimizer.cli import commands
from optimizer.cli.parameter_flags import add_parameter_flags
from optimizer.cli.values import port, positive, weights

DEFAULT_EXPERIMENT = Path("experiments/toy.yaml")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ConfigErrors: one line and exit code 2, like any other bad input.

    ``extend`` adds arguments the first time this parser parses or shows help: flags that need a heavy
    import (the merge methods' parameters need torch) cost nothing to the other commands.
    """

    extend: Callable[[argparse.ArgumentParser], None] | None = None

    def _extended(self) -> None:
        if self.extend is not None:
            extend, self.extend = self.extend, None
            extend(self)

    def format_help(self) -> str:
        self._extended()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("mergefront").strip()
        raise ConfigError(f"{command + ': ' if command else ''}{message}; see `{self.prog} --help`")

    def parse_known_args(self, args=None, namespace=None):
        self._extended()
        namespace, extra = super().parse_known_args(args, namespace)
        if extra and self._subparsers is None:  # a command's own parser: suggest one of its options
            options = [o for action in self._actions for o in action.option_strings]
            self.error(f"unrecognized arguments: {' '.join(extra)}{did_you_mean(extra[0].split('=')[0], options)}")
        return namespace, extra


def _driver_args(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs trials."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ray-address", help="connect to this Ray cluster instead of starting a local one")
    where.add_argument(
        "--in-process",
        action="store_true",
        help="run one worker in this process, without Ray (debugging, a quick look at a small pool; workers.count is ignored)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage shared by several drivers, e.g. postgresql://USER@HOST/DB (password in PGPASSWORD or "
        "~/.pgpass, never in the URL); default: a journal file in the run directory",
    )


def _allow_pickle_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read pickle weights (pytorch_model.bin), through torch.load(weights_only=True); off by default: "
        "unpickling a file from someone else can run their code",
    )


def _allow_download_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="let a pool member given as a Hugging Face repo id (org/name) be downloaded into the hub cache; off by "
        "default: repo ids resolve through the local cache only (fill it with `hf download org/name`)",
    )


def _run_files_args(parser: argparse.ArgumentParser) -> None:
    """The options of commands that read a run's pool: where its files are now, if they moved."""
    parser.add_argument(
        "--pool", type=Path, metavar="PATH", help="the run's pool file, if it moved since the run started"
    )
    parser.add_argument(
        "--tasks-dir", type=Path, metavar="PATH", help="the run's task folder, if it moved since the run started"
    )
    _allow_download_arg(parser)


def _model_output_args(parser: argparse.ArgumentParser) -> None:
    """The output options export and merge share."""
    parser.add_argument("--out", type=Path, required=True, help="new model directory")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--as-adapter", action="store_true", help="all-LoRA pools: write one PEFT adapter on their base instead"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """Every ``mergefront`` command and its options; bad input raises ConfigError instead of exiting."""
    parser = _Parser(
        prog="mergefront",
        description="Find the Pareto-optimal linear merges of a pool of LLM checkpoints.",
    )
    parser.add_argument("--version", action="version", version=f"mergefront {version('mergefront')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _search_command(sub)
    _continuing_commands(sub)
    _viewing_commands(sub)
    _model_commands(sub)
    _pool_commands(sub)
    _tasks_commands(sub)
    _verbose_anywhere(sub)
    return parser


def _verbose_anywhere(sub: argparse._SubParsersAction) -> None:
    """``-v`` after the command too (``mergefront search -v``), on every command and action: the global option's
    value is set only when given there, so ``mergefront -v search`` keeps it."""
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _verbose_anywhere(action)


def _search_command(sub: Any) -> None:
    """The search command."""
    search = sub.add_parser(
        "search", help="run a multi-objective merge search", description="Run a search; the run goes to RUNS_DIR/NAME."
    )
    search.add_argument(
        "experiment",
        nargs="?",
        type=Path,
        default=DEFAULT_EXPERIMENT,
        help=f"experiment YAML (default {DEFAULT_EXPERIMENT})",
    )
    search.add_argument("--trials", type=positive, help="override the experiment's trial budget")
    search.add_argument("--workers", type=positive, help="override the experiment's worker count")
    search.add_argument("--device", help="override the workers' device: cpu, cuda or cuda:N (one worker per GPU)")
    search.add_argument("--threads", type=positive, help="override the torch CPU threads (and Ray CPUs) per worker")
    search.add_argument("--name", help="run name (default: the experiment's name)")
    search.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    search.add_argument("--overwrite", action="store_true", help="replace an existing run directory of the same name")
    search.add_argument(
        "--warm-start",
        type=Path,
        metavar="RUN_DIR",
        help="import the finished trials of an earlier run on a subset of this pool",
    )
    _driver_args(search)
    _storage_arg(search)
    _allow_pickle_arg(search)
    _allow_download_arg(search)
    search.set_defaults(func=commands._search)


def _continuing_commands(sub: Any) -> None:
    """Commands that continue or repeat a search: resume, join, watch."""
    resume = sub.add_parser(
        "resume",
        help="continue a stopped or killed search",
        description="Continue a run from its storage: trials left running are "
        "settled from Parquet or re-queued; the budget counts the trials already evaluated.",
    )
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    resume.add_argument("--trials", type=positive, help="raise (or set) the trial budget")
    _driver_args(resume)
    _run_files_args(resume)
    resume.set_defaults(func=commands._resume)

    join = sub.add_parser(
        "join",
        help="add a driver to a running search",
        description="Serve a running search's study from one more driver (another machine, more workers): trial numbers "
        "come from the shared storage, each trial is evaluated once, and both drivers append to the run's Parquet "
        "store (RUN_DIR must be on a filesystem both see). Use --storage postgresql://... for drivers on several machines.",
    )
    join.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _driver_args(join)
    _run_files_args(join)
    join.set_defaults(func=commands._join)

    watch = sub.add_parser(
        "watch",
        help="re-run the search when checkpoints land",
        description="Poll the experiment's pool; when members are added or their files change, run a search warm-started "
        "from the latest run (RUNS_DIR/NAME, NAME-2, ...): old scores are reused, never re-evaluated, except those "
        "that used a changed member. With nothing new, print so and wait.",
    )
    watch.add_argument("experiment", type=Path, help="experiment YAML")
    watch.add_argument("--once", action="store_true", help="poll once and exit (for cron or a systemd timer)")
    watch.add_argument("--interval", type=positive, default=600, help="seconds between polls (default 600)")
    watch.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    watch.add_argument(
        "--trials-per-member", type=positive, default=10, help="new trials per added or changed member (default 10)"
    )
    _driver_args(watch)
    _storage_arg(watch)
    _allow_pickle_arg(watch)
    _allow_download_arg(watch)
    watch.set_defaults(func=commands._watch)


def _viewing_commands(sub: Any) -> None:
    """Commands that show a run: front, plot, report, dashboard."""
    front = sub.add_parser("front", help="print the Pareto front of a run", description="Print a run's Pareto front.")
    front.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    front.add_argument(
        "--json",
        action="store_true",
        help="JSON array of {trial, source, imported_from, on_front, weights, knobs, scores, stderr, held_out, "
        "held_out_stderr}",
    )
    front.add_argument("--all", action="store_true", help="every trial, not only the front (front trials marked *)")
    front.add_argument(
        "--sort",
        metavar="KEY",
        help="an objective or held-out task (best first), or 'trial' (default: the first objective)",
    )
    front.add_argument("--wide", action="store_true", help="one line per trial, however wide (default: 100 columns)")
    front.set_defaults(func=commands._front)

    plot = sub.add_parser(
        "plot",
        help="plot the trials and the front",
        description="Trials as points, the front as a line, front points labelled with their trial numbers and "
        "baselines with member and trial number; the lower triangle of a scatter matrix for more than two objectives. "
        "FILE.html is interactive (hover a point for its trial, weights and scores) and works offline.",
    )
    plot.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    plot.add_argument(
        "--x",
        metavar="MEASURE",
        help="objective or held-out task on the x axis (give --y too); held-out scores exist for front trials only",
    )
    plot.add_argument("--y", metavar="MEASURE", help="objective or held-out task on the y axis (give --x too)")
    plot.add_argument(
        "--out", type=Path, required=True, help="FILE.png, .svg or .pdf (static), or FILE.html (interactive)"
    )
    plot.set_defaults(func=commands._plot)

    report = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description="One HTML page that works offline: front plot, front table, front weights, baselines, run metadata and cost.",
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, required=True, help="FILE.html")
    report.set_defaults(func=commands._report)

    dashboard = sub.add_parser(
        "dashboard",
        help="open a run in optuna-dashboard",
        description="Serve optuna-dashboard on the run's Optuna journal (objective names included).",
    )
    dashboard.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    dashboard.set_defaults(func=commands._dashboard)


def _model_commands(sub: Any) -> None:
    """Commands that write a model: export (a trial), merge (given weights)."""
    export = sub.add_parser(
        "export",
        help="write a trial's merge as a model directory",
        description="Stream a trial's merge into a Hugging Face model directory (sharded safetensors, config, tokenizer), "
        "with a model card (README.md) and, where mergekit computes the same merge, mergekit.yaml.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--trial", type=int, required=True, help="trial number (see `mergefront front RUN_DIR`)")
    _model_output_args(export)
    _run_files_args(export)
    export.set_defaults(func=commands._export)

    merge = sub.add_parser(
        "merge",
        help="one merge with weights you give, no search",
        description="Merge a pool with given weights into a model directory, with the same outputs as export.",
    )
    merge.add_argument(
        "--pool", type=Path, default=Path("checkpoints.yaml"), help="pool YAML (default checkpoints.yaml)"
    )
    merge.add_argument("--method", default="linear", help="merge method (default linear)")
    merge.add_argument("--weights", type=weights, required=True, help="name=w,name=w (members left out get 0)")
    merge.extend = add_parameter_flags  # --lambda, --density, --drop, --seed, --t: from the methods' declarations
    _model_output_args(merge)
    _allow_pickle_arg(merge)
    _allow_download_arg(merge)
    merge.set_defaults(func=commands._merge)


def _pool_commands(sub: Any) -> None:
    """Commands on a pool: pool check, toy build."""
    pool = sub.add_parser("pool", help="inspect a checkpoint pool").add_subparsers(
        dest="pool_command", required=True, metavar="ACTION"
    )
    check = pool.add_parser(
        "check",
        help="check a pool can be merged and print its members",
        description="Check members' files, architecture, tensor names and shapes, and adapters; print size, "
        "dtype, distance to the merge base, and for transfer members the connectivity of their bases.",
    )
    check.add_argument(
        "pool", nargs="?", type=Path, default=Path("checkpoints.yaml"), help="pool YAML (default checkpoints.yaml)"
    )
    check.add_argument("--method", help="also check the pool suits this merge method")
    _allow_pickle_arg(check)
    _allow_download_arg(check)
    check.set_defaults(func=commands._pool_check)

    toy = sub.add_parser("toy", help="the embedded toy pool").add_subparsers(
        dest="toy_command", required=True, metavar="ACTION"
    )
    build = toy.add_parser(
        "build",
        help="train the toy pool (cached) and print its score table",
        description="Train the toy pool locally and print each member's scores.",
    )
    build.add_argument("--out", type=Path, default=Path("toy"), help="pool directory (default toy/)")
    build.add_argument(
        "--tasks-out", type=Path, default=Path("experiments/tasks/toy"), help="task YAML and data directory"
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true", help="rebuild even when an identical build exists")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=commands._toy_build)


def _tasks_commands(sub: Any) -> None:
    """Commands on an experiment's tasks: tasks fetch."""
    tasks = sub.add_parser("tasks", help="the datasets of an experiment's tasks").add_subparsers(
        dest="tasks_command", required=True, metavar="ACTION"
    )
    fetch = tasks.add_parser(
        "fetch",
        help="download the datasets the experiment's tasks read into the local cache (needs network)",
        description="Download every dataset of the experiment's objectives and held-out tasks (lm-eval's built-in "
        "tasks and groups included) into the local Hugging Face cache, by the call lm-eval makes, printing one line "
        "per dataset. Runs are offline: they read the datasets from that cache.",
    )
    fetch.add_argument(
        "experiment",
        nargs="?",
        type=Path,
        default=DEFAULT_EXPERIMENT,
        help="experiment YAML (default experiments/toy.yaml)",
    )
    fetch.set_defaults(func=commands._tasks_fetch, downloads=True)
