"""Resident mode: the pool lives once in worker memory (CPU or GPU) and each trial's merge is
written straight into the live model's tensors: no file I/O, no model re-instantiation.

Per tensor it keeps the unique sources stacked [U, ...] in float32 and, for LoRA members, only
their low-rank factors, so K adapters on one base cost one base plus K small factor pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from pydantic import Field

from evaluators.config import Frozen
from evaluators.errors import PoolError
from evaluators.merge import OPERATORS, MergeSpec, TensorInputs, read_inputs
from evaluators.merge.engine import plan_for
from evaluators.merge.point import MergePoint, ResolvedPoint, assign_groups
from evaluators.pool import Pool
from evaluators.pool.plan import PoolPlan


class MergeSource(Frozen):
    """What a resident merge is built from; plain data, so it can cross into a vLLM engine process."""

    pool: Pool
    merge: MergeSpec = MergeSpec()
    groups: dict[str, str] = Field(default_factory=dict)

    def model_dir(self) -> Path:
        """The folder whose config and tokenizer the live model is built from."""
        return self.pool.model_dir()

    def resident(self, device: torch.device) -> ResidentPool:
        return ResidentPool(plan_for(self.pool, self.merge), self.merge, device, self.groups)


class ResidentPool:
    def __init__(self, plan: PoolPlan, spec: MergeSpec, device: torch.device, groups: Mapping[str, str] | None = None) -> None:
        self.members = plan.members
        self.group_of = assign_groups(plan.tensors, groups or {})
        self.spec = spec
        self.fn = OPERATORS.get(spec.method).fn
        self.device = device
        self.inputs: dict[str, TensorInputs] = {}
        self.fixed: dict[str, torch.Tensor] = {}
        for key in plan.tensors:
            if plan.dtype(key).is_floating_point:
                self.inputs[key] = read_inputs(plan, key).resident(device)
            else:  # integer buffers are bookkeeping, the same in every member: taken from the first source
                self.fixed[key] = plan.sources[0].files.tensor(key).to(device)
        self._targets: Mapping[str, torch.Tensor] = {}

    def bind(self, targets: Mapping[str, torch.Tensor]) -> None:
        """Check once that pool and live model have the same tensor names and shapes, then keep them."""
        uncovered = sorted(set(targets) - set(self.inputs) - set(self.fixed))
        if uncovered:
            raise PoolError(f"the worker's model has tensors no pool member provides: {uncovered[:3]}")
        shapes = {k: tuple(x.sources.shape[1:]) for k, x in self.inputs.items()}
        shapes.update({k: tuple(t.shape) for k, t in self.fixed.items()})
        for key, shape in shapes.items():
            if key not in targets:
                raise PoolError(f"tensor '{key}' from the pool has no counterpart in the worker's model")
            if tuple(targets[key].shape) != shape:
                raise PoolError(
                    f"tensor '{key}' has shape {list(shape)} in the pool but {list(targets[key].shape)} in the worker's model"
                )
        self._targets = targets

    @torch.no_grad()
    def merged(self, point: MergePoint) -> Iterator[tuple[str, torch.Tensor]]:
        """The merge for ``point``, one tensor at a time (float32 for floating tensors), by safetensors name."""
        resolved = ResolvedPoint(point, self.members, self.spec, self.group_of, self.device)
        for key, x in self.inputs.items():
            yield key, self.fn(x, resolved.vector(key), resolved.spec)
        yield from self.fixed.items()

    @torch.no_grad()
    def merge_into(self, point: MergePoint) -> None:
        """Write the merge for ``point`` into the bound model's tensors, in their dtype."""
        for key, value in self.merged(point):
            self._targets[key].copy_(value)
