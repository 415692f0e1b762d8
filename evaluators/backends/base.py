"""The model-backend plug point: one live model per worker, a way to swap a merge into it, and scorers
that score the live model on named task specs (lm-eval for the real backends)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import Field

from evaluators.core.config import Frozen, described
from evaluators.core.registry import Registry
from evaluators.merge import MergePoint
from evaluators.merge.resident import MergeSetup
from evaluators.scoring.score import ScoreTasks
from evaluators.scoring.tasks import TaskLibrary, TaskSpec


class VllmSpec(Frozen):
    """Engine settings passed through to ``vllm.LLM`` (the vLLM backend only)."""

    gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, description="share of GPU memory the engine may take"
    )
    max_model_len: int | None = Field(default=None, ge=1, description="context length (default: the model's)")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per engine; a worker holds that many")
    enforce_eager: bool = Field(default=False, description="skip CUDA graph capture: faster start, slower decode")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"


DEVICE = described(r"^(cpu|cuda(:\d+)?)$", "device", "'cpu', 'cuda' or 'cuda:N'")


class BackendSpec(Frozen):
    """How a worker holds and runs its model."""

    backend: str = "hf"
    device: str = Field(default="cpu", pattern=DEVICE, description="'cpu', 'cuda' or 'cuda:N'")
    batch_size: int | Literal["auto"] | None = Field(default=None, description="default: 'auto' on GPU, 64 on CPU")
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads per worker")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="the live model's dtype; default: what from_pretrained picks (config, else weights)"
    )
    pool: Literal["auto", "device", "host", "disk"] = Field(
        default="auto",
        description="where each worker keeps the pool's sources: device (a private copy on its device), host (one "
        "memory-mapped copy per node, shared), disk (read from the files each trial); auto picks from free memory",
    )
    gpu_memory_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="cap on the share of its GPU a worker may use (HF backend; the pool tier decision respects it)",
    )
    vllm: VllmSpec = VllmSpec()

    @property
    def on_gpu(self) -> bool:
        """True for 'cuda' and 'cuda:N' devices."""
        return self.device.startswith("cuda")

    @property
    def resolved_batch_size(self) -> int | Literal["auto"]:
        """``batch_size`` as set, else 'auto' on GPU (lm-eval finds the largest that fits) and 64 on CPU."""
        if self.batch_size is not None:
            return self.batch_size
        return "auto" if self.on_gpu else 64

    @property
    def gpus_per_worker(self) -> int:
        """GPUs one worker's model spans: the tensor-parallel group under vLLM, else one (none on CPU)."""
        if not self.on_gpu:
            return 0
        return self.vllm.tensor_parallel_size if self.backend == "vllm" else 1


class QuietRequests:
    """lm-eval LM mixin that turns off per-request progress bars (one trial would print several)."""

    def loglikelihood(self, requests, disable_tqdm: bool = True):
        """lm-eval's ``loglikelihood`` with its progress bar forced off, whatever the caller asks."""
        return super().loglikelihood(requests, disable_tqdm=True)  # type: ignore[misc]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):
        """lm-eval's ``loglikelihood_rolling`` with its progress bar forced off, whatever the caller asks."""
        return super().loglikelihood_rolling(requests, disable_tqdm=True)  # type: ignore[misc]

    def generate_until(self, requests, disable_tqdm: bool = True):
        """lm-eval's ``generate_until`` with its progress bar forced off, whatever the caller asks."""
        return super().generate_until(requests, disable_tqdm=True)  # type: ignore[misc]


@dataclass(frozen=True)
class SwapTimes:
    """Seconds spent computing the merge, and moving it into the live model beyond that."""

    merge_seconds: float
    swap_seconds: float


class ModelBackend(Protocol):
    """A live model whose weights are replaced by each trial's merge, built once per worker."""

    device: str
    placement: str  # the pool tier its sources are in, and why (a log line)
    model_name: str  # what scores the merges (the live model's class), for the worker's ready line

    def swap(self, point: MergePoint) -> SwapTimes:
        """Put the merge for ``point`` into the live model (every cache that keys on weights is reset)."""
        ...

    def scorer(
        self,
        specs: Mapping[str, TaskSpec],
        library: TaskLibrary,
        bootstrap_iters: int,
        seed: int,
        subset: int | None = None,
    ) -> ScoreTasks:
        """A scorer for ``specs``, built once (tasks and datasets loaded); with ``subset`` (screening) each
        task is scored on the same seeded ``subset`` of its examples every time."""
        ...


BackendFactory = Callable[[BackendSpec, MergeSetup], ModelBackend]
BACKENDS: Registry[BackendFactory] = Registry("model backend")
