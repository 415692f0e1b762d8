"""lm-eval wiring: build the task objects once, then score the live model on them per trial."""

from __future__ import annotations

import json
import math
import numbers
import random
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from typing import Any

from lm_eval import simple_evaluate
from lm_eval.api.metrics import mean
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager, get_task_dict

from evaluators.core.errors import EvaluationError
from evaluators.scoring.score import Score, ScoreTasks
from evaluators.scoring.tasks import TaskLibrary, TaskSpec

RunKey = tuple[int | None, int | None, bool, str]


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" when it computes no stderr
    return out


class Scorer:
    """Scores a model on a fixed set of named task specs with lm-eval's ``simple_evaluate``.

    Specs are grouped by the settings lm-eval takes per call (limit, few-shot, chat template,
    generation kwargs); each group's task objects (datasets included) are built once, because
    lm-eval writes those settings into them. With ``subset`` (screening), each task is scored on
    the same seeded random ``subset`` of its examples in every trial instead of the limit. lm-eval logs
    each example's metrics, which become ``Score.per_sample`` (a few floats per example: small beside the
    evaluation itself).
    """

    def __init__(
        self,
        specs: Mapping[str, TaskSpec],
        library: TaskLibrary,
        bootstrap_iters: int,
        seed: int,
        subset: int | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.bootstrap_iters = bootstrap_iters
        self.seed = seed
        configs = {s.task: library.config(s.task) for s in self.specs.values()}
        self._manager = TaskManager(include_defaults=any(isinstance(c, str) for c in configs.values()))
        names: dict[RunKey, list[str]] = defaultdict(list)
        for spec in self.specs.values():
            if spec.task not in names[spec.run_key]:
                names[spec.run_key].append(spec.task)
        self._groups = {key: get_task_dict([configs[n] for n in tasks], self._manager) for key, tasks in names.items()}
        self._subsets: dict[str, list[int]] | None = None
        if subset is not None:
            sizes = {n: len(t.eval_docs) for group in self._groups.values() for n, t in group.items()}
            self._subsets = {
                n: sorted(random.Random(f"{seed}:{n}").sample(range(k), min(subset, k))) for n, k in sizes.items()
            }

    def score(self, lm: LM) -> dict[str, Score]:
        """Run every task once and read each objective's metric; missing metrics raise."""
        results: dict[tuple[RunKey, str], dict[str, Any]] = {}
        samples: dict[tuple[RunKey, str], int] = {}
        logged: dict[tuple[RunKey, str], list[dict[str, Any]]] = {}
        averaged: dict[tuple[RunKey, str], set[str]] = {}
        for key, tasks in self._groups.items():
            limit, fewshot, chat, gen_kwargs = key
            out = simple_evaluate(
                model=lm,
                tasks=list(tasks.values()),
                num_fewshot=fewshot,
                limit=None if self._subsets else limit,
                samples={t: self._subsets[t] for t in tasks} if self._subsets else None,
                apply_chat_template=chat,
                gen_kwargs=json.loads(gen_kwargs) or None,
                bootstrap_iters=self.bootstrap_iters,
                log_samples=True,
                task_manager=self._manager,
                random_seed=self.seed,
                numpy_random_seed=self.seed,
                torch_random_seed=self.seed,
                fewshot_random_seed=self.seed,
            )
            if out is None:
                raise EvaluationError("lm-eval returned no results")
            for t in tasks:
                results[(key, t)] = out["results"][t]
                samples[(key, t)] = int(out.get("n-samples", {}).get(t, {}).get("effective", 0))
                logged[(key, t)] = out.get("samples", {}).get(t, [])
                aggregation = tasks[t].aggregation() if hasattr(tasks[t], "aggregation") else {}  # a group: none
                averaged[(key, t)] = {m for m, f in aggregation.items() if f is mean}
        scores = {}
        for name, spec in self.specs.items():
            at = (spec.run_key, spec.task)
            scores[name] = self._read(name, spec, results, samples, _per_sample(spec, logged[at], averaged[at]))
        return scores

    @staticmethod
    def _read(name: str, spec: TaskSpec, results: dict, samples: dict, per_sample: tuple[float, ...]) -> Score:
        key = (spec.run_key, spec.task)
        row = results[key]
        if spec.result_key not in row:
            found = sorted(k for k in row if "," in k and "_stderr" not in k)
            raise EvaluationError(
                f"objective '{name}': lm-eval gave no '{spec.result_key}' for task '{spec.task}'; "
                f"it gave {found}: fix the objective's metric/filter"
            )
        value = _as_float(row[spec.result_key])
        if value is None or math.isnan(value):
            raise EvaluationError(f"objective '{name}': metric {spec.result_key} is {row[spec.result_key]!r}")
        stderr = _as_float(row.get(f"{spec.metric}_stderr,{spec.filter}"))
        return Score(value=value, stderr=stderr, samples=samples[key], per_sample=per_sample)


def _per_sample(spec: TaskSpec, logged: list[dict[str, Any]], averaged: set[str]) -> tuple[float, ...]:
    """The objective's metric of each logged example of its filter, by document id, when the task aggregates
    that metric as a mean of one number per example (``averaged``: such metrics), so that the mean of these
    values is the score; empty otherwise (perplexity logs log-likelihoods, BLEU reference/prediction pairs)."""
    if spec.metric not in averaged:
        return ()
    rows = sorted(
        ((s["doc_id"], s.get(spec.metric)) for s in logged if s.get("filter") == spec.filter), key=lambda r: r[0]
    )
    values: list[Any] = [v for _, v in rows]
    if not all(isinstance(v, numbers.Real) for v in values):
        return ()
    return tuple(float(v) for v in values)


class LmEvalScoring:
    """``ModelBackend.scorer`` for the backends that score with lm-eval (HF, vLLM): on their live
    model's lm-eval wrapper ``_lm``, built once."""

    _lm: LM

    def scorer(
        self,
        specs: Mapping[str, TaskSpec],
        library: TaskLibrary,
        bootstrap_iters: int,
        seed: int,
        subset: int | None = None,
    ) -> ScoreTasks:
        """A scorer for ``specs`` on this backend's lm-eval model; specs that share ``TaskSpec.run_key`` are scored
        in one lm-eval call."""
        return partial(Scorer(specs, library, bootstrap_iters, seed, subset).score, self._lm)
