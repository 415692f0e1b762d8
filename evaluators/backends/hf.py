"""Hugging Face transformers backend: one model built from the pool's config, merged into in place, scored by HFLM."""

from __future__ import annotations

import time

import torch
from lm_eval.api.model import LM
from lm_eval.models.huggingface import HFLM
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from evaluators.backends.base import BACKENDS, BackendSpec, QuietRequests, SwapTimes
from evaluators.merge import MergePoint
from evaluators.resident import MergeSource


class QuietHFLM(QuietRequests, HFLM):
    """HFLM without per-request progress bars."""


class HFBackend:
    """Builds the model skeleton once from ``config.json``; each merge is written straight into its tensors,
    so there is no separate swap step (``swap_seconds`` is 0)."""

    def __init__(self, spec: BackendSpec, source: MergeSource) -> None:
        device = torch.device(spec.device)
        self.device = str(device)
        remote = source.pool.trusts_remote_code
        model_dir = source.model_dir()
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=remote)
        self.model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=remote)
        self._lm = QuietHFLM(pretrained=self.model, tokenizer=tokenizer, batch_size=spec.resolved_batch_size, device=self.device)
        saved = self.model.state_dict(keep_vars=True)
        persistent_buffers = {k: v for k, v in self.model.named_buffers() if k in saved}
        # named_parameters() lists a tied tensor once, so tied weights are written once and stay tied
        self.pool = source.resident(device)
        self.pool.bind({**persistent_buffers, **dict(self.model.named_parameters())})
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def swap(self, point: MergePoint) -> SwapTimes:
        start = time.perf_counter()
        self.pool.merge_into(point)
        self._sync()
        return SwapTimes(merge_seconds=time.perf_counter() - start, swap_seconds=0.0)

    def lm(self) -> LM:
        return self._lm


@BACKENDS.register("hf")
def build_hf(spec: BackendSpec, source: MergeSource) -> HFBackend:
    return HFBackend(spec, source)
