"""Hugging Face transformers backend: one model built from the pool's config, scored by HFLM."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.models.huggingface import HFLM
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from evaluators.backends.base import BACKENDS, BackendSpec


class QuietHFLM(HFLM):
    """HFLM without its per-request progress bars (one trial would print several)."""

    def loglikelihood(self, requests, disable_tqdm: bool = True):  # type: ignore[no-untyped-def,override]
        return super().loglikelihood(requests, disable_tqdm=True)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):  # type: ignore[no-untyped-def,override]
        return super().loglikelihood_rolling(requests, disable_tqdm=True)

    def generate_until(self, requests, disable_tqdm: bool = True):  # type: ignore[no-untyped-def,override]
        return super().generate_until(requests, disable_tqdm=True)


class HFBackend:
    """Builds the model skeleton once from ``config.json`` (weights come from the first merge)."""

    def __init__(self, spec: BackendSpec, model_dir: Path) -> None:
        self.device = torch.device(spec.device)
        remote = spec.trust_remote_code
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=remote)
        self.model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote).to(self.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=remote)
        self._lm = QuietHFLM(pretrained=self.model, tokenizer=tokenizer, batch_size=spec.batch_size, device=str(self.device))
        saved = self.model.state_dict(keep_vars=True)
        persistent_buffers = {k: v for k, v in self.model.named_buffers() if k in saved}
        # named_parameters() lists a tied tensor once, so tied weights are written once and stay tied
        self._tensors = {**persistent_buffers, **dict(self.model.named_parameters())}

    def tensors(self) -> Mapping[str, torch.Tensor]:
        return self._tensors

    def lm(self) -> LM:
        return self._lm


@BACKENDS.register("hf")
def build_hf(spec: BackendSpec, model_dir: Path) -> HFBackend:
    return HFBackend(spec, model_dir)
