"""Where a pool's model directories are: a folder (relative to the pool file), or a Hugging Face repo id.

mergekit and lm-eval take repo ids, so a pool may too. A repo id that is not a folder here resolves
through the local hub cache (``huggingface_hub``), offline: a pool file cannot make its readers
download. Only the command line can (``--allow-download``, passed as ``allow_download`` in the
validation context, the way ``--allow-pickle`` is). The validated path remembers the id, so a run
stores it and an export's recipe names it, rather than this machine's cache folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from evaluators.core.config import STORED, existing, missing_path_fix, resolve_path
from evaluators.core.paths import Located, folder_of, located, spelling

# what the pool reads from a model directory: weights, configs, tokenizer files, a model's own code
DOWNLOADED = ["*.safetensors", "*.json", "*.model", "*.txt", "*.tiktoken", "*.py"]


def _repo_id(value: Path) -> bool:
    """Whether ``value`` could be a Hugging Face repo id (``name`` or ``org/name``) rather than only a path."""
    text = str(value)
    if value.is_absolute() or text.startswith("."):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _snapshot(repo_id: str, allow_download: bool) -> Path | None:
    """The repo's snapshot folder in the hub cache, downloaded first if allowed; None when absent."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_download, allow_patterns=DOWNLOADED))
    except (OSError, ValueError):  # not cached, offline, no such repo, no access
        return None


def repo_id(path: Path) -> str | None:
    """The Hugging Face repo id a validated model directory was given as (None for a folder)."""
    if not isinstance(path, Located) or folder_of(path) is not None:
        return None
    spelled = spelling(path)
    return None if spelled.startswith(("/", "~")) else spelled


def explicit_path(value: Any) -> Any:
    """A spelling that can only be a path (``./org/name``, ``../x``, ``~/x``) keeps its leading part, which ``Path``
    would drop, so that ``model_dir`` never takes it for a repo id."""
    if isinstance(value, str) and value.startswith(("./", "../", "~")):
        return located(value, value, None)
    return value


def model_dir(value: Path, info: ValidationInfo) -> Located:
    """An existing directory (relative to the pool file), else a repo id in the hub cache; one-line ValueError."""
    path = resolve_path(value, info)
    if path.exists() or not _repo_id(value) or spelling(value).startswith((".", "~")):
        return existing(value, info, "directory")
    allow_download = bool((info.context or {}).get("allow_download"))
    snapshot = _snapshot(str(value), allow_download)
    if snapshot is not None:
        return located(snapshot.resolve(), str(value), None)
    from huggingface_hub import constants

    cache, fix = constants.HF_HUB_CACHE, missing_path_fix(info)
    if allow_download:
        raise ValueError(
            f"'{value}' is neither a directory (resolved to {path}) nor a Hugging Face repo that downloads into "
            f"{cache} (offline, no such repo, or no access); {fix}, or check the repo id and your access to it"
        )
    raise ValueError(
        f"'{value}' is neither a directory (resolved to {path}) nor a model in the local Hugging Face cache "
        f"({cache}); {fix}, or fetch the model with `hf download {value}` or --allow-download"
    )


ModelDir = Annotated[
    Path, BeforeValidator(explicit_path), AfterValidator(model_dir), STORED
]  # a model directory, or a repo id in the hub cache
