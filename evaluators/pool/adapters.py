"""PEFT LoRA adapters, read the way peft 0.21 reads them: ``adapter_config.json`` and the A/B factors,
keyed by base tensor name.

Per targeted module (the factors' name without ``base_model.model.``, which is the name peft gave it):
- ``r`` and ``lora_alpha`` default to 8 (``peft.LoraConfig``);
- its rank and alpha are those of the first ``rank_pattern`` / ``alpha_pattern`` key that matches its
  name as ``(.*\\.)?(key)$``, else the global ones (``peft.utils.other.get_pattern_key``);
- its scale is α/r, or α/√r with ``use_rslora`` (``LoraLayer.update_layer``);
- its delta is scale·B@A, transposed for a transformers ``Conv1D`` (GPT-2), whose weight is [in, out]:
  peft sets ``fan_in_fan_out`` from the module's class whatever the config says (``lora.layer.dispatch_default``),
  so the class is read from the live model, built on the meta device.
Anything peft merges other than as base + scale·B@A is refused with its cause.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evaluators.core.errors import PoolError
from evaluators.pool.files import CheckpointFiles

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLED = "adapter_model.bin"
PREFIX = "base_model.model."
DEFAULT_RANK = DEFAULT_ALPHA = 8  # peft.LoraConfig's defaults for r and lora_alpha
FIX = "merge it into its base with peft's merge_and_unload() and add the result as a 'finetune' member"
# peft's LoRA variants (LoraConfig fields tagged is_lora_variant): their merge is not base + scale·B@A, or there is none
VARIANTS = {
    "use_dora": "a DoRA adapter (use_dora), whose merge rescales W + ΔW to a trained norm per output feature (lora_magnitude_vector)",
    **{
        field: f"a {name} adapter ({field}), a LoRA variant"
        for field, name in (
            ("alora_invocation_tokens", "aLoRA"),
            ("arrow_config", "Arrow"),
            ("use_bdlora", "BD-LoRA"),
            ("velora_config", "VeLoRA"),
            ("monteclora_config", "MonteCLoRA"),
            ("kasa_config", "KaSA"),
            ("use_qalora", "QA-LoRA"),
        )
    },
}
# other fields that put more than the LoRA factors into the model, with what they do
EXTRAS = {
    "modules_to_save": "it saves full trained copies of modules {value} (modules_to_save), which replace the base's tensors",
    "trainable_token_indices": "it trains embedding rows {value} (trainable_token_indices) outside the LoRA factors",
    "target_parameters": "it adapts parameters {value} (target_parameters), not modules",
    "layer_replication": "it replicates layers (layer_replication), so its model is not its base's",
    "lora_bias": "its lora_B has a bias (lora_bias), which the merge adds to the base's bias",
}
# init_lora_weights that make peft rewrite the base weights whenever it loads the adapter (LoraLayer.update_layer)
REWRITES_BASE = ("pissa", "corda", "olora", "loftq", "lora_ga")
CONVERT = "have peft write it as plain LoRA (save_pretrained with path_initial_model_for_weight_conversion)"


@dataclass(frozen=True)
class LowRank:
    """ΔW = scale · b @ a in W's own layout: b [rows, r] the left factor, a [r, cols] the right one
    (peft's B and A for a Linear weight [out, in]; Aᵀ and Bᵀ for a Conv1D weight [in, out])."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float


@dataclass(frozen=True)
class Target:
    """One adapted module: its factors' tensor names and its rank and scale as peft computes them."""

    module: str
    a_key: str
    b_key: str
    rank: int
    scale: float


def _pattern(patterns: dict[str, Any], module: str, default: Any, field: str, owner: str) -> Any:
    """peft's ``get_pattern_key``: the first key, in file order, that matches the module's name as a dotted suffix."""
    for key, value in patterns.items():
        try:
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        except re.error as exc:
            raise PoolError(
                f"member '{owner}': {CONFIG} {field} key '{key}' is not a regular expression ({exc}); fix that key"
            ) from None
    return default


def _refusal(config: dict[str, Any], keys: list[str]) -> str | None:
    """Why peft merges this adapter other than as base + scale·B@A (or not at all), and the fix; None for plain LoRA."""
    kind = config.get("peft_type") or "LORA"
    causes = [] if kind == "LORA" else [f"a {kind} adapter (peft_type), not LoRA"]
    causes += [
        cause.format(value=config[field]) for field, cause in {**VARIANTS, **EXTRAS}.items() if config.get(field)
    ]
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(REWRITES_BASE):
        causes.append(
            f"its init_lora_weights '{init}' makes peft subtract fresh initial factors from the base weights "
            "whenever it loads the adapter"
        )
    embedding = next((k for k in keys if ".lora_embedding_" in k), None)
    if embedding:
        causes.append(
            f"it adapts an embedding ('{embedding.removeprefix(PREFIX).split('.lora_embedding_')[0]}', lora_embedding_A/B)"
        )
    bias = next((k for k in keys if k.endswith(".bias")), None)
    if bias:
        causes.append(f"it trains biases (bias: {config.get('bias', 'none')}, tensor '{bias}')")
    odd = next((k for k in keys if not k.endswith((".lora_A.weight", ".lora_B.weight"))), None)
    causes += [f"its tensor '{odd}' is not a LoRA factor"] if odd else []
    if not causes:
        return None
    fix = f"{CONVERT}, or {FIX}" if "init_lora_weights" in causes[0] else FIX
    return f"{causes[0]}; mergefront merges plain LoRA (base + scale·B@A) only: {fix}"


def _read_config(directory: Path, owner: str) -> dict[str, Any]:
    try:
        config = json.loads((directory / CONFIG).read_text())
    except FileNotFoundError:
        raise PoolError(f"member '{owner}': {directory / CONFIG} is missing; is this a PEFT LoRA adapter?") from None
    except json.JSONDecodeError as exc:
        raise PoolError(f"member '{owner}': {directory / CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise PoolError(f"member '{owner}': {directory / CONFIG} is not a JSON object; is this a PEFT LoRA adapter?")
    return config


def _rank_and_scale(config: dict[str, Any], module: str, owner: str) -> tuple[int, float]:
    """The module's rank and scale as peft's ``_create_and_replace`` and ``update_layer`` compute them."""
    rank = _pattern(config.get("rank_pattern") or {}, module, config.get("r", DEFAULT_RANK), "rank_pattern", owner)
    alpha = _pattern(
        config.get("alpha_pattern") or {}, module, config.get("lora_alpha", DEFAULT_ALPHA), "alpha_pattern", owner
    )
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise PoolError(
            f"member '{owner}': {CONFIG} gives '{module}' rank {rank!r} (r / rank_pattern); a rank is a positive integer"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise PoolError(
            f"member '{owner}': {CONFIG} gives '{module}' lora_alpha {alpha!r} (lora_alpha / alpha_pattern); set a number"
        )
    return rank, alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


class Adapter:
    """A LoRA adapter directory: each targeted base tensor's factors, with the rank and scale peft gives them."""

    def __init__(self, directory: Path, owner: str, allow_pickle: bool = False) -> None:
        self.owner = owner
        config = _read_config(directory, owner)
        self.files = CheckpointFiles(directory, owner, single=WEIGHTS, pickled=PICKLED, allow_pickle=allow_pickle)
        keys = self.files.keys()  # sorted tensor names (a list, not a dict view)
        refusal = _refusal(config, keys)
        if refusal:
            raise PoolError(f"member '{owner}': {refusal}")
        stems = {k.removesuffix(".lora_A.weight") for k in keys if k.endswith(".lora_A.weight")}
        lone = sorted(stems ^ {k.removesuffix(".lora_B.weight") for k in keys if k.endswith(".lora_B.weight")})
        if lone:
            raise PoolError(
                f"member '{owner}': '{lone[0]}' has only one of lora_A and lora_B in {directory}; the adapter file is incomplete"
            )
        self.targets: dict[str, Target] = {}
        for stem in sorted(stems):
            module = stem.removeprefix(PREFIX)
            rank, scale = _rank_and_scale(config, module, owner)
            self.targets[module + ".weight"] = Target(
                module, stem + ".lora_A.weight", stem + ".lora_B.weight", rank, scale
            )
        self.transposed: frozenset[str] = frozenset()  # base tensors of Conv1D modules, known after check_against

    def check_against(self, base_shapes: dict[str, tuple[int, ...]], base_name: str, conv1d: frozenset[str]) -> None:
        """Each factor pair has its module's rank and fits its base tensor: A [r, in] and B [out, r] for a Linear
        W [out, in], for a Conv1D module (one of ``conv1d``) W [in, out]."""
        for base_key, t in self.targets.items():
            a, b = self.files.info(t.a_key).shape, self.files.info(t.b_key).shape
            if len(a) == len(b) == 2 and (a[0], b[1]) != (t.rank, t.rank):
                rank = a[0] if a[0] == b[1] else f"{a[0]} and {b[1]}"
                raise PoolError(
                    f"member '{self.owner}': '{t.module}' has factors of rank {rank} (lora_A {list(a)}, lora_B {list(b)}) but "
                    f"{CONFIG} gives it rank {t.rank} (r / rank_pattern), so peft cannot load it either; restore the adapter's own {CONFIG}"
                )
            if base_key not in base_shapes:
                raise PoolError(
                    f"member '{self.owner}': the adapter targets '{base_key}', which base '{base_name}' does not have; "
                    "the adapter was trained on another base"
                )
            shape = base_shapes[base_key]
            if len(a) != 2 or len(b) != 2 or shape != ((a[1], b[0]) if t.module in conv1d else (b[0], a[1])):
                raise PoolError(
                    f"member '{self.owner}': factors {list(a)} and {list(b)} for '{base_key}' do not fit its shape "
                    f"{list(shape)} in base '{base_name}'; the adapter was trained on another base"
                )
        self.transposed = frozenset(k for k, t in self.targets.items() if t.module in conv1d)

    def factors(self, base_key: str) -> LowRank | None:
        """The delta of ``base_key`` in W's layout: a Conv1D module's factors transposed (and contiguous for row chunks)."""
        t = self.targets.get(base_key)
        if t is None:
            return None
        a, b = self.files.tensor(t.a_key), self.files.tensor(t.b_key)
        if base_key in self.transposed:
            return LowRank(b.T.contiguous(), a.T.contiguous(), t.scale)
        return LowRank(a, b, t.scale)
