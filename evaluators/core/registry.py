"""A tiny named registry: one per extension kind (merge operators, backends, samplers).

Implementations register themselves in their own module; lookups of unknown names fail
loudly with a did-you-mean and the list of what exists. A kind whose implementations are costly to
import (the model backends import lm-eval's models) names each implementing module up front
(``provided_by``): the name is known at once, and the module is imported on the first ``get``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from evaluators.core.errors import ConfigError

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
        self._modules: dict[str, str] = {}  # name -> the module that registers it, not imported yet

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds an implementation under ``name``; duplicates are a bug."""

        def add(item: T) -> T:
            if name in self._items:  # a declared name is registered by its module: that is no duplicate
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def provided_by(self, name: str, module: str) -> None:
        """Declare that importing ``module`` registers ``name``; it is imported on the first ``get``."""
        if name in self._items or name in self._modules:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._modules[name] = module

    def check(self, name: str) -> None:
        """Raise ConfigError unless ``name`` is registered (or declared); imports nothing."""
        if name not in self._items and name not in self._modules:
            known = self.names()
            raise ConfigError(f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; available: {', '.join(known)}")

    def get(self, name: str) -> T:
        """The implementation registered as ``name``, importing its module first if it is only declared; raises
        ConfigError for an unknown name."""
        self.check(name)
        if name not in self._items:
            importlib.import_module(self._modules[name])
            if name not in self._items:
                raise ValueError(f"module {self._modules[name]} does not register {self.kind} '{name}'")
        return self._items[name]

    def names(self) -> list[str]:
        """Every known name, registered or declared, sorted; imports nothing."""
        return sorted({*self._items, *self._modules})

    def values(self) -> list[T]:
        """Every implementation, in registration order (where order shows, e.g. CLI flags); a lazily
        provided one only once its module was imported."""
        return list(self._items.values())
