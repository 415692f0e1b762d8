"""Dummy backend: the live tensors of the HF backend, merged in place by the same engine, scored by a
fixed smooth function of a few merged values instead of lm-eval (as lm-eval's own ``DummyLM`` stands in
for a model). It makes the search loop, resume, faults, warm start, budgets and screening testable in
seconds: only the scoring is synthetic.

Each task has three probes, seeded by its name: a merged tensor and 64 of its elements, standardised by
the spread of those elements across the pool's sources and projected on a fixed random direction. A
probe value ``z`` is about N(0, 1) over single checkpoints and moves smoothly between them; the task's
``p = 0.5 + 0.45 * mean(sin(1.3 z + phase))`` is then read as an accuracy on ``n`` examples (rounded
to k/n, with the sample standard error) or, for a perplexity or bits-per-byte metric, as
``exp(3 - 2p)``. The same merge gives the same scores in any process; nothing is timed or random.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from evaluators.backends.base import BACKENDS, BackendSpec, SwapTimes
from evaluators.merge import MergePoint
from evaluators.merge.resident import MergeSetup
from evaluators.pool.plan import PoolPlan
from evaluators.pool.tiers import DEVICE_HEADROOM
from evaluators.scoring.score import Score, ScoreTasks
from evaluators.scoring.tasks import TaskLibrary, TaskSpec

EXAMPLES = 100  # a task's size when its spec sets no limit
PROBES = 3
ELEMENTS = 64
LOWER_IS_BETTER = ("perplexity", "bits_per_byte")


@dataclass(frozen=True)
class _Probe:
    key: str
    index: torch.Tensor  # flat positions in the tensor
    mean: torch.Tensor  # over the pool's sources, at those positions
    scale: torch.Tensor
    direction: torch.Tensor  # unit length
    phase: float


def _probes(task: str, plan: PoolPlan, keys: list[str]) -> list[_Probe]:
    """The task's probes: the same for a task name in every process (the generator is seeded by it)."""
    generator = torch.Generator().manual_seed(zlib.crc32(task.encode()))
    chosen = torch.randperm(len(keys), generator=generator)[:PROBES].tolist()
    probes = []
    for i in sorted(chosen):
        key = keys[i]
        numel = math.prod(plan.tensors[key].shape)
        index = torch.randint(numel, (min(ELEMENTS, numel),), generator=generator)
        values = torch.stack([s.read(key).reshape(-1)[index].double() for s in plan.sources if key in s.key_of])
        mean = values.mean(dim=0)
        spread = values.std(dim=0, correction=0) if len(values) > 1 else torch.zeros_like(mean)
        direction = torch.randn(len(index), generator=generator, dtype=torch.float64)
        probes.append(
            _Probe(
                key=key,
                index=index,
                mean=mean,
                scale=spread.clamp_min(1e-6) + 1e-3 * mean.abs(),
                direction=direction / direction.norm(),
                phase=float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * math.pi,
            )
        )
    return probes


class DummyScorer:
    """Scores the live tensors on named task specs; ``subset`` (screening) scores on that many examples."""

    def __init__(
        self,
        targets: Mapping[str, torch.Tensor],
        plan: PoolPlan,
        specs: Mapping[str, TaskSpec],
        bootstrap_iters: int,
        subset: int | None = None,
    ) -> None:
        self.targets = targets
        self.specs = dict(specs)
        self.bootstrap_iters = bootstrap_iters
        self.subset = subset
        keys = _probe_keys(plan)
        self._probes = {s.task: _probes(s.task, plan, keys) for s in self.specs.values()}

    def __call__(self) -> dict[str, Score]:
        """Score every spec on the live tensors as they are now: the task's ``p`` read as its metric."""
        return {name: self._score(spec) for name, spec in self.specs.items()}

    def p(self, task: str) -> float:
        """The task's underlying value in (0.05, 0.95), from the merged tensors as they are now."""
        waves = []
        for probe in self._probes[task]:
            live = self.targets[probe.key].detach().reshape(-1)[probe.index].to("cpu", torch.float64)
            z = float(((live - probe.mean) / probe.scale) @ probe.direction)
            waves.append(math.sin(1.3 * z + probe.phase))
        return 0.5 + 0.45 * sum(waves) / len(waves)

    def _score(self, spec: TaskSpec) -> Score:
        n = spec.limit or EXAMPLES
        if self.subset is not None:
            n = min(n, self.subset)
        p = self.p(spec.task)
        if any(kind in spec.metric for kind in LOWER_IS_BETTER):
            value = math.exp(3.0 - 2.0 * p)
            stderr = value * 0.5 / math.sqrt(n)
        else:
            value = round(p * n) / n
            stderr = math.sqrt(value * (1 - value) / (n - 1)) if n > 1 else 0.0
        return Score(value=value, stderr=stderr if self.bootstrap_iters > 0 else None, samples=n)


def _probe_keys(plan: PoolPlan) -> list[str]:
    """Floating tensors that every source holds in the merged shape (no padded vocabulary), sorted."""
    keys = sorted(k for k in plan.tensors if plan.dtype(k).is_floating_point)
    shape = {k: tuple(plan.tensors[k].shape) for k in keys}
    same = [k for k in keys if all(k in s.key_of and tuple(s.info(k).shape) == shape[k] for s in plan.sources)]
    return same or keys


class DummyBackend:
    """The pool's tensors as the live model, written in place by the merge engine; no model, no lm-eval."""

    def __init__(self, spec: BackendSpec, source: MergeSetup) -> None:
        device = torch.device(spec.device)
        self.device = str(device)
        self.model_name = "dummy scorer (no model)"
        self.plan = source.plan()
        dtype = self.plan.model_dtype(spec.dtype)
        self.targets = {
            key: torch.empty(
                info.shape,
                dtype=dtype if self.plan.dtype(key).is_floating_point else self.plan.dtype(key),
                device=device,
            )
            for key, info in self.plan.tensors.items()
        }
        self.merger, placed = source.merger(device, self.plan, resident_share=1.0 - DEVICE_HEADROOM)
        self.placement = f"pool tier {placed.tier} ({placed.reason})"
        self.merger.check_targets(self.targets)

    def swap(self, point: MergePoint) -> SwapTimes:
        """Merge ``point`` straight into the live tensors; nothing is moved after, so ``swap_seconds`` is 0."""
        start = time.perf_counter()
        self.merger.merge_into(point, self.targets)
        return SwapTimes(merge_seconds=time.perf_counter() - start, swap_seconds=0.0)

    def scorer(
        self,
        specs: Mapping[str, TaskSpec],
        library: TaskLibrary,
        bootstrap_iters: int,
        seed: int,
        subset: int | None = None,
    ) -> ScoreTasks:
        """Scores from the merged tensors; the task library is not read (nothing is loaded)."""
        return DummyScorer(self.targets, self.plan, specs, bootstrap_iters, subset)


@BACKENDS.register("dummy")
def build_dummy(spec: BackendSpec, source: MergeSetup) -> DummyBackend:
    """The ``dummy`` backend's factory (registered in ``BACKENDS``)."""
    return DummyBackend(spec, source)
