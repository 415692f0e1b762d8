"""Linear merge (model soup): θ = Σ_i w_i θ_i. Weights come from the search space as given."""

from __future__ import annotations

import torch

from evaluators.merge.base import OPERATORS


@OPERATORS.register("linear")
def linear(stack: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return torch.tensordot(weights, stack, dims=1)
