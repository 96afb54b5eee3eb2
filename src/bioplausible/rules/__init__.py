"""Learning rules, one file per family, each registered by name in ``RULES`` when this package is imported."""

import importlib
import pkgutil

from ..registry import RULES
from .base import Rule

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def create_rule(name: str, loss: str = "ce", **options) -> Rule:
    """Build a registered rule by name; an unknown name lists the known rules."""
    return RULES.get(name)(loss=loss, **options)


__all__ = ["RULES", "Rule", "create_rule"]
