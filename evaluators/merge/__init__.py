"""Merge operators, one module each; importing this package registers them all."""

from evaluators.merge import linear  # noqa: F401  (registers "linear")
from evaluators.merge.base import OPERATORS, MergeOperator, MergeSpec

__all__ = ["OPERATORS", "MergeOperator", "MergeSpec"]
