"""The merge-operator plug point: a pure function of one tensor's pool data, weights and parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field, ValidationInfo, model_serializer, model_validator

from evaluators.core.config import Frozen, from_a_person, registered
from evaluators.core.registry import Registry
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination, combine_into
from evaluators.merge.parameters import Parameter, by_key


class MergeSpec(Frozen):
    """Which method an experiment merges with, and the values of its parameters.

    Written flat, as in YAML (``{method: ties, lambda: 0.8, density: 0.3}``); each method declares
    its parameters once (``Operator.parameters``), and this checks the values against them. Held by
    stored key (``Parameter.key``) and dumped flat, each of the method's parameters with its value or
    None, so ``run.json`` reads as before; an old dump's nulls for other methods' parameters load.
    """

    method: str = "linear"
    parameters: dict[str, float | int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _parameters_fit_the_method(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        given = dict(data)
        method = given.pop("method", "linear")
        nested = given.pop("parameters", None)
        given.update(nested if isinstance(nested, dict) else {})
        registered(OPERATORS, method)
        op = OPERATORS.get(method)
        allowed = ", ".join(sorted(p.name for p in op.parameters)) or "none"
        found = by_key(  # null: unset (old run.json files write every method's parameters)
            (str(n) for n, v in given.items() if v is not None),
            op.parameter,
            lambda name: f"parameter '{name}' does not apply to method '{method}' (its parameters: {allowed})",
        )
        if from_a_person(info):
            for name, param in found.values():
                param.deprecated(name, "merge")
        values = {key: param.check(given[name]) for key, (name, param) in found.items()}
        return {"method": method, "parameters": values}

    @model_serializer(mode="plain")
    def _flat(self) -> dict[str, Any]:
        return {"method": self.method, **{p.key: self.parameters.get(p.key) for p in self.operator.parameters}}

    @property
    def operator(self) -> Operator:
        """The registered ``Operator`` for ``method``."""
        return OPERATORS.get(self.method)

    def value(self, param: Parameter | str) -> Any:
        """The parameter's value (by ``Parameter`` or stored key), or the method's default for it."""
        key = param if isinstance(param, str) else param.key
        return self.parameters[key] if key in self.parameters else self.operator.default(key)


# An operator returns either a Combination of the sources (linear methods: the kernel writes it
# straight into the output) or a dense float32 tensor (methods that need all values at once).
OperatorFn = Callable[[TensorInputs, torch.Tensor, MergeSpec], torch.Tensor | Combination]


@dataclass(frozen=True)
class Operator:
    """A merge function with what it needs: its parameters, whether it needs θ₀, and how many members
    it can merge (``max_members``: members with a non-zero weight; SLERP interpolates two).

    ``normalize`` is what ``mergefront merge`` does with the weights by default, as mergekit's ``normalize``
    default for the method: True divides them by their sum, False uses them as given, None when multiplying
    every weight by one positive number does not change the merge (nothing to normalize; the search's weights
    come from its own space either way).
    """

    fn: OperatorFn
    parameters: tuple[Parameter, ...] = ()
    needs_base: bool = False
    adapters_only: bool = False
    same_factors: bool = False  # averages the adapters' factors: one rank and scale per module
    max_members: int | None = None
    normalize: bool | None = False

    @property
    def knobs(self) -> dict[str, Any]:
        """Each parameter's default, by stored key."""
        return {p.key: p.default for p in self.parameters}

    def parameter(self, name: str) -> Parameter | None:
        """The parameter ``name`` means (its name, stored key or a former name), if the method has it."""
        return next((p for p in self.parameters if p.spelled(name)), None)

    def default(self, key: str) -> Any:
        """The default of parameter ``key`` (a name, stored key or former name); KeyError if the method has none."""
        param = self.parameter(key)
        if param is None:
            raise KeyError(f"merge method has no parameter '{key}'")
        return param.default

    def write(self, x: TensorInputs, w: torch.Tensor, spec: MergeSpec, out: torch.Tensor) -> None:
        """Merge one tensor into ``out`` (in ``out``'s dtype and device); ``w`` holds one weight per member."""
        result = self.fn(x, w, spec)
        if isinstance(result, Combination):
            combine_into(out, x.sources, result)
        else:
            out.copy_(result)


OPERATORS: Registry[Operator] = Registry("merge method")


def operator(
    name: str,
    parameters: tuple[Parameter, ...] = (),
    needs_base: bool = False,
    adapters_only: bool = False,
    max_members: int | None = None,
    same_factors: bool = False,
    normalize: bool | None = False,
) -> Callable[[OperatorFn], OperatorFn]:
    """Register ``fn`` as merge method ``name``: the one place a method is declared."""

    def add(fn: OperatorFn) -> OperatorFn:
        OPERATORS.register(name)(
            Operator(fn, parameters, needs_base, adapters_only, same_factors, max_members, normalize)
        )
        return fn

    return add


def declared_parameters() -> dict[str, Parameter]:
    """Every registered method's parameters by name, in registration order (one entry per name: methods
    that share a parameter share its declaration)."""
    out: dict[str, Parameter] = {}
    for op in OPERATORS.values():
        for param in op.parameters:
            out.setdefault(param.name, param)
    return out


def parameter_names(keys: Iterable[str]) -> dict[str, str]:
    """Each parameter's name (``lambda``) by its stored key (``scale``): what users read; unknown keys as given."""
    by_key = {p.key: p.name for p in declared_parameters().values()}
    return {k: by_key.get(k, k) for k in keys}
