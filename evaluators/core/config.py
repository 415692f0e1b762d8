"""Load YAML files into frozen pydantic models, turning every failure into one clear line.

Validation happens once, here at the edge; the rest of the code receives typed objects.
Relative paths in a file are resolved against that file's folder (passed as context).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError, ValidationInfo

from evaluators.core.errors import ConfigError, first_line
from evaluators.core.paths import Located, located, spelling, stored
from evaluators.core.registry import Registry, did_you_mean

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base for config models: immutable, and unknown keys are errors (typos never pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def yaml_error(path: Path, exc: yaml.YAMLError, what: str = "YAML") -> ConfigError:
    """A YAML syntax error as one line naming the file, line and column (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or first_line(exc)
    return ConfigError(f"{path}:{where}: malformed {what} ({problem}); fix the syntax")


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader; a missing or malformed file is a ConfigError."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a YAML file; name the file itself")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; check the path")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve ``value`` against the ``base_dir`` in the validation context (the YAML's folder), ``~`` expanded and
    ``..`` taken lexically, as a shell's ``cd`` does: a run directory reached through a symlinked ``runs/`` finds
    ``../../checkpoints.yaml`` beside the link, where it was written from."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(os.path.normpath(Path(base) / value))


def from_a_person(info: ValidationInfo) -> bool:
    """Whether this validation runs on input a person wrote (``validate``/``load_config`` say so in the context),
    not on a stored run or an internal copy: only there are deprecated names worth a log line."""
    return bool((info.context or {}).get("person"))


def missing_path_fix(info: ValidationInfo) -> str:
    """How to fix a path that is not there: what the context's ``fix`` says for this field (a stored run names the
    option that points it at the path's new place), else edit the YAML file."""
    fixes: Mapping[str, str] = (info.context or {}).get("fix") or {}
    return fixes.get(info.field_name or "", "fix the path, which is relative to the YAML file")


def existing(value: Path, info: ValidationInfo, kind: str) -> Located:
    """``value`` resolved (``resolve_path``) if it is an existing ``kind`` (directory or file), remembering how it was
    spelled; a one-line ValueError otherwise."""
    path = resolve_path(value, info)
    if not (path.is_dir() if kind == "directory" else path.is_file()):
        if path.exists():
            other = "file" if kind == "directory" else "directory"
            raise ValueError(
                f"'{spelling(value)}' is a {other}, not a {kind} (resolved to {path}); point it at a {kind}"
            )
        where = os.path.normpath(path)
        raise ValueError(f"{kind} '{spelling(value)}' does not exist (resolved to {where}); {missing_path_fix(info)}")
    base = (info.context or {}).get("base_dir") or os.getcwd()
    return located(path.resolve(), spelling(value), None if value.expanduser().is_absolute() else Path(base))


STORED = PlainSerializer(stored, when_used="json")  # a run stores paths as spelled, not as this machine's
ExistingDir = Annotated[Path, AfterValidator(lambda v, info: existing(v, info, "directory")), STORED]
ExistingFile = Annotated[Path, AfterValidator(lambda v, info: existing(v, info, "file")), STORED]


def registered(registry: Registry[Any], name: str) -> str:
    """Field-validator helper: ``name`` must be in ``registry`` (the error keeps the file location); a
    lazily registered implementation is not imported."""
    try:
        registry.check(name)
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


def _branch(model: type[BaseModel], loc: tuple[Any, ...]) -> int | None:
    """Where ``loc`` enters a branch of a plain union (``str | int | list[str]``), whose type pydantic
    puts into the location (``gen_kwargs.until.str``); None if it does not."""
    for i in range(len(loc)):
        annotation = _walk(model, loc[:i])[1]
        while get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        if get_origin(annotation) in (Union, UnionType) and not _models(annotation):
            return i
    return None


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
        if origin in (Union, UnionType) and not _models(current):
            current = None  # a plain union's branch: the rest of the location is inside a type, not the file
            continue
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


# pydantic error types that mean "wrong kind of value", and what the file should hold there instead
_EXPECTED = {
    "dict_type": "a mapping of keys (key: value)",
    "model_type": "a mapping of keys (key: value)",
    "model_attributes_type": "a mapping of keys (key: value)",
    "list_type": "a list",
    "tuple_type": "a list",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "path_type": "a path",
}
# what a regular-expression constraint means, for messages (see ``described``)
_PATTERNS: dict[str, tuple[str, str]] = {}


