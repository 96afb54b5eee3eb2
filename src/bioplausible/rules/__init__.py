"""Learning rules, one file per family, each registered by name in ``RULES`` (imported on first use)."""

from ..registry import RULES
from .base import Rule


def create_rule(name: str, loss: str = "ce", **options) -> Rule:
    """Build a registered rule by name; an unknown name lists the known rules."""
    return RULES.get(name)(loss=loss, **options)


__all__ = ["RULES", "Rule", "create_rule"]
