"""Load YAML files into frozen pydantic models, turning every failure into one clear line.

Validation happens once, here at the edge; the rest of the code receives typed objects.
Relative paths in a file are resolved against that file's folder (passed as context).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from evaluators.errors import ConfigError
from evaluators.registry import Registry, did_you_mean

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base for config models: immutable, and unknown keys are errors (typos never pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader; a missing or malformed file is a ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML ({problem}); fix the syntax") from None


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value`` against the ``base_dir`` in the validation context (the YAML's folder)."""
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


def _existing(value: Path, info: ValidationInfo, kind: str) -> Path:
    path = resolve_path(value, info)
    if not (path.is_dir() if kind == "directory" else path.is_file()):
        raise ValueError(
            f"{kind} '{value}' does not exist (resolved to {path}); fix the path, which is relative to the YAML file"
        )
    return path.resolve()


ExistingDir = Annotated[Path, AfterValidator(lambda v, info: _existing(v, info, "directory"))]
ExistingFile = Annotated[Path, AfterValidator(lambda v, info: _existing(v, info, "file"))]


def registered(registry: Registry[Any], name: str) -> str:
    """Field-validator helper: ``name`` must be in ``registry`` (the error keeps the file location)."""
    try:
        registry.get(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return name


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(source: str, model: type[BaseModel], exc: ValidationError) -> str:
    """The first error as one line: file, field path, problem, and a hint; then how many more."""
    errors = exc.errors()
    first = errors[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        owner = _owner_fields(model, loc[:-1])
        hint = did_you_mean(str(loc[-1]), owner) or (f"; allowed: {', '.join(owner)}" if owner else "")
        message = f"unknown key '{loc[-1]}'{hint}"
    elif first["type"] == "missing":
        message = "required key is missing; add it"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {_location(loc)}: {message}{more}"


def _owner_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that holds the key at ``loc``, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as ``list[Model]`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate(model: type[M], data: Any, source: str, base_dir: Path | None = None) -> M:
    """Validate ``data`` into ``model``; the one-line ConfigError names ``source`` and the field."""
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, model, exc)) from None


def load_config(model: type[M], path: Path) -> M:
    """Read and validate a YAML config file; relative paths in it resolve against its folder."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return validate(model, data, str(path), base_dir=path.parent.resolve())
