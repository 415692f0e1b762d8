"""The ``mergefront`` command line. Heavy libraries are imported inside commands so ``--help`` is instant."""

from __future__ import annotations

import argparse
import logging
import math
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from evaluators.environment import apply_process_env
from evaluators.errors import ConfigError, MergefrontError
from evaluators.registry import did_you_mean
from optimizer.parameter_flags import add_parameter_flags, given_parameters

if TYPE_CHECKING:
    from optimizer.driver import Search

log = logging.getLogger("mergefront")
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _quiet_optuna(verbose: bool) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.DEBUG if verbose else optuna.logging.WARNING)


def _run_and_report(search: Search, args: argparse.Namespace) -> int:
    """Run a created or resumed search, then print its front, verdict, cost and idle time."""
    from optimizer.store import FRONT, TRIALS, read_table, sort_front
    from optimizer.table import format_table, merge_verdict

    summary = search.run(args.ray_address, progress=not args.no_progress, in_process=args.in_process)
    run_dir = search.run_dir
    columns, front = read_table(run_dir, FRONT)
    trials = read_table(run_dir, TRIALS)[1]
    complete = int((trials["state"] == "COMPLETE").sum())
    print(
        f"\nPareto front of {run_dir} ({len(front)} of {complete} complete trials, {int((trials['state'] == 'FAIL').sum())} failed):"
    )
    print(format_table(columns, sort_front(front, columns, None)))
    print(merge_verdict(columns, trials, front))
    print(
        f"\nstopped: {summary.stop_reason}; this call: {summary.complete} trials complete ({summary.screened} screened only), {summary.failed} failed"
    )
    print(
        f"wall time {summary.wall_seconds:.1f} s; {summary.timing_line()}; worker-hours so far {search.worker_hours():.3f}"
    )
    print(summary.idle_line())
    print(summary.workers_line())
    return 0


