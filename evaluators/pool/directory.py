"""One model directory of a pool as the plan reads it (``ModelDirectory``), and its ``config.json``: read with
a clear error, and its ``model_type`` checked against what transformers knows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evaluators.core.errors import PoolError
from evaluators.core.registry import did_you_mean
from evaluators.pool.files import CheckpointFiles, TensorInfo


@dataclass
class ModelDirectory:
    """One unique model directory of the pool. ``key_of`` maps the plan's tensor names (the first
    source's file names) to this directory's own, which may differ where transformers renames keys
    (GPT-2 files with and without the ``transformer.`` prefix)."""

    label: str  # the member or base that introduced this directory, for messages
    directory: Path
    files: CheckpointFiles
    architecture: str
    vocab: int
    key_of: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # file tensors transformers does not load either

    def view(self, key: str) -> torch.Tensor:
        """Tensor ``key`` (a plan name) over this directory's memory map, zero-copy and read-only."""
        return self.files.view(self.key_of[key])

    def read(self, key: str) -> torch.Tensor:
        """A private copy of tensor ``key`` (a plan name), in its stored dtype."""
        return self.files.tensor(self.key_of[key])

    def release(self, key: str) -> None:
        """Drop tensor ``key``'s pages from this process's mapping."""
        self.files.release(self.key_of[key])

    def nbytes(self, key: str) -> int:
        """Stored bytes of tensor ``key`` in this directory."""
        return self.files.nbytes(self.key_of[key])

    def info(self, key: str) -> TensorInfo:
        """Shape and stored dtype of tensor ``key`` in this directory (which may differ from the plan's: e.g. a
        smaller vocabulary)."""
        return self.files.info(self.key_of[key])


def read_config(directory: Path, owner: str) -> dict:
    """``directory``'s config.json as a dict; PoolError naming ``owner`` when it is missing or not JSON."""
    path = directory / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PoolError(f"member '{owner}': {path} is missing; a model directory needs its config.json") from None
    except json.JSONDecodeError as exc:
        raise PoolError(f"member '{owner}': {path} is not valid JSON ({exc})") from None


def model_type_fix(config: dict) -> str:
    """What is wrong with a config's model_type, and the value transformers would build its architecture from."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = config.get("model_type")
    if kind is None:
        problem = "has no model_type, so transformers cannot tell which model to build"
    else:
        known = did_you_mean(str(kind), list(CONFIG_MAPPING_NAMES))
        problem = f"has model_type '{kind}', which transformers {transformers.__version__} does not know{known}"
    by_class = {cls: name for name, cls in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()}
    architecture = next((a for a in config.get("architectures") or [] if a in by_class), None)
    if architecture is None:
        return (
            f'{problem}; set model_type to the type of the model it holds (e.g. "llama"), as save_pretrained writes it'
        )
    verb = "add" if kind is None else "set"
    return f'{problem}; {verb} "model_type": "{by_class[architecture]}" (the type of its architecture {architecture})'
