"""What one trial costs beyond lm-eval's evaluation, ours vs the on-disk loop existing tools run.

Ours: a real ``mergefront`` search on the toy pool (Ray worker, Optuna journal, Parquet store),
one worker so that trials run back to back. Between the first trial's start and the last
trial's end, everything that is not lm-eval evaluating (merge, swap, Ray calls, asking the
sampler, Parquet writes, telling Optuna) is overhead.

On-disk baseline, in the same run and for the same weights: merge and write a model directory,
load a fresh model from it, wrap it for lm-eval and evaluate (task objects built once, which
favours the baseline). Its scores must equal ours: the same merge, scored the same way.

Prints, for both, the time per trial outside evaluation and its share of the trial, and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from evaluators.core.environment import apply_process_env

apply_process_env()  # before lm-eval and tqdm are imported: they read the environment once

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.backends.hf import QuietHFLM
from evaluators.merge import MergePoint
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.scoring.lmeval import Scorer
from optimizer.experiment.config import load_experiment
from optimizer.run.directory import create_run_dir
from optimizer.search.driver import Search
from optimizer.store.trials import TRIALS, TrialTable, read_trials


def our_trials(experiment, pool, runs: Path) -> TrialTable:  # type: ignore[no-untyped-def]
    run_dir = create_run_dir(runs, experiment.name, overwrite=True)
    Search.create(experiment, pool, run_dir).run(None, progress=False)
    return read_trials(run_dir, TRIALS)


def on_disk_trial(
    experiment, pool, scorer: Scorer, weights: dict[str, float], scratch: Path
) -> tuple[float, float, dict[str, float]]:  # type: ignore[no-untyped-def]
    """One trial the way a write-then-load tool runs it; returns (wall, eval seconds, scores)."""
    start = time.perf_counter()
    out = scratch / "merged"
    shutil.rmtree(out, ignore_errors=True)
    plan = plan_for(pool, experiment.merge)
    stream_merge(plan, experiment.merge, MergePoint(weights=weights), out, experiment.space.groups)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    lm = QuietHFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=experiment.workers.resolved_batch_size, device="cpu"
    )
    evaluated = time.perf_counter()
    scores = {k: s.value for k, s in scorer.score(lm).items()}
    end = time.perf_counter()
    return end - start, end - evaluated, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=Path("experiments/toy.yaml"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="examples per task (default: the experiment's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # one warning per freshly loaded model otherwise

    experiment, pool = load_experiment(args.experiment)
    objectives = [o.model_copy(update={"limit": args.limit or o.limit}) for o in experiment.objectives]
    experiment = experiment.model_copy(
        update={
            "name": "bench-trial",
            "objectives": objectives,
            "held_out": [],
            "budget": experiment.budget.model_copy(update={"trials": args.trials}),
            "workers": experiment.workers.model_copy(update={"count": 1}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        trials = our_trials(experiment, pool, Path(tmp) / "runs")
        done = trials.complete()
        timings = done.timings()
        wall = done.span_seconds()
        evaluation = float(timings["eval_seconds"].sum())

        spec = experiment.worker_spec(pool)
        torch.set_num_threads(spec.runtime.threads or torch.get_num_threads())  # the same threads as our worker
        scorer = Scorer(spec.objectives, experiment.task_library(), spec.bootstrap_iters, spec.seed)
        labels = experiment.labels
        disk_walls, disk_evals, mismatches = [], [], 0
        for row in sorted(done.records(), key=lambda r: r.started_at):
            w, e, scores = on_disk_trial(experiment, pool, scorer, row.weights, Path(tmp))
            disk_walls.append(w)
            disk_evals.append(e)
            mismatches += any(abs(scores[o] - row.scores[o]) > 1e-9 for o in labels)

    ours_outside = (wall - evaluation) / len(done)
    disk_outside = (sum(disk_walls) - sum(disk_evals)) / len(disk_walls)
    print(f"toy pool, {len(done)} trials, {len(labels)} objectives, one CPU worker")
    print(
        f"ours:    {wall / len(done):.3f} s per trial (median merge {timings['merge_seconds'].median() * 1000:.1f} ms, "
        f"swap {timings['swap_seconds'].median() * 1000:.1f} ms, eval {timings['eval_seconds'].median():.3f} s); "
        f"outside evaluation {ours_outside * 1000:.1f} ms = {ours_outside * len(done) / wall:.1%} of the trial"
    )
    print(
        f"on disk: {statistics.mean(disk_walls):.3f} s per trial (eval {statistics.median(disk_evals):.3f} s); "
        f"outside evaluation {disk_outside * 1000:.1f} ms = {disk_outside * len(disk_walls) / sum(disk_walls):.1%} of the trial"
    )
    print(
        f"time outside evaluation, on-disk / ours: {disk_outside / ours_outside:.2f}x; trials whose scores differ: {mismatches}"
    )
    print("(evaluation itself runs in a Ray worker for ours and in this process for the baseline, so compare the")
    print(" time outside it; the toy model is 0.3 M parameters, so writing and loading it is as cheap as it gets)")


if __name__ == "__main__":
    main()
