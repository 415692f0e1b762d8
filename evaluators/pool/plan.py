"""How each member's weights are built from the pool's directories, checked once before any work.

Every member's value for a tensor is a fixed linear mix of unique *source* directories
(full checkpoints and bases) plus, for LoRA members, a low-rank term:

    checkpoint  θ_i                     base      θ_b
    finetune    θ_i                     transfer  θ_tb + s·(θ_sft − θ_sb)
    lora        θ_b + s·B·A

so merge operators, the worker and export all share one representation: the sources (in their
stored dtype, wherever the pool tier keeps them), a mixing matrix [K, U], and the low-rank factors.
Vocabulary tensors (embedding and head rows) of sources with a smaller vocabulary count as
zero-padded to the largest: the kernel treats their missing rows as zeros, nothing is copied.

Where each file tensor lands in the model transformers builds (``ModelLayout``) takes importing
transformers' modeling code, seconds of a one-off merge's wall time; an inexact plan (export,
``mergefront merge``) skips it when nothing needs it: every source has the same tensor names and
vocabulary and no member is an adapter. The merged tensors are the same either way.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evaluators.core.errors import PoolError, first_line
from evaluators.pool.adapters import Adapter, LowRank
from evaluators.pool.config import (
    BaseMember,
    CheckpointMember,
    FinetuneMember,
    LoraMember,
    Member,
    Pool,
    TransferMember,
)
from evaluators.pool.directory import ModelDirectory, model_type_fix, read_config
from evaluators.pool.files import CheckpointFiles, TensorInfo
from evaluators.pool.layout import Slot

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from evaluators.pool.layout import ModelLayout

SHOWN = 3  # how many offending tensor names an error lists
MERGEABLE = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
)  # floating dtypes that widen to float32 (float8 needs its scales)


class PoolPlan:
    """The checked pool: sources, mixing matrix, adapters, merge base and output tensor shapes."""

    def __init__(self, pool: Pool, need_base: bool = False, exact: bool = True) -> None:
        self.pool = pool
        self.members = list(pool.names)
        self.sources: list[ModelDirectory] = []
        self._index: dict[Path, int] = {}
        rows = [self._row(m) for m in pool.members]
        self.base_index: int | None = None
        if need_base:
            if pool.merge_base is None:
                raise PoolError("this merge method needs a base θ₀: declare one under 'bases' (and 'base:' if several)")
            self.base_index = self._source(pool.bases[pool.merge_base].path, pool.merge_base)
        self.mix = torch.zeros(len(rows), len(self.sources), dtype=torch.float64)
        for i, row in enumerate(rows):
            for u, coef in row.items():
                self.mix[i, u] += coef
        self.adapters = {
            i: Adapter(m.path, m.name, pool.allow_pickle)
            for i, m in enumerate(pool.members)
            if isinstance(m, LoraMember)
        }
        self.vocab = max(s.vocab for s in self.sources)
        self._check_model_config()
        self.exact = exact or bool(self.adapters) or len({s.vocab for s in self.sources}) > 1 or not self._same_names()
        self.slots: dict[str, Slot] = {}
        self.tensors = self._check_sources() if self.exact else self._same_sources()
        live_shapes = {
            self.slots[k].name: v.shape for k, v in self.tensors.items() if self.slots[k] == Slot(self.slots[k].name)
        }
        for i, adapter in self.adapters.items():
            adapter.check_against(live_shapes, pool.members[i].base, self.layout.conv1d)  # type: ignore[union-attr]

    def _check_model_config(self) -> None:
        """The live model is built from one directory's config.json, read once here. If it asks to import the
        checkpoint's own Python code (``auto_map``), its pool entry must say ``trust_remote_code: true``;
        otherwise it must name a model type transformers knows. Checked from the config alone, so that a
        plan that skips the layout checks it too."""
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        directory = self.pool.model_dir()
        config = read_config(directory, self.pool.tokenizer or self.members[0])
        auto_map = config.get("auto_map")
        if auto_map and not self.pool.trusts_remote_code:
            raise PoolError(
                f"{directory / 'config.json'} asks to run the checkpoint's own Python code (auto_map: "
                f"{', '.join(sorted(auto_map))}); set 'trust_remote_code: true' on its entry in the pool file "
                "only if you trust that code"
            )
        if config.get("model_type") not in CONFIG_MAPPING_NAMES and not auto_map:
            raise PoolError(
                f"'{self.pool.tokenizer or self.members[0]}': {directory / 'config.json'} {model_type_fix(config)}"
            )

    def _source(self, directory: Path, label: str) -> int:
        if directory not in self._index:
            config = read_config(directory, label)
            quantized = config.get("quantization_config")
            if quantized:
                method = quantized.get("quant_method", "?") if isinstance(quantized, dict) else "?"
                raise PoolError(
                    f"'{label}': {directory} is a quantized checkpoint (quantization_config: {method}), whose packed "
                    "weights cannot be interpolated; merge the unquantized (float) checkpoints and quantize the result"
                )
            arch = f"{config.get('model_type', '?')}:{','.join(config.get('architectures') or ['?'])}"
            files = CheckpointFiles(directory, label, allow_pickle=self.pool.allow_pickle)
            self._index[directory] = len(self.sources)
            vocab = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size") or 0
            self.sources.append(ModelDirectory(label, directory, files, arch, int(vocab)))
        return self._index[directory]

    def _row(self, m: Member) -> dict[int, float]:
        """The member's value as {source index: coefficient}."""
        bases = self.pool.bases
        if isinstance(m, CheckpointMember | FinetuneMember):
            return {self._source(m.path, m.name): 1.0}
        if isinstance(m, BaseMember | LoraMember):
            return {self._source(bases[m.base].path, m.base): 1.0}
        assert isinstance(m, TransferMember)
        row: dict[int, float] = {}
        for directory, coef, label in (
            (bases[m.target_base].path, 1.0, m.target_base),
            (m.source_finetune, m.scale, m.name),
            (m.source_base, -m.scale, m.name),
        ):
            u = self._source(directory, label)
            row[u] = row.get(u, 0.0) + coef
        return row

    @cached_property
    def layout(self) -> ModelLayout:
        """Where each file tensor lands in the model transformers builds from the pool's config."""
        from evaluators.pool.layout import ModelLayout

        return ModelLayout(self.model_config(), self.pool.trusts_remote_code)

    def _same_names(self) -> bool:
        first = self.sources[0].files.keys()
        return all(s.files.keys() == first for s in self.sources[1:])

    def _same_sources(self) -> dict[str, TensorInfo]:
        """Sources with one set of tensor names and one vocabulary: every file tensor is merged by its name
        (a tensor transformers would not load is merged too; loading the result skips it again)."""
        for src in self.sources:
            src.key_of = {k: k for k in src.files.keys()}  # noqa: SIM118 - CheckpointFiles, not a dict
        self.slots = {k: Slot(k) for k in self.sources[0].key_of}
        return self._check_shapes({k: self.sources[0].info(k) for k in self.slots})

    def _check_sources(self) -> dict[str, TensorInfo]:
        """Line up every source's tensors by where transformers loads them; the first source's file names
        name the plan's tensors. Files tensors transformers ignores are left out (and listed per source)."""
        first = self.sources[0]
        shapes = {k: first.files.info(k).shape for k in first.files.keys()}  # noqa: SIM118 - CheckpointFiles, not a dict
        self.slots = self.layout.slots(shapes)
        first.key_of = {k: k for k in self.slots}
        first.ignored = sorted(set(shapes) - set(self.slots))
        ref = {self.layout.canonical(k): k for k in self.slots}
        for src in self.sources[1:]:
            self._check_architecture(src)
            own = {self.layout.canonical(k): k for k in src.files.keys()}  # noqa: SIM118 - CheckpointFiles, not a dict
            missing, extra = (
                sorted(set(ref) - set(own)),
                sorted(k for c, k in own.items() if c not in ref and self.layout.loads(k)),
            )
            if missing or extra:
                what = f"lacks {[ref[c] for c in missing][:SHOWN]}" if missing else f"has extra {extra[:SHOWN]}"
                raise PoolError(
                    f"'{src.label}' {what} compared with '{first.label}'; all members must have the same tensor names"
                )
            src.key_of = {ref[c]: k for c, k in own.items() if c in ref}
            src.ignored = sorted(k for c, k in own.items() if c not in ref)
        self._check_coverage()
        return self._check_shapes(
            {k: TensorInfo(self._padded(first, k, shapes[k]), first.info(k).dtype) for k in self.slots}
        )

    def _check_architecture(self, src: ModelDirectory) -> None:
        first = self.sources[0]
        if src.architecture != first.architecture:
            raise PoolError(
                f"'{src.label}' is a {src.architecture} model but '{first.label}' is {first.architecture}; "
                "a pool holds one architecture"
            )

    def _check_shapes(self, out: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
        """Every source is the first one's architecture, with its shapes (after vocabulary padding) and dtypes."""
        first = self.sources[0]
        for src in self.sources[1:]:
            self._check_architecture(src)
            for key, info in out.items():
                shape = src.info(key).shape
                if self._padded(src, key, shape) != info.shape:
                    raise PoolError(
                        f"tensor '{key}' has shape {list(shape)} in '{src.label}' but {list(first.info(key).shape)} in "
                        f"'{first.label}'; members must share one architecture and size"
                    )
        self._check_dtypes(list(out))
        return out

    def _check_coverage(self) -> None:
        """Every tensor of the model must come from the files, as when transformers loads them (one it
        would initialise randomly has no place in a merge)."""
        covered = {slot.name for slot in self.slots.values()}
        needed = set(self.layout.meta) - set(self.layout.aliases)
        missing = sorted(needed - covered)
        if missing:
            first = self.sources[0]
            raise PoolError(
                f"'{first.label}': the model of {first.directory / 'config.json'} has tensors no file holds: {missing[:SHOWN]}; "
                "transformers would initialise them randomly; use complete checkpoints (save_pretrained writes every tensor)"
            )

    def _check_dtypes(self, keys: list[str]) -> None:
        """Floating weights are interpolated in float32, so each source must store them in a dtype that widens
        to it exactly; integer tensors are buffers taken as they are, so every source must store them as integers."""
        floating = False
        for key in keys:
            infos = [(src, src.info(key).dtype) for src in self.sources]
            for src, dtype in infos:
                if getattr(torch, dtype).is_floating_point and dtype not in MERGEABLE:
                    raise PoolError(
                        f"'{src.label}': tensor '{key}' is stored as {dtype} in {src.directory}, which mergefront cannot "
                        f"interpolate (it merges {', '.join(MERGEABLE)} weights); dequantize the checkpoint and save it in "
                        "bfloat16 or float32"
                    )
            floats = [(src, dtype) for src, dtype in infos if getattr(torch, dtype).is_floating_point]
            if floats and len(floats) < len(infos):
                odd, odd_dtype = next(
                    (src, dtype) for src, dtype in infos if not getattr(torch, dtype).is_floating_point
                )
                src, dtype = floats[0]
                raise PoolError(
                    f"'{odd.label}': tensor '{key}' is {odd_dtype} in {odd.directory} but {dtype} in '{src.label}'; "
                    f"weights stored as integers cannot be interpolated: save '{odd.label}' with floating-point weights "
                    "(float32 or bfloat16)"
                )
            floating = floating or bool(floats)
        if not floating:
            first = self.sources[0]
            raise PoolError(
                f"'{first.label}': no tensor in {first.directory} is floating point, so there is nothing to interpolate; "
                "save the members with floating-point weights (float32 or bfloat16)"
            )

    def _padded(self, src: ModelDirectory, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape after zero-padding the vocabulary rows of an embedding or head (known from the model's
        structure, never from a coincidence of sizes) to the pool's largest vocabulary."""
        if not src.vocab or src.vocab == self.vocab or not shape or shape[0] != src.vocab:
            return shape
        return (self.vocab, *shape[1:]) if self.slots[key].name in self.layout.vocabulary else shape

    def member_dtype(self, i: int) -> str:
        """The dtype of member ``i``'s main source (the one with the largest coefficient)."""
        return self.sources[int(self.mix[i].abs().argmax())].info(next(iter(self.tensors))).dtype

    def source_index(self, directory: Path) -> int:
        """The index of model directory ``directory`` in ``sources`` (and its column in ``mix``)."""
        return self._index[directory]

    def dtype(self, key: str) -> torch.dtype:
        """Tensor ``key``'s stored dtype as a ``torch.dtype`` (as the first source stores it)."""
        return getattr(torch, self.tensors[key].dtype)

    def lowrank(self, key: str) -> list[LowRank | None]:
        """Each member's low-rank term for tensor ``key`` (adapters name the model's modules, i.e. live names)."""
        name = self.slots[key].name
        return [self.adapters[i].factors(name) if i in self.adapters else None for i in range(len(self.members))]

    def model_dir(self) -> Path:
        """The pool's model directory: the one the live model's config and tokenizer come from."""
        return self.pool.model_dir()

    def output_config(self) -> dict:
        """The model config of the merge: the model directory's, with the pool's vocabulary size, and without a
        ``transformers_weights`` file name (the merge is written under the standard names)."""
        config = read_config(self.model_dir(), "output")
        config.pop("transformers_weights", None)
        if config.get("vocab_size") and config["vocab_size"] != self.vocab:
            config["vocab_size"] = self.vocab
        if self.untie:  # the merge holds both tensors, as the live model does; a loader that ties
            # after loading (lm-eval's HFLM calls tie_weights()) would otherwise score another model
            for part in (config, config.get("text_config")):
                if isinstance(part, dict):
                    part["tie_word_embeddings"] = False
        return config

    def model_config(self) -> PretrainedConfig:
        """The config the live model is built from: ``output_config`` as transformers parses it, untied
        where the files hold the tied tensor too (transformers then loads both, untied)."""
        from transformers import AutoConfig

        directory = self.model_dir()
        try:
            config = AutoConfig.from_pretrained(
                directory, local_files_only=True, trust_remote_code=self.pool.trusts_remote_code
            )
        except ValueError:  # transformers cannot tell which model the config describes
            raise PoolError(
                f"'{self.pool.tokenizer or self.members[0]}': {directory / 'config.json'} {model_type_fix(read_config(directory, 'model'))}"
            ) from None
        except (
            OSError,
            ImportError,
            AttributeError,
        ) as exc:  # the checkpoint's own config code (auto_map) did not load
            first = first_line(exc)
            raise PoolError(
                f"'{self.pool.tokenizer or self.members[0]}': the config code that {directory / 'config.json'} names in auto_map "
                f"did not load ({first}); ship its Python files beside config.json, or use a model transformers knows"
            ) from None
        text = config.get_text_config()
        if getattr(text, "vocab_size", None) and text.vocab_size != self.vocab:
            text.vocab_size = self.vocab
        return config

    def model_dtype(self, requested: str = "auto") -> torch.dtype:
        """The live model's dtype: ``requested`` unless ``auto``; then what ``from_pretrained`` picks for the
        model directory: the config's ``dtype`` (``torch_dtype``), else its first floating-point weight's."""
        if requested != "auto":
            return getattr(torch, requested)
        configured = getattr(self.model_config(), "dtype", None)
        if isinstance(configured, torch.dtype):
            return configured
        files = CheckpointFiles(self.model_dir(), "model", allow_pickle=self.pool.allow_pickle)
        floating = (getattr(torch, files.info(k).dtype) for k in files.keys())  # noqa: SIM118 - CheckpointFiles, not a dict
        return next((d for d in floating if d.is_floating_point), torch.float32)

    @property
    def untie(self) -> bool:
        """Whether the files hold a tensor that the config ties to another (lm_head beside the embeddings).
        An untied config answers without building the layout (a one-off merge skips the modeling code)."""
        if not getattr(self.model_config().get_text_config(), "tie_word_embeddings", False):
            return False
        return any(self.slots[k].name in self.layout.aliases for k in self.tensors)
