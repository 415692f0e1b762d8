"""What each ``mergefront`` command does, given its parsed arguments. Heavy libraries are imported
inside the commands, so ``--help`` and a mistyped option answer at once."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import TYPE_CHECKING

from evaluators.core.errors import ConfigError, Interrupted
from evaluators.core.registry import did_you_mean
from optimizer.cli.parameter_flags import given_parameters, weights_used

if TYPE_CHECKING:
    from optimizer.run.directory import Places
    from optimizer.search.driver import Search

log = logging.getLogger("mergefront")


def _quiet_optuna(verbose: bool) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.DEBUG if verbose else optuna.logging.WARNING)


def _places(args: argparse.Namespace) -> Places:
    """Where a run's files are now (``--pool``, ``--tasks-dir``) and whether repo ids may download."""
    from optimizer.run.directory import Places

    return Places(args.pool, args.tasks_dir, args.allow_download)


def _bars(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with ``--no-progress``, nor where stderr (tqdm draws there) is no terminal:
    in a log file a bar's frames are carriage-return noise (a search logs a line per trial instead)."""
    return not args.no_progress and sys.stderr.isatty()


def _run_and_report(search: Search, args: argparse.Namespace) -> int:
    """Run a created or resumed search, then print its front, verdict, cost and idle time; after Ctrl-C, the same
    and how to go on (Interrupted: exit 130)."""
    from optimizer.front.table import format_table, merge_verdict
    from optimizer.search.summary import SearchInterrupted
    from optimizer.store.rows import TrialState
    from optimizer.store.trials import FRONT, TRIALS, read_trials

    run_dir = search.run_dir
    again = f"continue with `mergefront {'join' if args.command == 'join' else 'resume'} {run_dir}`"
    stopped = False
    try:
        summary = search.run(args.ray_address, progress=_bars(args), in_process=args.in_process)
    except SearchInterrupted as stop:
        summary, stopped = stop.summary, True
    except KeyboardInterrupt:  # while the workers started or the held-out tasks were scored: nothing to re-queue
        raise Interrupted(f"interrupted; {again}") from None
    front = read_trials(run_dir, FRONT)
    trials = read_trials(run_dir, TRIALS)
    complete, interrupted = trials.count(TrialState.COMPLETE), trials.interrupted()
    failed = trials.count(TrialState.FAIL) - interrupted
    apart = f", {interrupted} interrupted and re-queued" if interrupted else ""
    print(f"\nPareto front of {run_dir} ({len(front)} of {complete} complete trials, {failed} failed{apart}):")
    print(format_table(front.sorted_by(None)))
    print(merge_verdict(trials, front))
    print("\n" + "\n".join(summary.closing_lines(search.worker_hours())))
    if stopped:
        n = summary.interrupted
        raise Interrupted(f"interrupted: {n} trial{'s' * (n != 1)} re-queued; {again}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from evaluators.core.config import validate
    from optimizer.experiment.config import RUN_NAME, WorkersSpec, load_experiment
    from optimizer.search.start import start_run
    from optimizer.store.study import JOURNAL

    _quiet_optuna(args.verbose)
    experiment, pool = load_experiment(args.experiment, args.allow_pickle, args.allow_download)
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
    from optimizer.search.driver import Search
    from optimizer.search.workers import check_ray_address
    from optimizer.store.trials import TRIALS, read_trials

    _quiet_optuna(args.verbose)
    check_ray_address(args.ray_address)  # before resume settles anything in the run directory
    if args.trials:  # before resume settles anything: a budget below what is done would end the run at once
        stored = read_trials(args.run_dir, TRIALS).complete()
        if args.trials < (done := len(stored) - len(stored.imported())):
            raise ConfigError(
                f"--trials {args.trials}: {args.run_dir} has evaluated {done} trials already, and the budget counts "
                f"them; give at least {done}"
            )
    search = Search.resume(args.run_dir, _places(args))
    if args.trials:
        search.set_trials(args.trials)
    log.info(
        "resuming %s: %d of %d trials evaluated", args.run_dir, search.evaluated(), search.experiment.budget.trials
    )
    return _run_and_report(search, args)


def _join(args: argparse.Namespace) -> int:
    from optimizer.search.driver import Search
    from optimizer.search.workers import check_ray_address

    _quiet_optuna(args.verbose)
    search = Search.join(args.run_dir, _places(args))
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

    from optimizer.search.watch import poll
    from optimizer.store.study import JOURNAL, check_storage_url

    _quiet_optuna(args.verbose)
    storage = check_storage_url(args.storage) if args.storage else JOURNAL
    while True:
        try:
            step = poll(
                args.experiment,
                args.runs_dir,
                args.trials_per_member,
                allow_pickle=args.allow_pickle,
                allow_download=args.allow_download,
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
    from optimizer.front.table import format_table, front_json
    from optimizer.store.trials import FRONT, TRIALS, read_trials

    front = set(read_trials(args.run_dir, FRONT).numbers)
    table = read_trials(args.run_dir, TRIALS if args.all else FRONT).sorted_by(args.sort)
    if args.json:
        print(front_json(table, front))
    else:
        print(format_table(table, front if args.all else None, args.wide))
    return 0


def _export(args: argparse.Namespace) -> int:
    from optimizer.export.model import Destination
    from optimizer.export.trial import export_trial

    to = Destination(args.out, args.force, args.as_adapter, progress=_bars(args))
    out = export_trial(args.run_dir, args.trial, to, _places(args))
    print(f"exported trial {args.trial} of {args.run_dir} to {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from optimizer.front.interactive import front_plotly, write_plot_page
    from optimizer.front.measures import chosen_pairs, measures
    from optimizer.front.plots import STATIC, check_output_file, save_static, static_figure
    from optimizer.store.trials import FRONT, TRIALS, read_trials

    check_output_file(args.out, (*STATIC, ".html"))
    front, trials = read_trials(args.run_dir, FRONT), read_trials(args.run_dir, TRIALS)
    choices = measures(trials.columns)
    pairs = chosen_pairs(choices, args.x, args.y)
    if args.out.suffix == ".html":
        write_plot_page(front_plotly(trials, front, pairs, choices), args.out, f"Pareto front of {args.run_dir}")
    else:
        save_static(static_figure(trials, front, pairs), args.out)
    print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from optimizer.front.plots import check_output_file
    from optimizer.front.report import write_report

    check_output_file(args.out, (".html",))
    write_report(args.run_dir, args.out)
    print(f"wrote {args.out}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from optimizer.front.dashboard import dashboard_view

    _quiet_optuna(args.verbose)
    view = dashboard_view(args.run_dir)  # a clear error for a directory that is not a run
    try:
        from optuna_dashboard import run_server
    except ModuleNotFoundError:
        raise ConfigError(
            "the dashboard needs optuna-dashboard; install it with pip install -e '.[dashboard]'"
        ) from None
    what = (
        "live (held-out scores show once the search has finished)"
        if view.live
        else f"{view.trials} trials with their weights, held-out scores and front membership"
    )
    print(
        f"optuna-dashboard for {args.run_dir}, {what}, at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True
    )
    try:
        run_server(view.storage, host=args.host, port=args.port)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot serve on {args.host}:{args.port} ({exc.strerror}); pass a free --port") from None
    return 0


def _merge(args: argparse.Namespace) -> int:
    from evaluators.core.config import validate
    from evaluators.merge import MergePoint, MergeSpec
    from evaluators.merge.engine import plan_for
    from evaluators.pool import load_pool
    from optimizer.export.model import Destination, write_merge
    from optimizer.export.modelcard import Provenance

    pool = load_pool(args.pool, args.allow_pickle, args.allow_download)
    parameters = given_parameters(args)
    spec = validate(MergeSpec, {"method": args.method, **parameters}, "--method and its parameters")
    unknown = sorted(set(args.weights) - set(pool.names))
    if unknown:
        raise ConfigError(
            f"--weights: {unknown} are not members of {args.pool}{did_you_mean(unknown[0], pool.names)} "
            f"(members: {', '.join(pool.names)})"
        )
    weights, used = weights_used(args, spec, pool.names)
    provenance = Provenance(origin=f"`mergefront merge` on {args.pool}")
    point = MergePoint(weights=weights)
    to = Destination(args.out, args.force, args.as_adapter, progress=_bars(args))
    out = write_merge(plan_for(pool, spec, exact=False), spec, point, weights, provenance, to)
    print(f"{used}\nmerged with {spec.method} into {out}")  # after the merge: bad input leaves stdout empty
    return 0


def _toy_build(args: argparse.Namespace) -> int:
    from toy.build import ToyRecipe, build_toy_pool
    from toy.scores import score_table

    recipe = ToyRecipe(seed=args.seed)
    if build_toy_pool(args.out, args.tasks_out, recipe, force=args.force, progress=_bars(args)):
        log.info("toy pool written to %s", args.out)
    else:
        log.info("toy pool at %s is up to date (recipe %s); --force rebuilds it", args.out, recipe.fingerprint())
    print(score_table(args.out, args.tasks_out))
    return 0


def _pool_check(args: argparse.Namespace) -> int:
    from evaluators.core.config import read_yaml, validate
    from evaluators.merge import MergeSpec
    from evaluators.merge.engine import plan_for
    from evaluators.merge.inspect import format_reports, inspect_members
    from evaluators.pool import load_pool
    from optimizer.experiment.config import load_experiment

    data = read_yaml(args.pool)
    if isinstance(data, dict) and "objectives" in data:  # an experiment file: check the pool it names, for its method
        experiment, pool = load_experiment(args.pool, args.allow_pickle, args.allow_download)
        pool_file, method = experiment.pool, args.method or experiment.merge.method
    else:
        pool, pool_file = load_pool(args.pool, args.allow_pickle, args.allow_download), args.pool
        method = args.method or ("task_arithmetic" if pool.merge_base else "linear")
    plan = plan_for(pool, validate(MergeSpec, {"method": method}, "--method"))
    text = format_reports(plan, inspect_members(plan))
    print(text)
    warnings = sum(line.startswith("warning:") for line in text.splitlines())
    print(
        f"\nok: pool '{pool.name}' ({os.path.relpath(pool_file)}): {len(pool.members)} members, mergeable with {method}"
        + (f"; {warnings} warning{'s' * (warnings != 1)} above" if warnings else "")
    )
    return 0


def _tasks_fetch(args: argparse.Namespace) -> int:
    from datasets import config

    from evaluators.core.config import load_config
    from evaluators.scoring.datasets import TaskDataset, require_network
    from optimizer.experiment.config import Experiment

    require_network()
    experiment = load_config(Experiment, args.experiment)
    library = experiment.task_library()
    fetched: list[TaskDataset] = []
    for task in dict.fromkeys(o.task for o in [*experiment.objectives, *experiment.held_out]):
        for dataset in library.datasets(task):
            if not any(dataset.same_data(d) for d in fetched):
                print(f"{dataset.task}: {dataset.describe()}: {dataset.fetch()}", flush=True)
                fetched.append(dataset)
    print(f"{len(fetched)} datasets in the local cache {config.HF_DATASETS_CACHE}, where runs read them offline")
    return 0
