"""Load YAML files into frozen pydantic models, turning every failure into one clear line.

Validation happens once, here at the edge; the rest of the code receives typed objects.
Relative paths in a file are resolved against that file's folder (passed as context).
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

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


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Annotated, unions and Optional)."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any]:
    """Render an error location as the user wrote it, and return the annotation found there.

    Pydantic puts the chosen tag of a tagged union into the location (``members.0.checkpoint``);
    that tag is not in the file, so it is skipped.
    """
    current: Any = model
    text = ""
    for part in loc:
        while get_origin(current) is Annotated:
            current = get_args(current)[0]
        origin = get_origin(current)
        if origin in (list, tuple):
            text, current = f"{text}[{part}]", get_args(current)[0]
            continue
        if origin is dict:
            text, current = f"{text}.{part}", get_args(current)[1]
            continue
        options = _models(current)
        if len(options) > 1:
            current = next((m for m in options if getattr(m.model_fields.get("kind"), "default", None) == part), None)
            continue
        field = options[0].model_fields.get(str(part)) if options else None
        text = f"{text}[{part}]" if isinstance(part, int) else f"{text}.{part}"
        current = field.annotation if field else None
    return text.lstrip(".") or "(top level)", current


def format_validation_error(source: str, model: type[BaseModel], exc: ValidationError) -> str:
    """The first error as one line: file, field path, problem, and a hint; then how many more."""
    # a misspelt key shows up as "unknown key" plus "missing key": the first explains both
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = first["loc"]
    where, _ = _walk(model, loc)
    if first["type"] == "extra_forbidden":
        where, owner_type = _walk(model, loc[:-1])
        owner = sorted(m for options in _models(owner_type)[:1] for m in options.model_fields)
        hint = did_you_mean(str(loc[-1]), owner) or (f"; allowed: {', '.join(owner)}" if owner else "")
        message = f"unknown key '{loc[-1]}'{hint}"
    elif first["type"] == "missing":
        message = "required key is missing; add it"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {where}: {message}{more}"


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
