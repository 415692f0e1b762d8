"""Task arithmetic: θ = θ₀ + λ Σ_i w_i τ_i with τ_i = θ_i − θ₀ (weights may be negative)."""

from __future__ import annotations

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs


@operator("task_arithmetic", knobs={"scale": 1.0}, needs_base=True)
def task_arithmetic(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> torch.Tensor:
    # Σ w_i (θ_i − θ₀) = Σ w_i θ_i − (Σ w_i) θ₀, so the linear fast path (and low-rank terms) serve here too
    task_sum = x.weighted_sum(w) - float(w.sum()) * x.base
    return x.base + spec.knob("scale") * task_sum
