"""bioplausible: train and compare biologically plausible learning rules on architectures with and without skip
connections, and see why they work or fail.

Importing the package is cheap: torch and the rules load on first use (``bioplausible.convert``, ``RULES.get``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.2"

from .errors import BioplausibleError  # noqa: E402
from .registry import ARCHS, DATASETS, RULES  # noqa: E402

_LAZY = {"convert": ("convert", "convert"), "archs": ("archs", None), "data": ("data", None), "rules": ("rules", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'bioplausible' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(f".{module}", __name__)
    value = getattr(value, attr) if attr else value
    globals()[name] = value  # importing the submodule bound its module object to the same name: replace it
    return value


__all__ = ["ARCHS", "DATASETS", "RULES", "BioplausibleError", "__version__", "archs", "convert", "data", "rules"]
