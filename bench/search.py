"""Sample efficiency of the samplers on a cheap but real objective: hypervolume vs evaluations.

Every evaluation is a real in-place merge of the toy pool scored by lm-eval (the objectives of
``experiments/toy.yaml`` with a small per-task limit) by one in-process worker; only exact
repeats of a weight vector (the baselines every run starts with) are answered from a memo.
Each sampler runs through the same space, baselines and Optuna ask/tell as ``mergefront search``,
sequentially (one worker), for several seeds. Hypervolume uses our own function with the
reference point 0 on every accuracy.

Prints, per sampler: the median hypervolume after 10/20/30/40 evaluations, and the median over
seeds of the evaluations each needed to reach random search's median hypervolume at the full
budget ("-" when it never did).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from evaluators.core.environment import apply_process_env

apply_process_env()  # before lm-eval and tqdm are imported: they read the environment once

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

from evaluators.merge.engine import plan_for
from evaluators.worker import Worker
from optimizer.experiment.config import load_experiment
from optimizer.sampler import SAMPLERS, SamplerContext
from optimizer.space.weights import space_for


class MemoWorker:
    """A worker whose exact repeats are looked up instead of re-evaluated (evaluation is deterministic)."""

    def __init__(self, worker: Worker, labels: list[str]) -> None:
        self.worker = worker
        self.labels = labels
        self.memo: dict[tuple, list[float]] = {}
        self.evaluations = 0
        self.seconds = 0.0

    def __call__(self, point: object) -> list[float]:
        key = (tuple(sorted(point.weights.items())), tuple(sorted(point.knobs.items())))  # type: ignore[attr-defined]
        if key not in self.memo:
            start = time.perf_counter()
            result = self.worker.evaluate(point)  # type: ignore[arg-type]
            self.seconds += time.perf_counter() - start
            self.evaluations += 1
            self.memo[key] = [result.scores[label].value for label in self.labels]
        return self.memo[key]


def run_one(
    sampler_name: str, seed: int, budget: int, experiment, space, evaluate: MemoWorker
) -> tuple[list[list[float]], float]:
    """Values of each evaluation in order, and seconds spent proposing."""
    context = SamplerContext(list(experiment.directions), space.features)
    study = optuna.create_study(directions=experiment.directions, sampler=SAMPLERS.get(sampler_name)(seed, context))
    for source, params in space.baselines():
        study.enqueue_trial(params, user_attrs={"source": str(source)})
    values, ask_seconds = [], 0.0
    for _ in range(budget):
        start = time.perf_counter()
        trial = study.ask(space.distributions())
        ask_seconds += time.perf_counter() - start
        v = evaluate(space.point(space.weights(trial.params), space.knob_values(trial.params)))
        study.tell(trial, v)
        values.append(v)
    return values, ask_seconds


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
    experiment = experiment.model_copy(
        update={"objectives": objectives, "evaluation": experiment.evaluation.model_copy(update={"bootstrap_iters": 0})}
    )
    space = space_for(experiment.space, experiment.merge, plan_for(pool, experiment.merge))
    evaluate = MemoWorker(Worker(experiment.worker_spec(pool)), experiment.labels)
    maximize = [d == "maximize" for d in experiment.directions]
    ref = [0.0] * len(maximize)

    curves: dict[str, list[list[float]]] = {}
    asks: dict[str, float] = {}
    for name in args.samplers.split(","):
        curves[name], asks[name] = [], 0.0
        for seed in range(args.seeds):
            values, seconds = run_one(name, seed, args.budget, experiment, space, evaluate)
            curves[name].append(hv_curve(values, ref, maximize))
            asks[name] += seconds
            print(f"  {name} seed {seed}: hv@{args.budget} {curves[name][-1][-1]:.4f}", flush=True)

    target = statistics.median(c[-1] for c in curves["random"]) if "random" in curves else None
    marks = [n for n in (10, 20, 30, 40) if n <= args.budget]
    print(
        f"\nhypervolume (ref 0), median over {args.seeds} seeds; {evaluate.evaluations} real evaluations, "
        f"{evaluate.seconds / max(evaluate.evaluations, 1):.2f} s each; limit {args.limit} per task"
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
        print(
            f"{name:<10}"
            + "".join(f"{m:9.4f}" for m in medians)
            + f"{shown:>17}{asks[name] / (args.seeds * args.budget):8.2f}"
        )


if __name__ == "__main__":
    main()
