"""Task arithmetic: θ = θ₀ + λ Σ_i w_i τ_i with τ_i = θ_i − θ₀ (weights may be negative).

Written as one linear combination, θ = Σ_i λw_i θ_i + (1 − λΣ_i w_i) θ₀, so it runs in the fused
kernel like a soup (low-rank terms included) and never materialises a task vector.
"""

from __future__ import annotations

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination
from evaluators.merge.parameters import Parameter

# The global λ of every task-vector method (mergekit's `lambda`); runs store it as `scale`, its name before.
LAMBDA = Parameter("lambda", 1.0, "λ of task-vector methods", stored_as="scale", formerly=("scale",))


@operator("task_arithmetic", parameters=(LAMBDA,), needs_base=True)
def task_arithmetic(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> Combination:
    """θ₀ + λ Σ_i w_i (θ_i − θ₀) as one combination of the sources (the base's coefficient absorbs −λΣw); ValueError
    without a merge base."""
    if x.base_index is None:
        raise ValueError("task_arithmetic needs a merge base")
    scale = float(spec.value(LAMBDA))
    combo = x.combination(scale * w)
    coef = list(combo.coef)
    coef[x.base_index] += 1.0 - scale * float(w.sum())
    return Combination(tuple(coef), combo.lowrank)
