"""Samplers by name: one registry entry per way an experiment can propose weights.

Every sampler sees every objective's value (the study is always multi-objective), so a front
exists whatever the sampler. A new sampler is one module here that registers itself in
``SAMPLERS``, plus its import below.

Imports: ``base`` imports nothing of mergefront but the registry; the sampler modules import
``base`` (and ``optimizer.store.pareto``, the dominance test); nothing here imports the search or
``evaluators`` beyond the registry.
"""

from optimizer.sampler import optuna_samplers, scalarised, surrogate  # noqa: F401 - they register themselves
from optimizer.sampler.base import SAMPLERS, SamplerContext, SamplerFactory

__all__ = ["SAMPLERS", "SamplerContext", "SamplerFactory"]
