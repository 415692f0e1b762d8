"""Merge operators, one module each; importing this package registers them all.

Imports: ``evaluators.pool`` and the shared modules; never ``backends`` or the worker.
"""

from evaluators.merge import dare, linear, lora_factorwise, slerp, task_arithmetic, ties  # noqa: F401  (registration)
from evaluators.merge.base import OPERATORS, MergeSpec, Operator, declared_parameters, parameter_names
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.parameters import Parameter
from evaluators.merge.point import MergePoint

__all__ = [
    "OPERATORS",
    "MergePoint",
    "MergeSpec",
    "Operator",
    "Parameter",
    "TensorInputs",
    "declared_parameters",
    "parameter_names",
]
