"""A merge method's parameters, declared once next to its function.

Validation of ``merge:`` and of ``space.knobs``, the search's ranges, the ``merge`` command's flags
and the README's table all read these declarations, so a method with a new parameter is one module.
Names follow mergekit (its ``lambda`` is the global λ of task-vector methods). A parameter's ``key``
is how runs store it (``run.json``, the Parquet column ``knob.<key>``, the Optuna parameter
``k.<key>``): it stays the pre-mergekit name where one existed, so old runs and new ones read alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parameter:
    """One setting of a merge method: its name, default, allowed range and whether a search may vary it.

    ``low``/``high`` bound the value (None: unbounded), inclusive unless ``open_low``/``open_high``;
    ``formerly`` lists older spellings still accepted (a person's input gets one deprecation line).
    """

    name: str
    default: float
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    searchable: bool = True
    stored_as: str | None = None
    formerly: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The name runs store the value under (see the module docstring)."""
        return self.stored_as or self.name

    def spelled(self, name: str) -> bool:
        """Whether ``name`` means this parameter (its name, stored key or a former name)."""
        return name in (self.name, self.key, *self.formerly)

    @property
    def range(self) -> str:
        """The allowed values as an interval, e.g. ``(0, 1]``; whole numbers say so."""
        if self.low is None and self.high is None:
            return "any whole number" if self.integer else "any number"
        low = "-∞" if self.low is None else f"{self.low:g}"
        high = "∞" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.open_low or self.low is None else '['}{low}, {high}{')' if self.open_high or self.high is None else ']'}"

    def check(self, value: object) -> float | int:
        """``value`` as this parameter's type, or ValueError naming the parameter and its range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            # pydantic turns only ValueError into a validation error naming the field
            raise ValueError(f"parameter '{self.name}' must be a number, got {value!r}")  # noqa: TRY004
        if self.integer:
            if not float(value).is_integer():
                raise ValueError(f"parameter '{self.name}' must be a whole number, got {value!r}")
            return int(value)
        number = float(value)
        below = self.low is not None and (number <= self.low if self.open_low else number < self.low)
        above = self.high is not None and (number >= self.high if self.open_high else number > self.high)
        if not math.isfinite(number) or below or above:
            raise ValueError(f"parameter '{self.name}' = {value!r} lies outside {self.range}")
        return number

    def given_twice(self, first: str, second: str) -> str:
        """The error for one parameter given under two of its spellings (which would win is not obvious)."""
        former = ", ".join(f"'{n}'" for n in self.formerly)
        return f"parameter '{self.name}' is given twice ('{first}' and '{second}'); give it once, as '{self.name}' ({former} is its former name)"

    def deprecated(self, spelled: str, where: str) -> None:
        """Log once per use that ``spelled`` is an old name of this parameter."""
        if spelled in self.formerly:
            log.warning(
                "%s: '%s' is now called '%s' (mergekit's name); '%s' still works but will go",
                where,
                spelled,
                self.name,
                spelled,
            )


def by_key(
    names: Iterable[str], find: Callable[[str], Parameter | None], unknown: Callable[[str], str]
) -> dict[str, tuple[str, Parameter]]:
    """Each given name's parameter, by stored key, with the name it was given under. ValueError for a name
    ``find`` does not know (``unknown(name)`` is the message) and for one parameter under two spellings."""
    found: dict[str, tuple[str, Parameter]] = {}
    for name in names:
        param = find(name)
        if param is None:
            raise ValueError(unknown(name))
        if param.key in found:
            raise ValueError(param.given_twice(found[param.key][0], name))
        found[param.key] = (name, param)
    return found


def markdown_table(parameters: Iterable[Parameter]) -> str:
    """The README's parameter table (a test keeps the README equal to this, so docs cannot drift)."""
    rows = ["| parameter | default | range | searchable | stored in runs as | meaning |", "|---|---|---|---|---|---|"]
    for p in parameters:
        former = f" (formerly `{'`, `'.join(p.formerly)}`)" if p.formerly else ""
        rows.append(
            f"| `{p.name}`{former} | {p.default:g} | {p.range} | {'yes' if p.searchable else 'no'} | `{p.key}` | {p.help} |"
        )
    return "\n".join(rows)
