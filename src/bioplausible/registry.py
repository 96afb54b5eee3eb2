"""Registries: register by decorator, create by name, list with wildcards — without importing what is not used.

Rules, architectures and datasets each live in one :class:`Registry`. Adding one is one new file with a decorated
class or function; the CLI, the test matrix and the sweeps read the registry, never a hard-coded list.

    >>> @ARCHS.register("mlp")
    ... class MLP(nn.Module): ...
    >>> ARCHS.create("mlp", input_shape=(784,), num_classes=10)

Importing torch takes seconds, so the package's own modules are found without importing them: ``discover`` reads
each module's source for ``@RULES.register("name")`` decorators (and the decorated object's docstring), and the
module is imported the first time its entry is used. ``bioplausible list`` and ``--help`` therefore start in a
fraction of a second. Packages outside this one add theirs through the ``bioplausible.plugins`` entry-point group
(each entry names a module to import, whose decorators register as usual) or by importing their module before use.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import BioplausibleError, UnknownNameError

T = TypeVar("T")
PLUGIN_GROUP = "bioplausible.plugins"


class PluginError(BioplausibleError, ImportError):
    """A plugin module declared in the entry points that cannot be imported or clashes with a registered name."""


class Lazy:
    """An entry whose module has not been imported yet: where it lives and its one-line description."""

    def __init__(self, module: str, doc: str):
        self.module, self.doc = module, doc


class Registry(Generic[T]):
    """A name -> builder table for one kind of thing ("rule", "architecture", "dataset")."""

    def __init__(self, kind: str, variable: str):
        self.kind = kind
        self.variable = variable  # the name the package's modules register through, e.g. "RULES"
        self._entries: dict[str, T | Lazy] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that files ``obj`` under ``name``; a duplicate name raises."""

        def decorator(obj: T) -> T:
            old = self._entries.get(name)
            owner = getattr(obj, "__module__", None)
            if (old is not None and not isinstance(old, Lazy)) or (isinstance(old, Lazy) and old.module != owner):
                by = old.module if isinstance(old, Lazy) else repr(old)
                raise ValueError(f"{self.kind} {name!r} is already registered (by {by}); choose another name")
            if isinstance(obj, type) and not obj.__dict__.get("name"):
                obj.name = name  # the class knows the name it is registered under (labels, messages)
            self._entries[name] = obj
            return obj

        return decorator

    def discover(self, package: str, folder: Path) -> None:
        """Note (without importing) every ``@<variable>.register("name")`` in the modules of ``folder``."""
        for path in sorted(folder.glob("*.py")):
            for name, doc in registrations(path.read_text(encoding="utf-8"), self.variable):
                self._entries.setdefault(name, Lazy(f"{package}.{path.stem}", doc))

    def get(self, name: str) -> T:
        """The registered object, or an error that lists the known names and the closest match."""
        load_plugins()
        entry = self._entries.get(name)
        if entry is None:
            lower = {n.lower(): n for n in self._entries}
            close = (
                [lower[name.lower()]] if name.lower() in lower else difflib.get_close_matches(name, self._entries, 1)
            )
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._entries))}"
            )
        if isinstance(entry, Lazy):
            importlib.import_module(entry.module)  # its decorator replaces the lazy entry
            entry = self._entries[name]
            if isinstance(entry, Lazy):
                raise RuntimeError(f"{entry.module} did not register {self.kind} {name!r}")
        return entry

    def doc(self, name: str) -> str:
        """The first line of the entry's docstring, without importing it."""
        load_plugins()
        entry = self._entries[name]
        text = entry.doc if isinstance(entry, Lazy) else (entry.__doc__ or "")
        lines = text.strip().splitlines()
        return lines[0] if lines else ""

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the builder registered under ``name``."""
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style wildcard, e.g. ``"*sf"``."""
        load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self):
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())


def registrations(source: str, variable: str) -> list[tuple[str, str]]:
    """(name, docstring) of every object in ``source`` decorated with ``@<variable>.register("name")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Attribute)
                and deco.func.attr == "register"
                and isinstance(deco.func.value, ast.Name)
                and deco.func.value.id == variable
                and deco.args
                and isinstance(deco.args[0], ast.Constant)
            ):
                found.append((deco.args[0].value, ast.get_docstring(node) or ""))
    return found


_plugins_loaded = False


def load_plugins() -> None:
    """Import the modules other packages declare in the ``bioplausible.plugins`` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            importlib.import_module(entry.value.split(":")[0])
        except Exception as err:  # noqa: BLE001  (any failure of someone else's module: one line naming it)
            raise PluginError(
                f"the plugin {entry.name!r} ({entry.value}) of the {PLUGIN_GROUP} entry points cannot be imported: "
                f"{type(err).__name__}: {err}; fix or uninstall it"
            ) from err


RULES: Registry = Registry("rule", "RULES")
ARCHS: Registry = Registry("architecture", "ARCHS")
DATASETS: Registry = Registry("dataset", "DATASETS")

_root = Path(__file__).parent
RULES.discover("bioplausible.rules", _root / "rules")
ARCHS.discover("bioplausible.archs", _root / "archs")
DATASETS.discover("bioplausible.data", _root / "data")


def dataset_defaults(name: str) -> dict[str, Any]:
    """A dataset builder's keyword-only options and their defaults."""
    params = inspect.signature(DATASETS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}
