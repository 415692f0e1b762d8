"""Model backends, one module each; importing this package registers them all."""

from evaluators.backends import hf  # noqa: F401  (registers "hf")
from evaluators.backends.base import BACKENDS, BackendSpec, ModelBackend

__all__ = ["BACKENDS", "BackendSpec", "ModelBackend"]
