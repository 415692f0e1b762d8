"""Linear merge (model soup): θ = Σ_i w_i θ_i. For LoRA members this is the exact weighted sum
of their B·A deltas on the base (Σ w_i s_i B_i A_i), computed without densifying K adapters."""

from __future__ import annotations

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination


@operator("linear", normalize=True)
def linear(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> Combination:
    """Σ_i w_i θ_i as a ``Combination``; weights are used as given (``normalize=True``: ``mergefront merge`` divides
    them by their sum first, as mergekit's linear does by default)."""
    return x.combination(w)
