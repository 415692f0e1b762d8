"""Model backends, one module each; importing this package registers them all."""

from evaluators.backends import hf, vllm_engine  # noqa: F401  (registers "hf", "vllm")
from evaluators.backends.base import BACKENDS, BackendSpec, ModelBackend, SwapTimes, VllmSpec

__all__ = ["BACKENDS", "BackendSpec", "ModelBackend", "SwapTimes", "VllmSpec"]
