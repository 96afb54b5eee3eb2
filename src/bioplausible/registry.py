"""Registries: register by decorator, create by name, list with wildcards.

Rules, architectures and datasets each live in one :class:`Registry`. Adding one is one new file with a
decorated class or function; the CLI, the test matrix and the sweeps read the registry, never a hard-coded list.

    >>> @ARCHS.register("mlp")
    ... def mlp(input_shape, num_classes, *, depth=3): ...
    >>> ARCHS.create("mlp", input_shape=(784,), num_classes=10)
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> builder table for one kind of thing ("rule", "architecture", "dataset")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that files ``obj`` under ``name``; a duplicate name raises."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[name]!r})")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The registered object, or an error that lists the known names and the closest match."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._entries))}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the builder registered under ``name``."""
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard, e.g. ``"*sf"``."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)


RULES: Registry = Registry("rule")
ARCHS: Registry = Registry("architecture")
DATASETS: Registry = Registry("dataset")
