"""Sample efficiency of the samplers on a cheap but real objective: hypervolume vs evaluations.

Every evaluation is a real in-place merge of the toy pool scored by lm-eval (the objectives of
``experiments/toy.yaml`` with a small per-task limit, no bootstrap, no screening and no held-out
tasks) by one in-process worker, loaded once and shared by every run; only exact repeats of
a weight vector (the baselines every run starts with) are answered from a memo. Each (sampler,
seed) is one ``mergefront search`` run: ``optimizer.search.driver.Search`` in a temporary run
directory, with the bench's memoising worker pool in place of Ray actors, so the space, baselines,
ask/tell loop and Parquet store are the search's own. Each run's scores are read back from its
``trials.parquet``, in trial order. Hypervolume is Optuna's, with the reference point 0 on every
accuracy.

Evaluations are counted as ``mergefront search`` counts trials: the budget of N evaluations is
``budget.trials = N``, the baselines Search enqueues (each single checkpoint, then the uniform
average) included as the first evaluations, and a memo hit counts as an evaluation of the run.

Prints, per sampler: the median hypervolume after 10/20/30/40 evaluations, the median over seeds of
the evaluations each needed to reach random search's median hypervolume at the full budget ("-"
when it never did), and the driver's seconds per proposal ("s/ask": the loop's time outside the
worker, i.e. ``study.ask`` plus the previous trial's Parquet write and ``study.tell``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.core.environment import apply_process_env

apply_process_env()  # before lm-eval and tqdm are imported: they read the environment once

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

from evaluators.merge import MergePoint
from evaluators.pool import Pool
from evaluators.worker import Promotion, TrialResult, Worker, WorkerSpec
from optimizer.experiment.config import Experiment, load_experiment
from optimizer.search.driver import Search
from optimizer.search.workers import InProcessWorkers
from optimizer.store.rows import TrialState
from optimizer.store.trials import TRIALS, read_trials


@dataclass
class Memo:
    """The results of the real evaluations, shared by all runs (evaluation is deterministic)."""

    worker: Worker
    results: dict[tuple[Any, ...], TrialResult] = field(default_factory=dict)
    seconds: float = 0.0

    def evaluate(self, point: MergePoint, promotion: Promotion | None) -> TrialResult:
        key = (
            tuple(sorted(point.weights.items())),
            tuple(sorted((g, tuple(sorted(w.items()))) for g, w in point.groups.items())),
            tuple(sorted(point.knobs.items())),
        )
        if key not in self.results:
            start = time.perf_counter()
            self.results[key] = self.worker.evaluate(point, promotion)
            self.seconds += time.perf_counter() - start
        return self.results[key]


class MemoWorkers(InProcessWorkers):
    """The in-process ``WorkerPool`` whose one worker is ``memo`` (shared by every run), for one run. Also
    measures the driver's time between calls (see the module docstring)."""

    def __init__(self, memo: Memo, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self.memo = memo
        self.calls = 0
        self.driver_seconds = 0.0
        self._returned = 0.0

    def build_worker(self) -> Memo:
        """The memo, instead of a new worker: the model is loaded once for all runs."""
        self._returned = time.perf_counter()
        return self.memo

    def call(self, worker: Any, method: str, *args: Any) -> Any:
        """The call, timed from the previous call's return (the driver's share)."""
        self.driver_seconds += time.perf_counter() - self._returned
        self.calls += 1
        done = super().call(worker, method, *args)
        self._returned = time.perf_counter()
        return done


def run_one(
    sampler_name: str, seed: int, budget: int, experiment: Experiment, pool: Pool, memo: Memo
) -> tuple[list[list[float]], float]:
    """One search run of ``budget`` trials: the scores of each trial in order, and the driver's seconds
    per proposal."""
    experiment = experiment.model_copy(
        update={
            "name": f"{sampler_name}-{seed}",
            "seed": seed,
            "sampler": experiment.sampler.model_copy(update={"name": sampler_name}),
            "budget": experiment.budget.model_copy(update={"trials": budget}),
        }
    )
    workers = MemoWorkers(memo, experiment.worker_spec(pool))
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        run_dir = Path(tmp) / experiment.name
        run_dir.mkdir()
        search = Search.create(experiment, pool, run_dir)
        search.workers = workers
        summary = search.run(progress=False)
        trials = read_trials(run_dir, TRIALS)
    if summary.failed or len(trials) != budget or trials.count(TrialState.COMPLETE) != budget:
        raise RuntimeError(f"{experiment.name}: {len(trials)} trials, {summary.failed} failed ({summary.stop_reason})")
    scores = trials.scores().set_axis(trials.numbers).sort_index()
    values = scores[list(experiment.labels)].to_numpy(dtype=float).tolist()
    return values, workers.driver_seconds / workers.calls


def hypervolume(values: np.ndarray, ref: list[float], maximize: list[bool]) -> float:
    """Optuna's exact hypervolume (minimisation only, every point within ``ref``): maximised objectives
    are negated and points not strictly better than ``ref`` everywhere are dropped (they add nothing)."""
    signs = np.where(np.asarray(maximize), -1.0, 1.0)
    points, r = np.asarray(values, dtype=float) * signs, np.asarray(ref, dtype=float) * signs
    inside = points[(points < r).all(axis=1)]
    return float(compute_hypervolume(inside, r)) if len(inside) else 0.0


def hv_curve(values: list[list[float]], ref: list[float], maximize: list[bool]) -> list[float]:
    return [hypervolume(np.array(values[: n + 1]), ref, maximize) for n in range(len(values))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=Path("experiments/toy.yaml"))
    parser.add_argument("--samplers", default="random,gp,tpe,nsga2,cmaes,surrogate")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--limit", type=int, default=50, help="examples per task")
    args = parser.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    experiment, pool = load_experiment(args.experiment)
    objectives = [o.model_copy(update={"limit": args.limit}) for o in experiment.objectives]
    evaluation = experiment.evaluation.model_copy(update={"bootstrap_iters": 0, "screen": None})
    experiment = experiment.model_copy(update={"objectives": objectives, "held_out": [], "evaluation": evaluation})
    memo = Memo(Worker(experiment.worker_spec(pool)))
    maximize = [d == "maximize" for d in experiment.directions]
    ref = [0.0] * len(maximize)

    curves: dict[str, list[list[float]]] = {}
    asks: dict[str, list[float]] = {}
    for name in args.samplers.split(","):
        curves[name], asks[name] = [], []
        for seed in range(args.seeds):
            values, seconds = run_one(name, seed, args.budget, experiment, pool, memo)
            curves[name].append(hv_curve(values, ref, maximize))
            asks[name].append(seconds)
            print(f"  {name} seed {seed}: hv@{args.budget} {curves[name][-1][-1]:.4f}", flush=True)

    target = statistics.median(c[-1] for c in curves["random"]) if "random" in curves else None
    marks = [n for n in (10, 20, 30, 40) if n <= args.budget]
    print(
        f"\nhypervolume (ref 0), median over {args.seeds} seeds; {len(memo.results)} real evaluations, "
        f"{memo.seconds / max(len(memo.results), 1):.2f} s each; limit {args.limit} per task"
    )
    if target is not None:
        print(f"target: random search's median hypervolume at {args.budget} evaluations = {target:.4f}")
    print(f"{'sampler':<10}" + "".join(f"{'hv@' + str(n):>9}" for n in marks) + f"{'evals to target':>17}{'s/ask':>8}")
    for name, runs in curves.items():
        medians = [statistics.median(c[n - 1] for c in runs) for n in marks]
        reach = [next((i + 1 for i, h in enumerate(c) if target is not None and h >= target), None) for c in runs]
        reached = sorted(r if r is not None else args.budget + 1 for r in reach)
        med = statistics.median(reached)
        shown = "-" if med > args.budget else f"{med:g}"
        print(f"{name:<10}" + "".join(f"{m:9.4f}" for m in medians) + f"{shown:>17}{statistics.mean(asks[name]):8.2f}")


if __name__ == "__main__":
    main()
