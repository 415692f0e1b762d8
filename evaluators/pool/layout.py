"""How a model family's checkpoint tensors land in the model transformers builds from its config.

transformers 5 does not load every checkpoint by name: it renames keys (GPT-NeoX's ``embed_out``
is the model's ``lm_head``; GPT-2 files exist with and without the ``transformer.`` prefix) and
fuses some (Mixtral's and Qwen-MoE's files keep one tensor per expert, the model one stacked
``gate_up_proj``). A worker that writes merges into its live model by exact name fails on all of
these. This module asks transformers itself, through its conversion mapping for the model
(``get_model_conversion_mapping``, ``rename_source_key``), where each file tensor goes, and turns
the answer into a *slot*: a live tensor, or a view of a slice of a fused one. Writing a merged
file tensor into its slot is then exactly what ``from_pretrained`` would load.

Supported conversions: renames (with the base-model prefix added or stripped as transformers
does) and the stacking/concatenation of per-expert tensors (``MergeModulelist``,
``Concatenate``). Any other conversion is refused by name before a run starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from evaluators.core.errors import PoolError

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from transformers.core_model_loading import WeightConverter

# transformers' modeling code is imported by ModelLayout, not by this module: ``Slot`` stays light for
# the plan, and a one-off merge that needs no layout never pays seconds of imports.


@dataclass(frozen=True)
class Slot:
    """Where one file tensor lives in the model: ``name`` (a parameter or buffer), narrowed along
    ``narrow = (dim, start, length)`` and then indexed with ``select = ((dim, index), ...)``."""

    name: str
    narrow: tuple[int, int, int] | None = None
    select: tuple[tuple[int, int], ...] = ()

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        """The slice of ``tensor`` (the live ``name``) this file tensor fills; writable, shares storage."""
        if self.narrow is not None:
            tensor = tensor.narrow(*self.narrow)
        for dim, index in self.select:
            tensor = tensor.select(dim, index)
        return tensor


@dataclass
class _Group:
    """File tensors that one converter fuses into one live tensor."""

    converter: WeightConverter
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)  # file key -> (pattern index, expert index)


class ModelLayout:
    """The model of ``config`` built on the meta device, and transformers' key conversion for it."""

    def __init__(self, config: PretrainedConfig, trust_remote_code: bool = False) -> None:
        from accelerate import init_empty_weights
        from transformers import AutoModelForCausalLM
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming
        from transformers.pytorch_utils import Conv1D

        with init_empty_weights(include_buffers=True):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        self.model_type = str(config.model_type)
        self.meta: dict[str, torch.Tensor] = model.state_dict()
        self.prefix = model.base_model_prefix
        transforms = get_model_conversion_mapping(model)
        self._renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
        self._converters = [t for t in transforms if isinstance(t, WeightConverter)]
        self.vocabulary = self._embedding_names(model)
        # transformers' Conv1D modules (GPT-2) keep weights as [in, out]: peft transposes their LoRA delta
        self.conv1d = frozenset(name for name, module in model.named_modules() if isinstance(module, Conv1D))
        params = dict(model.named_parameters(remove_duplicate=False))
        first = {id(p): n for n, p in reversed(list(params.items()))}
        self.aliases = {n: first[id(p)] for n, p in params.items() if first[id(p)] != n}  # tied names -> their owner

    @staticmethod
    def _embedding_names(model: Any) -> set[str]:
        """Live names of the tensors whose rows are the vocabulary: the input and output embeddings."""
        modules = {id(m) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
        names = set()
        for module_name, module in model.named_modules(remove_duplicate=False):
            if id(module) in modules:
                names |= {f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)}
        return names

    def live_name(self, key: str) -> tuple[str, str | None]:
        """(live name, converter source pattern or None) for file key ``key``, as ``from_pretrained`` decides."""
        from transformers.core_model_loading import rename_source_key

        renamed, pattern = rename_source_key(key, self._renamings, self._converters, self.prefix, self.meta)
        if renamed not in self.meta and key in self.meta:
            renamed, pattern = rename_source_key(key, [], [], self.prefix, self.meta)
        return renamed, pattern

    def canonical(self, key: str) -> str:
        """``key`` with transformers' renamings and prefix rule applied (not its fusions): the same for two
        files that name one tensor differently, different for two experts."""
        from transformers.core_model_loading import rename_source_key

        return rename_source_key(key, self._renamings, [], self.prefix, self.meta)[0]

    def loads(self, key: str) -> bool:
        """Whether ``from_pretrained`` would load file tensor ``key`` (else it is an unexpected key)."""
        return self.live_name(key)[0] in self.meta

    def slots(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Slot]:
        """A slot for every file tensor transformers would load (keys it ignores are left out)."""
        out: dict[str, Slot] = {}
        groups: dict[str, _Group] = {}
        for key in shapes:
            name, pattern = self.live_name(key)
            if name not in self.meta:
                continue  # transformers ignores it too (an "unexpected key")
            if pattern is None:
                out[key] = Slot(name)
                continue
            converter = next(c for c in self._converters if pattern in c.source_patterns)
            group = groups.setdefault(name, _Group(converter))
            group.keys[key] = (converter.source_patterns.index(pattern), _expert_index(key, pattern))
        for name, group in groups.items():
            out.update(self._fused(name, group, shapes))
        return out

    def _fused(self, name: str, group: _Group, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Slot]:
        """Slots of the per-expert file tensors that ``MergeModulelist`` (+ ``Concatenate``) fuse into ``name``."""
        from transformers.core_model_loading import Concatenate, MergeModulelist

        ops = group.converter.operations
        stacking, concat = ops[0], (ops[1] if len(ops) == 2 else None)
        if not (
            isinstance(stacking, MergeModulelist)
            and (concat is None or isinstance(concat, Concatenate))
            and len(ops) <= 2
        ):
            raise PoolError(
                f"{self.model_type}: transformers builds '{name}' with {[type(op).__name__ for op in ops]}, which mergefront "
                "cannot write in place; merge and export work, but this architecture cannot be searched yet"
            )
        stack = stacking.dim
        patterns = sorted({j for j, _ in group.keys.values()})
        offsets, start = {}, 0
        for j in patterns:  # Concatenate keeps the converter's pattern order
            members = sorted((e, k) for k, (jj, e) in group.keys.items() if jj == j)
            stacked = list(shapes[members[0][1]])
            stacked.insert(stack, len(members))
            size = stacked[concat.dim] if concat is not None else 0
            offsets[j] = (start, size, {k: p for p, (_, k) in enumerate(members)})
            start += size
        slots = {}
        for key, (j, _) in group.keys.items():
            begin, size, position = offsets[j]
            narrow = (concat.dim, begin, size) if concat is not None else None
            slots[key] = Slot(name, narrow, ((stack, position[key]),))
        meta = self.meta[name]
        counts = {len(position) for _, _, position in offsets.values()}
        complete = counts == {meta.shape[stack]} and (concat is None or start == meta.shape[concat.dim])
        for key, slot in slots.items():
            if not complete or tuple(slot.view(meta).shape) != tuple(shapes[key]):
                raise PoolError(
                    f"{self.model_type}: the files' tensors for '{name}' {list(meta.shape)} do not fill it as transformers "
                    f"fuses them (e.g. '{key}' {list(shapes[key])}); the checkpoint does not match its config"
                )
        return slots


def _expert_index(key: str, pattern: str) -> int:
    """The number a converter pattern's ``*`` stands for in ``key`` (the expert)."""
    regex = re.escape(pattern).replace(r"\*", r"(\d+)")
    match = re.search(regex, key)
    return int(match.group(1)) if match and match.groups() else 0
