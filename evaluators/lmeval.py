"""lm-eval wiring: build the task objects once, then score the live model on them per trial."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager, get_task_dict

from evaluators.errors import EvaluationError
from evaluators.tasks import TaskLibrary, TaskSpec


@dataclass(frozen=True)
class Score:
    """One objective's value, its standard error when lm-eval gives one, and the sample count."""

    value: float
    stderr: float | None
    samples: int


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" when it computes no stderr
    return out


class Scorer:
    """Scores a model on a fixed set of named task specs with lm-eval's ``simple_evaluate``.

    Task objects (datasets included) are built once; runs are grouped by (limit, few-shot)
    because those are per-call settings in lm-eval. With ``subset`` (screening), each task is
    scored on the same seeded random ``subset`` of its examples in every trial instead.
    """

    def __init__(
        self, specs: Mapping[str, TaskSpec], library: TaskLibrary, bootstrap_iters: int, seed: int, subset: int | None = None
    ) -> None:
        self.specs = dict(specs)
        self.bootstrap_iters = bootstrap_iters
        self.seed = seed
        self._manager = TaskManager(include_defaults=False)
        names = sorted({s.task for s in self.specs.values()})
        self._tasks = get_task_dict([library.config(n) for n in names], self._manager)
        self._subsets: dict[str, list[int]] | None = None
        if subset is not None:
            sizes = {n: len(self._tasks[n].eval_docs) for n in names}
            self._subsets = {n: sorted(random.Random(f"{seed}:{n}").sample(range(k), min(subset, k))) for n, k in sizes.items()}
        self._groups: dict[tuple[int | None, int | None], list[str]] = defaultdict(list)
        for spec in self.specs.values():
            group = self._groups[(spec.limit, spec.num_fewshot)]
            if spec.task not in group:
                group.append(spec.task)

    def score(self, lm: LM) -> dict[str, Score]:
        """Run every task once and read each objective's metric; missing metrics raise."""
        results: dict[tuple[int | None, int | None, str], dict[str, Any]] = {}
        samples: dict[tuple[int | None, int | None, str], int] = {}
        for (limit, fewshot), tasks in self._groups.items():
            out = simple_evaluate(
                model=lm,
                tasks=[self._tasks[t] for t in tasks],
                num_fewshot=fewshot,
                limit=None if self._subsets else limit,
                samples={t: self._subsets[t] for t in tasks} if self._subsets else None,
                bootstrap_iters=self.bootstrap_iters,
                log_samples=False,
                task_manager=self._manager,
                random_seed=self.seed,
                numpy_random_seed=self.seed,
                torch_random_seed=self.seed,
                fewshot_random_seed=self.seed,
            )
            if out is None:
                raise EvaluationError("lm-eval returned no results")
            for t in tasks:
                results[(limit, fewshot, t)] = out["results"][t]
                samples[(limit, fewshot, t)] = int(out.get("n-samples", {}).get(t, {}).get("effective", 0))
        return {name: self._read(name, spec, results, samples) for name, spec in self.specs.items()}

    @staticmethod
    def _read(name: str, spec: TaskSpec, results: dict, samples: dict) -> Score:
        key = (spec.limit, spec.num_fewshot, spec.task)
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
        return Score(value=value, stderr=stderr, samples=samples[key])
