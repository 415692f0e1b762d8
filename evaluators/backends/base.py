"""The model-backend plug point: build one resident model, expose its tensors, and an lm-eval LM."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

import torch
from lm_eval.api.model import LM
from pydantic import Field

from evaluators.config import Frozen
from evaluators.registry import Registry


class BackendSpec(Frozen):
    """How a worker holds and runs its model."""

    backend: str = "hf"
    device: str = Field(default="cpu", description="'cpu', 'cuda' or 'cuda:N'")
    batch_size: int | Literal["auto"] = 64
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads per worker")
    trust_remote_code: bool = False


class ModelBackend(Protocol):
    """A live model whose weights the worker overwrites in place before each evaluation."""

    device: torch.device

    def tensors(self) -> Mapping[str, torch.Tensor]:
        """Every live parameter and saved buffer, keyed by safetensors name; writes change the model."""
        ...

    def lm(self) -> LM:
        """The lm-eval model wrapper, built once around the live model."""
        ...


BackendFactory = Callable[[BackendSpec, Path], ModelBackend]
BACKENDS: Registry[BackendFactory] = Registry("model backend")
