"""What every architecture shares: options from one ``Config`` (defaults written once), and its declarations.

An architecture is a plain ``nn.Module`` registered by name, built as ``cls(input_shape, num_classes, config)``
or with keyword options (``cls(input_shape, num_classes, depth=5)``), which are checked against ``cls.Config``.
It declares ``provides`` (protocol names from :mod:`bioplausible.protocols`: ``layered``, ``energy``) and
``describe(options)``, the short label reports use (``mlp 256x5 tanh``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..config import build_options


class Architecture(nn.Module):
    """Base of the registered architectures: their declarations, with defaults. ``name`` is set by the registry."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    provides: ClassVar[tuple[str, ...]] = ()
    # computes its forward in the parameters' dtype under autocast too (an energy net's settling): --precision is
    # then refused as unread rather than recorded as if it had been used
    full_precision: ClassVar[bool] = False

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        """The short label reports use for this architecture with these (resolved) options."""
        return describe_shape(cls.name, options)


def arch_options(cls: type, config: Any, options: dict[str, Any]) -> Any:
    """The architecture's options object: ``config`` as given, or built (and checked) from keyword ``options``."""
    if config is not None:
        if options:
            raise TypeError("pass either a Config object or keyword options, not both")
        return config
    return build_options(cls.Config, options, f"architecture {getattr(cls, 'name', cls.__name__)!r}")


def describe_shape(name: str, options: dict[str, Any]) -> str:
    """``name`` with the common size options that are set: ``mlp 256x5 tanh``."""
    shape = f" {options['width']}x{options['depth']}" if {"width", "depth"} <= set(options) else ""
    if not shape and {"channels", "depth"} <= set(options):
        shape = f" {options['channels']}chx{options['depth']}"
    act = f" {options['activation']}" if "activation" in options else ""
    return f"{name}{shape}{act}"
