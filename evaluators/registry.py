"""A tiny named registry: one per extension kind (merge operators, backends, samplers).

Implementations register themselves in their own module; lookups of unknown names fail
loudly with a did-you-mean and the list of what exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from evaluators.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return ' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """Maps names to implementations of one extension kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds an implementation under ``name``; duplicates are a bug."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            known = sorted(self._items)
            raise ConfigError(f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; available: {', '.join(known)}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        """Every implementation, in registration order (where order shows, e.g. CLI flags)."""
        return list(self._items.values())
