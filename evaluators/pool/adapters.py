"""PEFT LoRA adapters: read ``adapter_config.json`` and the A/B factors, keyed by base tensor name."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.errors import PoolError
from evaluators.pool.files import CheckpointFiles

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLED = "adapter_model.bin"
PREFIX = "base_model.model."


@dataclass(frozen=True)
class LowRank:
    """ΔW = scale · B @ A, with A [r, in] and B [out, r]."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float


class Adapter:
    """A LoRA adapter directory: its scale and the factor names for each targeted base tensor."""

    def __init__(self, directory: Path, owner: str, allow_pickle: bool = False) -> None:
        self.owner = owner
        try:
            config = json.loads((directory / CONFIG).read_text())
        except FileNotFoundError:
            raise PoolError(f"member '{owner}': {directory / CONFIG} is missing; is this a PEFT LoRA adapter?") from None
        except json.JSONDecodeError as exc:
            raise PoolError(f"member '{owner}': {directory / CONFIG} is not valid JSON ({exc})") from None
        r, alpha = int(config.get("r", 0)), float(config.get("lora_alpha", 0))
        if r <= 0:
            raise PoolError(f"member '{owner}': {CONFIG} has no positive rank 'r'")
        self.rank = r
        self.scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        self.files = CheckpointFiles(directory, owner, single=WEIGHTS, pickled=PICKLED, allow_pickle=allow_pickle)
        self.targets: dict[str, tuple[str, str]] = {}
        keys = self.files.keys()  # sorted tensor names (a list, not a dict view)
        for key in keys:
            if not key.endswith(".lora_A.weight"):
                if not key.endswith(".lora_B.weight"):
                    raise PoolError(
                        f"member '{owner}': adapter tensor '{key}' is not a LoRA factor; only plain LoRA "
                        "adapters (no modules_to_save, DoRA or bias) are supported"
                    )
                continue
            stem = key.removesuffix(".lora_A.weight")
            base_key = stem.removeprefix(PREFIX) + ".weight"
            self.targets[base_key] = (key, stem + ".lora_B.weight")

    def check_against(self, base_shapes: dict[str, tuple[int, ...]], base_name: str) -> None:
        """Every factor pair must fit a tensor of the base: A [r, in], B [out, r] for W [out, in]."""
        for base_key, (a_key, b_key) in self.targets.items():
            a, b = self.files.info(a_key).shape, self.files.info(b_key).shape
            if base_key not in base_shapes:
                raise PoolError(
                    f"member '{self.owner}': the adapter targets '{base_key}', which base '{base_name}' does not have; "
                    "the adapter was trained on another base"
                )
            out_in = base_shapes[base_key]
            if a != (self.rank, out_in[-1]) or b != (out_in[0], self.rank):
                raise PoolError(
                    f"member '{self.owner}': factors {list(a)} and {list(b)} for '{base_key}' do not fit its shape "
                    f"{list(out_in)} in base '{base_name}'; the adapter was trained on another base"
                )

    def factors(self, base_key: str) -> LowRank | None:
        if base_key not in self.targets:
            return None
        a_key, b_key = self.targets[base_key]
        return LowRank(self.files.tensor(a_key), self.files.tensor(b_key), self.scale)
