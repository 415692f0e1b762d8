"""Schema of ``checkpoints.yaml``: named bases and the pool's members, one kind each.

Kinds (the ``kind`` key, default ``checkpoint``):
- ``checkpoint``: a full model directory (safetensors, single file or sharded).
- ``base``: one of the named bases, itself a member of the merge.
- ``finetune``: a full fine-tuned directory of a named base; merged through its task vector.
- ``transfer``: a diff (source fine-tune minus source base) applied to a named target base.
- ``lora``: a PEFT LoRA adapter directory on a named base.

A ``{glob: PATTERN}`` entry stands for every directory the pattern matches (relative to the YAML
file, sorted), each a ``checkpoint`` member named after its directory: where a training job drops
new checkpoints, so ``mergefront watch`` sees them land.

Paths are relative to the YAML file; a path that is no folder there may be a Hugging Face repo id
(``org/name``), found in the local hub cache (``evaluators.pool.location``). Member names become
column names and file names, so they are restricted to a safe alphabet (no path separators).
``trust_remote_code`` on the entry the model is built from (``tokenizer``, default the first member)
is the only way to let a checkpoint's own Python code run.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from evaluators.core.config import Frozen, load_config
from evaluators.core.errors import ConfigError
from evaluators.pool.location import ModelDir

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


MemberName = Annotated[str, Field(pattern=NAME_PATTERN)]


class BaseModelEntry(Frozen):
    """A base model directory that fine-tune, transfer and LoRA members refer to by name."""

    path: ModelDir
    trust_remote_code: bool = False


class _MemberCommon(Frozen):
    name: MemberName
    trust_remote_code: bool = False


class CheckpointMember(_MemberCommon):
    """θ_i: a full model directory, taken as it is (the default kind)."""

    kind: Literal["checkpoint"] = "checkpoint"
    path: ModelDir


class BaseMember(_MemberCommon):
    """θ_b: the pool base named ``base`` itself, as a member a merge can weight."""

    kind: Literal["base"]
    base: str


class FinetuneMember(_MemberCommon):
    """θ_i: a full model directory fine-tuned from the pool base named ``base`` (its task vector is θ_i − θ₀)."""

    kind: Literal["finetune"]
    path: ModelDir
    base: str


class TransferMember(_MemberCommon):
    """A diff vector carried to another base: θ_target_base + ``scale`` · (source_finetune − source_base)."""

    kind: Literal["transfer"]
    source_finetune: ModelDir
    source_base: ModelDir
    target_base: str
    scale: float = 1.0


class LoraMember(_MemberCommon):
    """θ_b + s·B·A from a PEFT LoRA adapter directory on the pool base named ``base``, as peft's ``merge_and_unload``
    computes it; merged from its factors."""

    kind: Literal["lora"]
    path: ModelDir
    base: str


KINDS = ("checkpoint", "base", "finetune", "transfer", "lora")


def _kind_of(value: Any) -> str:
    """The member's kind tag; a plain mapping without ``kind`` is a full checkpoint."""
    return value.get("kind", "checkpoint") if isinstance(value, dict) else getattr(value, "kind", "")


Member = Annotated[
    Annotated[CheckpointMember, Tag("checkpoint")]
    | Annotated[BaseMember, Tag("base")]
    | Annotated[FinetuneMember, Tag("finetune")]
    | Annotated[TransferMember, Tag("transfer")]
    | Annotated[LoraMember, Tag("lora")],
    Discriminator(
        _kind_of,
        custom_error_type="unknown_kind",
        custom_error_message=f"unknown member kind; use one of: {', '.join(KINDS)}",
    ),
]