def _search(args: argparse.Namespace) -> int:
    from evaluators.config import validate
    from optimizer.driver import start_run
    from optimizer.experiment import RUN_NAME, WorkersSpec, load_experiment
    from optimizer.storage import JOURNAL

    _quiet_optuna(args.verbose)
    experiment, pool = load_experiment(args.experiment, args.allow_pickle)
    if args.name and not re.fullmatch(RUN_NAME, args.name):
        raise ConfigError(
            f"--name: '{args.name}' is not a valid name; use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    updates = {"name": args.name} if args.name else {}
    if args.trials:
        updates["budget"] = experiment.budget.model_copy(update={"trials": args.trials})
    workers = {k: v for k, v in (("count", args.workers), ("device", args.device), ("threads", args.threads)) if v}
    if workers:
        updates["workers"] = validate(
            WorkersSpec, {**experiment.workers.model_dump(), **workers}, "--workers/--device/--threads"
        )
    experiment = experiment.model_copy(update=updates)
    search = start_run(
        experiment,
        pool,
        args.experiment,
        args.runs_dir,
        overwrite=args.overwrite,
        warm_from=args.warm_start,
        storage=args.storage or JOURNAL,
        ray_address=args.ray_address,
    )
    return _run_and_report(search, args)


def _resume(args: argparse.Namespace) -> int:
    from optimizer.driver import Search, check_ray_address

    _quiet_optuna(args.verbose)
    check_ray_address(args.ray_address)  # before resume settles anything in the run directory
    search = Search.resume(args.run_dir)
    if args.trials:
        search.set_trials(args.trials)
    log.info(
        "resuming %s: %d of %d trials evaluated", args.run_dir, search.evaluated(), search.experiment.budget.trials
    )
    return _run_and_report(search, args)


def _join(args: argparse.Namespace) -> int:
    from optimizer.driver import Search, check_ray_address

    _quiet_optuna(args.verbose)
    search = Search.join(args.run_dir)
    check_ray_address(args.ray_address)
    log.info(
        "joining %s as driver %s: %d of %d trials evaluated so far",
        args.run_dir,
        search.driver,
        search.evaluated(),
        search.experiment.budget.trials,
    )
    return _run_and_report(search, args)


def _watch(args: argparse.Namespace) -> int:
    import time

    from optimizer.storage import JOURNAL, check_storage_url
    from optimizer.watch import poll

    _quiet_optuna(args.verbose)
    storage = check_storage_url(args.storage) if args.storage else JOURNAL
    while True:
        try:
            step = poll(
                args.experiment,
                args.runs_dir,
                args.trials_per_member,
                allow_pickle=args.allow_pickle,
                storage=storage,
                ray_address=args.ray_address,
            )
            print(step.message, flush=True)
            if step.search is not None:
                _run_and_report(step.search, args)
        except ConfigError as exc:
            if args.once:
                raise
            log.error("%s; next poll in %d s", exc, args.interval)  # a checkpoint still being written, say
        if args.once:
            return 0
        time.sleep(args.interval)


def _front(args: argparse.Namespace) -> int:
    from optimizer.store import FRONT, TRIALS, read_table, sort_front
    from optimizer.table import format_table, front_json

    columns, frame = read_table(args.run_dir, TRIALS if args.all else FRONT)
    frame = sort_front(frame, columns, args.sort)
    print(front_json(columns, frame) if args.json else format_table(columns, frame))
    return 0


def _export(args: argparse.Namespace) -> int:
    from optimizer.export_run import export_trial

    out = export_trial(args.run_dir, args.trial, args.out, args.force, args.as_adapter)
    print(f"exported trial {args.trial} of {args.run_dir} to {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from optimizer.plots import check_output_file, front_figure, save_figure
    from optimizer.store import FRONT, TRIALS, read_table

    check_output_file(args.out, (".png", ".html"))
    columns, front = read_table(args.run_dir, FRONT)
    trials = read_table(args.run_dir, TRIALS)[1]
    save_figure(front_figure(columns, trials, front, args.x, args.y), args.out, f"Pareto front of {args.run_dir}")
    print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from optimizer.plots import check_output_file
    from optimizer.report import write_report

    check_output_file(args.out, (".html",))
    write_report(args.run_dir, args.out)
    print(f"wrote {args.out}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from optimizer.rundir import read_meta
    from optimizer.storage import JOURNAL, open_storage

    meta = read_meta(args.run_dir)  # a clear error for a directory that is not a run
    try:
        from optuna_dashboard import run_server
    except ModuleNotFoundError:
        raise ConfigError(
            "the dashboard needs optuna-dashboard; install it with pip install -e '.[dashboard]'"
        ) from None
    print(f"optuna-dashboard for {args.run_dir} at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    run_server(open_storage(args.run_dir, meta.get("storage", JOURNAL)), host=args.host, port=args.port)
    return 0


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: merges are computed in float32


def _finite(name: str, value: str, weight: float) -> float:
    """A weight the float32 merge can use; anything else would write a non-finite model."""
    if math.isnan(weight):
        raise argparse.ArgumentTypeError(f"{name}={value} is not a number; give each weight as a finite number")
    if math.isinf(weight):
        raise argparse.ArgumentTypeError(f"{name}={value} is infinite; give each weight as a finite number")
    if abs(weight) > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(
            f"{name}={value} is beyond float32's range (±{FLOAT32_MAX:.1e}), in which the merge is computed; give a smaller weight"
        )
    if weight != 0 and struct.unpack("f", struct.pack("f", weight))[0] == 0:
        raise argparse.ArgumentTypeError(
            f"{name}={value} rounds to 0 in float32, in which the merge is computed; give 0 or a weight of at least 1.4e-45"
        )
    return weight


def _weights(text: str) -> dict[str, float]:
    """``name=w,name=w`` into a mapping. argparse refuses (exit 2) a malformed pair, a name given twice (which value
    would be meant?), a weight that is not a finite float32, and all weights 0 (a model of none of the members)."""
    out: dict[str, float] = {}
    for pair in text.split(","):
        name, sep, value = (part.strip() for part in pair.partition("="))
        try:
            weight = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"'{pair}' is not name=weight (e.g. --weights add=0.6,sort=0.4)")
        if name in out:
            raise argparse.ArgumentTypeError(
                f"'{name}' is given twice ({out[name]:g} and {weight:g}); give each member once"
            )
        out[name] = _finite(name, value, weight)
    if not any(out.values()):
        raise argparse.ArgumentTypeError(
            "every weight is 0, so the merge would hold none of the members; give at least one member a nonzero weight"
        )
    return out


def _merge(args: argparse.Namespace) -> int:
    from evaluators.config import validate
    from evaluators.merge import MergePoint, MergeSpec
    from evaluators.merge.engine import plan_for
    from evaluators.pool import load_pool
    from optimizer.export import Destination, write_merge
    from optimizer.modelcard import Provenance

    pool = load_pool(args.pool, args.allow_pickle)
    parameters = given_parameters(args)
    spec = validate(MergeSpec, {"method": args.method, **parameters}, "--method and its parameters")
    unknown = sorted(set(args.weights) - set(pool.names))
    if unknown:
        raise ConfigError(f"--weights: {unknown} are not members of {args.pool} (members: {', '.join(pool.names)})")
    weights = {m: args.weights.get(m, 0.0) for m in pool.names}
    provenance = Provenance(origin=f"`mergefront merge` on {args.pool}")
    point = MergePoint(weights=weights)
    to = Destination(args.out, args.force, args.as_adapter)
    out = write_merge(plan_for(pool, spec, exact=False), spec, point, weights, provenance, to)
    print(f"merged {', '.join(f'{m}={w:g}' for m, w in weights.items())} with {spec.method} into {out}")
    return 0


def _toy_build(args: argparse.Namespace) -> int:
    from evaluators.toy.build import ToyRecipe, build_toy_pool
    from evaluators.toy.scores import score_report

    recipe = ToyRecipe(seed=args.seed)
    if build_toy_pool(args.out, args.tasks_out, recipe, force=args.force):
        log.info("toy pool written to %s", args.out)
    else:
        log.info("toy pool at %s is up to date (recipe %s); --force rebuilds it", args.out, recipe.fingerprint())
    print(score_report(args.out, args.tasks_out))
    return 0


def _pool_check(args: argparse.Namespace) -> int:
    from evaluators.config import validate
    from evaluators.merge import MergeSpec
    from evaluators.merge.engine import plan_for
    from evaluators.merge.inspect import format_reports, inspect_members
    from evaluators.pool import load_pool

    pool = load_pool(args.pool, args.allow_pickle)
    method = args.method or ("task_arithmetic" if pool.merge_base else "linear")
    plan = plan_for(pool, validate(MergeSpec, {"method": method}, "--method"))
    print(format_reports(plan, inspect_members(plan)))
    return 0


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


def _model_output_args(parser: argparse.ArgumentParser) -> None:
    """The output options export and merge share."""
    parser.add_argument("--out", type=Path, required=True, help="new model directory")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--as-adapter", action="store_true", help="all-LoRA pools: write one PEFT adapter on their base instead"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mergefront",
        description="Find the Pareto-optimal linear merges of a pool of LLM checkpoints.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    search.add_argument("--trials", type=_positive, help="override the experiment's trial budget")
    search.add_argument("--workers", type=_positive, help="override the experiment's worker count")
    search.add_argument("--device", help="override the workers' device: cpu, cuda or cuda:N (one worker per GPU)")
    search.add_argument("--threads", type=_positive, help="override the torch CPU threads (and Ray CPUs) per worker")
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
    search.set_defaults(func=_search)

    resume = sub.add_parser(
        "resume",
        help="continue a stopped or killed search",
        description="Continue a run from its storage: trials left running are "
        "settled from Parquet or re-queued; the budget counts the trials already evaluated.",
    )
    resume.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    resume.add_argument("--trials", type=_positive, help="raise (or set) the trial budget")
    _driver_args(resume)
    resume.set_defaults(func=_resume)

    join = sub.add_parser(
        "join",
        help="add a driver to a running search",
        description="Serve a running search's study from one more driver (another machine, more workers): trial numbers "
        "come from the shared storage, each trial is evaluated once, and both drivers append to the run's Parquet "
        "store (RUN_DIR must be on a filesystem both see). Use --storage postgresql://... for drivers on several machines.",
    )
    join.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _driver_args(join)
    join.set_defaults(func=_join)

    watch = sub.add_parser(
        "watch",
        help="re-run the search when checkpoints land",
        description="Poll the experiment's pool; when members are added or their files change, run a search warm-started "
        "from the latest run (RUNS_DIR/NAME, NAME-2, ...): old scores are reused, never re-evaluated, except those "
        "that used a changed member. With nothing new, print so and wait.",
    )
    watch.add_argument("experiment", type=Path, help="experiment YAML")
    watch.add_argument("--once", action="store_true", help="poll once and exit (for cron or a systemd timer)")
    watch.add_argument("--interval", type=_positive, default=600, help="seconds between polls (default 600)")
    watch.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    watch.add_argument(
        "--trials-per-member", type=_positive, default=10, help="new trials per added or changed member (default 10)"
    )
    _driver_args(watch)
    _storage_arg(watch)
    _allow_pickle_arg(watch)
    watch.set_defaults(func=_watch)

    front = sub.add_parser("front", help="print the Pareto front of a run", description="Print a run's Pareto front.")
    front.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    front.add_argument("--json", action="store_true", help="JSON array of {trial, weights, scores}")
    front.add_argument("--all", action="store_true", help="every trial, not only the front")
    front.add_argument("--sort", metavar="OBJECTIVE", help="sort by this objective, best first (default: the first)")
    front.set_defaults(func=_front)

    plot = sub.add_parser(
        "plot",
        help="plot the trials and the front",
        description="Trials as points, the front as a line, baselines labelled; a scatter matrix for more than two objectives.",
    )
    plot.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    plot.add_argument("--x", metavar="OBJECTIVE", help="objective on the x axis (with --y: one scatter of that pair)")
    plot.add_argument("--y", metavar="OBJECTIVE", help="objective on the y axis")
    plot.add_argument("--out", type=Path, required=True, help="FILE.png, or FILE.html (self-contained)")
    plot.set_defaults(func=_plot)

    report = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description="One HTML page that works offline: front plot, front table, front weights, baselines, run metadata and cost.",
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, required=True, help="FILE.html")
    report.set_defaults(func=_report)

    dashboard = sub.add_parser(
        "dashboard",
        help="open a run in optuna-dashboard",
        description="Serve optuna-dashboard on the run's Optuna journal (objective names included).",
    )
    dashboard.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--port", type=_positive, default=8080, help="port (default 8080)")
    dashboard.set_defaults(func=_dashboard)

    export = sub.add_parser(
        "export",
        help="write a trial's merge as a model directory",
        description="Stream a trial's merge into a Hugging Face model directory (sharded safetensors, config, tokenizer), "
        "with a model card (README.md) and, where mergekit computes the same merge, mergekit.yaml.",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--trial", type=int, required=True, help="trial number (see `mergefront front RUN_DIR`)")
    _model_output_args(export)
    export.set_defaults(func=_export)

    merge = sub.add_parser(
        "merge",
        help="one merge with weights you give, no search",
        description="Merge a pool with given weights into a model directory, with the same outputs as export.",
    )
    merge.add_argument(
        "--pool", type=Path, default=Path("checkpoints.yaml"), help="pool YAML (default checkpoints.yaml)"
    )
    merge.add_argument("--method", default="linear", help="merge method (default linear)")
    merge.add_argument("--weights", type=_weights, required=True, help="name=w,name=w (members left out get 0)")
    merge.extend = add_parameter_flags  # --lambda, --density, --drop, --seed, --t: from the methods' declarations
    _model_output_args(merge)
    _allow_pickle_arg(merge)
    merge.set_defaults(func=_merge)

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
    check.set_defaults(func=_pool_check)

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
    build.set_defaults(func=_toy_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as exc:
        print(f"mergefront: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    apply_process_env()
    # lm-eval's per-call notes and Ray's note on local token authentication would bury our output.
    logging.getLogger("lm_eval").setLevel(logging.INFO if args.verbose else logging.ERROR)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mergefront: error: {exc}", file=sys.stderr)
        return 2
    except MergefrontError as exc:
        print(f"mergefront: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mergefront: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":  # `python -m optimizer.cli` is the `mergefront` command
    run()
