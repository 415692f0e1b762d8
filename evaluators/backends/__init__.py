"""Model backends, one module each. Each is registered here by name and imported when a worker first
builds it, so reading an experiment does not import lm-eval's models (or vLLM).

Imports: ``evaluators.scoring``, ``evaluators.merge``, ``evaluators.pool`` and ``evaluators.core``; never
the worker.
"""

from evaluators.backends.base import (
    BACKENDS,
    BackendSpec,
    ModelBackend,
    SwapTimes,
    VllmSpec,
)

BACKENDS.provided_by("hf", "evaluators.backends.hf")
BACKENDS.provided_by("vllm", "evaluators.backends.vllm_engine")
BACKENDS.provided_by("dummy", "evaluators.backends.dummy")

__all__ = ["BACKENDS", "BackendSpec", "ModelBackend", "SwapTimes", "VllmSpec"]
