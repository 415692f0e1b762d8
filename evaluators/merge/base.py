"""The merge-operator plug point: a pure function of one tensor's pool data, weights and knobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field, model_validator

from evaluators.config import Frozen, registered
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination, combine_into
from evaluators.registry import Registry


class MergeSpec(Frozen):
    """Which operator an experiment merges with, and its knobs.

    ``scale`` is the global λ of task-vector methods; ``density`` the share of entries TIES keeps;
    ``drop`` the probability p with which DARE drops an entry; ``seed`` makes DARE reproducible.
    """

    method: str = "linear"
    scale: float | None = None
    density: float | None = Field(default=None, gt=0.0, le=1.0)
    drop: float | None = Field(default=None, ge=0.0, lt=1.0)
    seed: int | None = None

    @model_validator(mode="after")
    def _knobs_fit_the_method(self) -> MergeSpec:
        registered(OPERATORS, self.method)
        info = OPERATORS.get(self.method)
        for knob in ("scale", "density", "drop", "seed"):
            if getattr(self, knob) is not None and knob not in info.knobs:
                allowed = ", ".join(sorted(info.knobs)) or "none"
                raise ValueError(f"knob '{knob}' does not apply to method '{self.method}' (its knobs: {allowed})")
        return self

    def knob(self, name: str) -> Any:
        """The knob's value, or the operator's default for it."""
        value = getattr(self, name)
        return OPERATORS.get(self.method).knobs[name] if value is None else value


# An operator returns either a Combination of the sources (linear methods: the kernel writes it
# straight into the output) or a dense float32 tensor (methods that need all values at once).
OperatorFn = Callable[[TensorInputs, torch.Tensor, MergeSpec], torch.Tensor | Combination]


@dataclass(frozen=True)
class Operator:
    """A merge function with what it needs: its knobs (with defaults) and whether it needs θ₀."""

    fn: OperatorFn
    knobs: dict[str, Any]
    needs_base: bool = False
    adapters_only: bool = False
    same_factors: bool = False  # averages the adapters' factors: one rank and scale per module

    def write(self, x: TensorInputs, w: torch.Tensor, spec: MergeSpec, out: torch.Tensor) -> None:
        """Merge one tensor into ``out`` (in ``out``'s dtype and device); ``w`` holds one weight per member."""
        result = self.fn(x, w, spec)
        if isinstance(result, Combination):
            combine_into(out, x.sources, result)
        else:
            out.copy_(result)


OPERATORS: Registry[Operator] = Registry("merge method")


def operator(
    name: str,
    knobs: dict[str, Any] | None = None,
    needs_base: bool = False,
    adapters_only: bool = False,
    same_factors: bool = False,
) -> Callable[[OperatorFn], OperatorFn]:
    """Register ``fn`` as merge method ``name``."""

    def add(fn: OperatorFn) -> OperatorFn:
        OPERATORS.register(name)(Operator(fn, knobs or {}, needs_base, adapters_only, same_factors))
        return fn

    return add
