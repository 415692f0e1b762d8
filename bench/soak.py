"""Soak: a long search of short trials while a random worker is SIGKILLed every N completed trials.

A real ``mergefront search`` (its own driver process, a local Ray, the toy pool, every objective
limited to a few examples) runs ``--trials`` trials with ``--workers`` workers. This script watches
``trials.parquet`` and kills a random worker actor process each time ``--kill-every`` more trials
have completed. At the end it reads the Parquet store and the Optuna journal and prints:
completed, failed, retried (killed trials whose re-queued copy completed) and lost (trials killed
and never completed, or budget not met), which must be 0, plus duplicate trial numbers (also 0).
Run ``make toy`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil
import ray
import yaml

from optimizer.store.journal import journal_storage
from optimizer.store.rows import TrialState
from optimizer.store.study import JOURNAL, requeued_from
from optimizer.store.trials import TRIALS, read_trials

ROOT = Path(__file__).resolve().parent.parent


def soak_experiment(directory: Path, trials: int, workers: int, limit: int) -> Path:
    """The demo experiment, cut down: each objective on ``limit`` examples, no held-out tasks, random sampler."""
    spec = yaml.safe_load((ROOT / "experiments" / "toy.yaml").read_text())
    spec.update(
        name="soak",
        pool=str(ROOT / "checkpoints.yaml"),
        tasks_dir=str(ROOT / "experiments" / "tasks" / "toy"),
        objectives=[{**o, "limit": limit} for o in spec["objectives"]],
        held_out=[],
        sampler={"name": "random"},
        budget={"trials": trials},
        workers={**spec["workers"], "count": workers},
        evaluation={"bootstrap_iters": 0},
    )
    path = directory / "soak.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def worker_pids() -> list[int]:
    """Worker actors of the Ray this script started (its descendants), never another Ray's on the machine."""
    pids = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # it may have exited meanwhile
            if proc.cmdline()[:1] and proc.cmdline()[0].startswith("ray::Worker"):
                pids.append(proc.pid)
    return pids


def completed(run_dir: Path) -> int:
    if not (run_dir / TRIALS).is_file():
        return 0
    return read_trials(run_dir, TRIALS).count(TrialState.COMPLETE)


def run_with_kills(experiment: Path, runs: Path, address: str, kill_every: int, seed: int) -> tuple[int, int]:
    """Run the search, killing a random worker every ``kill_every`` completed trials; (kills, exit code)."""
    rng = random.Random(seed)
    driver = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mergefront")),
            "search",
            str(experiment),
            "--runs-dir",
            str(runs),
            "--no-progress",
            "--ray-address",
            address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    kills, next_kill = 0, kill_every
    while driver.poll() is None:
        if completed(runs / "soak") >= next_kill and (pids := worker_pids()):
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
            next_kill += kill_every
        time.sleep(0.1)
    print(driver.stdout.read() if driver.stdout else "", end="")
    return kills, driver.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=int, default=20)
    parser.add_argument("--limit", type=int, default=20, help="examples per objective")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (ROOT / "toy" / "manifest.json").is_file():
        print("the toy pool is missing: run `make toy` first", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        experiment = soak_experiment(Path(tmp), args.trials, args.workers, args.limit)
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        try:
            kills, code = run_with_kills(
                experiment, Path(tmp) / "runs", ray.get_runtime_context().gcs_address, args.kill_every, args.seed
            )
        finally:
            ray.shutdown()
        run = Path(tmp) / "runs" / "soak"
        trials = read_trials(run, TRIALS)
        study_trials = optuna.load_study(
            study_name="soak", storage=journal_storage(run / JOURNAL)
        ).trials  # read before tmp goes
    states = {t.number: t.state for t in study_trials}
    requeued = {n: t.number for t in study_trials if (n := requeued_from(t)) is not None}
    died = [r.trial for r in trials.records() if "died" in (r.error or "")]
    retried = sum(1 for n in died if states.get(requeued.get(n, -1)) == optuna.trial.TrialState.COMPLETE)
    done = trials.count(TrialState.COMPLETE)
    lost = (len(died) - retried) + max(0, args.trials - done)
    print(
        f"\nsoak: {args.trials} trials, {args.workers} workers, a worker killed every {args.kill_every} completed trials"
    )
    print(f"  driver exit code {code}; wall time {time.perf_counter() - start:.0f} s; workers killed {kills}")
    print(
        f"  completed {done}, failed {int((trials['state'] == 'FAIL').sum())}, retried {retried}, lost {lost}, "
        f"duplicate trial numbers {int(trials['trial'].duplicated().sum())}"
    )
    return 0 if code == 0 and lost == 0 and trials["trial"].is_unique else 1


if __name__ == "__main__":
    sys.exit(main())
