"""Hugging Face transformers backend: one model built empty from the pool's config, merged into in
place every trial, scored by HFLM.

The model is built on the meta device and given uninitialised storage in its dtype, so start-up
costs no random initialisation of billions of parameters; the first merge writes every weight.
"""

from __future__ import annotations

import time

import torch
from accelerate import init_empty_weights
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel

from evaluators.backends.base import BACKENDS, BackendSpec, QuietRequests, SwapTimes
from evaluators.merge import MergePoint
from evaluators.merge.resident import MergeSetup
from evaluators.pool.plan import PoolPlan
from evaluators.pool.tiers import DEVICE_HEADROOM
from evaluators.scoring.lmeval import LmEvalScoring

GENERATION_CONFIG = "generation_config.json"


class QuietHFLM(QuietRequests, HFLM):
    """HFLM without per-request progress bars."""


def empty_model(source: MergeSetup, plan: PoolPlan, dtype: torch.dtype, device: torch.device) -> PreTrainedModel:
    """The model ``from_pretrained`` would build for the pool's merge (the model directory's config with the
    pool's vocabulary, untied where the files hold both tied tensors, its generation config), with its
    parameters uninitialised on ``device``; tied ones stay one tensor."""
    config = plan.model_config()
    if plan.untie:
        config.tie_word_embeddings = False
    with init_empty_weights(include_buffers=False):  # buffers (rotary tables) are computed for real
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=source.pool.trusts_remote_code)
    storage: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                if id(param) not in storage:
                    storage[id(param)] = torch.nn.Parameter(
                        torch.empty(param.shape, dtype=param.dtype, device=device), requires_grad=False
                    )
                module._parameters[name] = storage[id(param)]
    model.tie_weights()  # as from_pretrained does: a tied head is the embedding tensor itself
    if (source.model_dir() / GENERATION_CONFIG).is_file():
        model.generation_config = GenerationConfig.from_pretrained(source.model_dir(), local_files_only=True)
    return model.to(device).eval()


def live_targets(model: PreTrainedModel, plan: PoolPlan) -> dict[str, torch.Tensor]:
    """Each pool tensor's place in the live model (a parameter, a persistent buffer, or a view of a fused
    parameter), as transformers would load the file tensor of that name."""
    saved = model.state_dict(keep_vars=True)
    live = {
        **{k: v for k, v in model.named_buffers() if k in saved},
        **dict(model.named_parameters(remove_duplicate=False)),
    }
    return {key: slot.view(live[slot.name]) for key, slot in plan.slots.items()}


class HFBackend(LmEvalScoring):
    """Each merge is written straight into the model's tensors, so there is no separate swap step
    (``swap_seconds`` is 0)."""

    def __init__(self, spec: BackendSpec, source: MergeSetup) -> None:
        device = torch.device(spec.device)
        self.device = str(device)
        share = 1.0 - DEVICE_HEADROOM
        if device.type == "cuda" and spec.gpu_memory_fraction is not None:
            torch.cuda.set_per_process_memory_fraction(spec.gpu_memory_fraction, device)
            share *= spec.gpu_memory_fraction
        plan = source.plan()
        self.model = empty_model(source, plan, plan.model_dtype(spec.dtype), device)
        self.model_name = type(self.model).__name__
        tokenizer = AutoTokenizer.from_pretrained(
            source.model_dir(), local_files_only=True, trust_remote_code=source.pool.trusts_remote_code
        )
        self._lm = QuietHFLM(
            pretrained=self.model, tokenizer=tokenizer, batch_size=spec.resolved_batch_size, device=self.device
        )
        self.targets = live_targets(self.model, plan)
        self.merger, placed = source.merger(device, plan, resident_share=share)
        self.placement = f"pool tier {placed.tier} ({placed.reason})"
        self.merger.check_targets(self.targets)
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def swap(self, point: MergePoint) -> SwapTimes:
        """Merge ``point`` into the model's own tensors; on CUDA the time includes waiting for the device."""
        start = time.perf_counter()
        self.merger.merge_into(point, self.targets)
        self._sync()
        return SwapTimes(merge_seconds=time.perf_counter() - start, swap_seconds=0.0)


@BACKENDS.register("hf")
def build_hf(spec: BackendSpec, source: MergeSetup) -> HFBackend:
    """The ``hf`` backend's factory (registered in ``BACKENDS``)."""
    return HFBackend(spec, source)
