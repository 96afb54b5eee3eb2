"""Architectures, one file each, registered by name in ``ARCHS`` and built from injected layer factories."""

import dataclasses
import importlib
import pkgutil

from torch import nn

from ..config import build_options
from ..registry import ARCHS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def create_arch(name: str, input_shape: tuple[int, ...], num_classes: int, **options) -> nn.Module:
    """Build a registered architecture; options are checked against its ``Config`` (unknown ones are listed)."""
    cls = ARCHS.get(name)
    config = build_options(cls.Config, options, f"architecture {name!r}")
    return cls(tuple(input_shape), num_classes, **dataclasses.asdict(config))


__all__ = ["ARCHS", "create_arch"]