class Pool(Frozen):
    """A validated pool: bases by name and members in order (the order of weight columns)."""

    name: str = "pool"
    bases: dict[str, BaseModelEntry] = Field(default_factory=dict)
    base: str | None = Field(
        default=None,
        description="the merge base θ₀ of task-vector methods; default: the only entry of 'bases'",
    )
    members: list[Member]
    tokenizer: str | None = Field(default=None, description="member or base whose tokenizer and config the worker uses")
    allow_pickle: bool = Field(default=False, description="set by --allow-pickle only, never in the pool file")

    @field_validator("members", mode="before")
    @classmethod
    def _expand_globs(cls, members: Any, info: ValidationInfo) -> Any:
        if not isinstance(members, list):
            return members
        base = Path((info.context or {}).get("base_dir", "."))
        out: list[Any] = []
        for entry in members:
            if not (isinstance(entry, dict) and "glob" in entry):
                out.append(entry)
                continue
            extra = sorted(set(entry) - {"glob", "trust_remote_code"})
            if extra:
                raise ValueError(f"a glob entry takes only 'glob' and 'trust_remote_code'; remove {', '.join(extra)}")
            pattern = str(entry["glob"])
            found = sorted(Path(p) for p in glob.glob(pattern, root_dir=base) if (base / p).is_dir())
            if not found:
                raise ValueError(
                    f"glob '{pattern}' matches no directory under {base}; fix the pattern (relative to the YAML file)"
                )
            out += [
                {"name": p.name, "path": str(p), "trust_remote_code": entry.get("trust_remote_code", False)}
                for p in found
            ]
        return out

    @field_validator("members")
    @classmethod
    def _non_empty_unique(cls, members: list[Member]) -> list[Member]:
        if not members:
            raise ValueError("the pool has no members; list at least one checkpoint under 'members'")
        seen: set[str] = set()
        for m in members:
            if m.name in seen:
                raise ValueError(f"member name '{m.name}' is used twice; give each member its own name")
            seen.add(m.name)
        return members

    @model_validator(mode="after")
    def _references_exist(self) -> Pool:
        for m in self.members:
            for ref in _base_refs(m):
                if ref not in self.bases:
                    known = ", ".join(sorted(self.bases)) or "none declared"
                    raise ValueError(
                        f"member '{m.name}' refers to base '{ref}', which is not under 'bases' "
                        f"(declared: {known}); add it there"
                    )
        if self.tokenizer is not None and self.tokenizer not in self.names and self.tokenizer not in self.bases:
            raise ValueError(
                f"tokenizer '{self.tokenizer}' is neither a member nor a base; name one of: {', '.join([*self.names, *self.bases])}"
            )
        if self.base is not None and self.base not in self.bases:
            raise ValueError(f"base '{self.base}' is not under 'bases'; add it there or fix the name")
        return self

    @property
    def merge_base(self) -> str | None:
        """The base θ₀ that task vectors are taken against (None: no base, values only)."""
        if self.base is not None:
            return self.base
        return next(iter(self.bases)) if len(self.bases) == 1 else None

    @property
    def names(self) -> list[str]:
        """The members' names, in pool order (the order of every weight vector)."""
        return [m.name for m in self.members]

    def model_dir(self) -> Path:
        """Directory whose config.json and tokenizer the worker's model is built from."""
        return self._model_entry()[0]

    @property
    def trusts_remote_code(self) -> bool:
        """Whether the entry the model is built from allows running its own code (off unless it says so)."""
        return self._model_entry()[1]

    def _model_entry(self) -> tuple[Path, bool]:
        if self.tokenizer in self.bases:
            base = self.bases[self.tokenizer]
            return base.path, base.trust_remote_code
        chosen = next((m for m in self.members if m.name == self.tokenizer), self.members[0])
        if isinstance(chosen, CheckpointMember | FinetuneMember):
            return chosen.path, chosen.trust_remote_code
        base = self.bases[chosen.target_base if isinstance(chosen, TransferMember) else chosen.base]
        return base.path, chosen.trust_remote_code or base.trust_remote_code


def _base_refs(member: Member) -> list[str]:
    if isinstance(member, TransferMember):
        return [member.target_base]
    if isinstance(member, BaseMember | FinetuneMember | LoraMember):
        return [member.base]
    return []


def load_pool(path: Path, allow_pickle: bool = False, allow_download: bool = False) -> Pool:
    """Read and validate ``checkpoints.yaml``; ``allow_pickle`` and ``allow_download`` come from the command line
    alone, so a pool file from someone else cannot opt its readers into unpickling or downloading."""
    pool = load_config(Pool, path, {"allow_download": allow_download})
    if pool.allow_pickle:
        raise ConfigError(
            f"{path}: 'allow_pickle' cannot be set in a pool file; remove it and pass --allow-pickle to opt in"
        )
    return pool.model_copy(update={"allow_pickle": allow_pickle})