def described(pattern: str, what: str, rule: str) -> str:
    """Register how to explain ``pattern`` to a user ("not a valid WHAT; use RULE"); returns the pattern."""
    _PATTERNS[pattern] = (what, rule)
    return pattern


NAME_PATTERN = described(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "name",
    "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
)


def _shown(value: Any) -> str:
    text = f"'{value}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Any) -> str:
    """One pydantic error (not an unknown or missing key) as text with its fix."""
    kind, value = error["type"], error.get("input")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_shown(value)}"
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        what, rule = _PATTERNS.get(pattern, ("value", f"a string that matches {pattern}"))
        return f"{_shown(value)} is not a valid {what}; use {rule}"
    if kind == "too_short" and isinstance(value, list | tuple | dict):
        least = int((error.get("ctx") or {}).get("min_length", 1))
        return f"needs at least {least} item{'s' if least > 1 else ''}, got {len(value)}; add one"
    message = str(error["msg"]).removeprefix("Value error, ")
    if (
        kind not in ("value_error", "assertion_error")
        and isinstance(value, str | int | float)
        and _shown(value) not in message
    ):
        message += f" (got {_shown(value)})"  # pydantic's own constraint messages do not say what they got
    return message


def format_validation_error(source: str, model: type[BaseModel], exc: ValidationError) -> str:
    """The first error as one line: file, field path, problem, and a hint; then how many more."""
    # a misspelt key shows up as "unknown key" plus "missing key": the first explains both
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = first["loc"]
    where, _ = _walk(model, loc)
    branch = None if first["type"] == "extra_forbidden" else _branch(model, loc)
    if branch is not None:
        # one error per branch of the union: they are one problem, "fits none of the types"
        same = [e for e in errors if e["loc"][:branch] == loc[:branch]]
        kinds = list(dict.fromkeys(str(e["loc"][branch]) for e in same if len(e["loc"]) > branch))
        value = next((e["input"] for e in same if len(e["loc"]) == branch + 1), first.get("input"))
        where = _walk(model, loc[:branch])[0]
        message = f"{_shown(value)} fits none of the allowed types ({', '.join(kinds)}); write one of those"
        errors = [first, *(e for e in errors if e not in same)]
    elif first["type"] == "extra_forbidden":
        where, owner_type = _walk(model, loc[:-1])
        owner = sorted(m for options in _models(owner_type)[:1] for m in options.model_fields)
        hint = did_you_mean(str(loc[-1]), owner) or (f"; allowed: {', '.join(owner)}" if owner else "")
        message = f"unknown key '{loc[-1]}'{hint}"
    elif first["type"] == "missing":
        message = "required key is missing; add it"
    else:
        message = _problem(first)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if not loc and first["type"] != "extra_forbidden":
        return f"{source}: {message}{more}"  # a check across fields: its message names them
    return f"{source}: {where}: {message}{more}"


def validate(
    model: type[M], data: Any, source: str, base_dir: Path | None = None, context: Mapping[str, Any] | None = None
) -> M:
    """Validate ``data`` into ``model``; the one-line ConfigError names ``source`` and the field. The validation
    context holds ``base_dir`` (relative paths' folder), ``person`` (a person's input: True unless ``context``
    says otherwise, as a stored run does) and whatever else ``context`` adds (``allow_download``, ``fix``)."""
    try:
        return model.model_validate(data, context={"base_dir": base_dir, "person": True, **(context or {})})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, model, exc)) from None


def load_config(model: type[M], path: Path, context: Mapping[str, Any] | None = None) -> M:
    """Read and validate a YAML config file; relative paths in it resolve against its folder (``context``: as
    ``validate``)."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        required = [name for name, field in model.model_fields.items() if field.is_required()]
        needs = f"; it needs at least: {', '.join(required)}" if required else ""
        if data is None:
            raise ConfigError(f"{path}: the file is empty{needs}")
        kinds: dict[type, str] = {list: "a list", str: "a single string"}
        kind = kinds.get(type(data), f"the value {data!r}")
        raise ConfigError(
            f"{path}: the top level is {kind}, but it must be a mapping of keys (key: value lines){needs}"
        )
    return validate(model, data, str(path), base_dir=path.resolve().parent, context=context)
