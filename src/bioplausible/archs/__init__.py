"""Architectures, one file each, registered by name in ``ARCHS`` (imported on first use)."""

import dataclasses
import inspect

from torch import nn

from ..config import build_options
from ..registry import ARCHS


def create_arch(
    name: str, input_shape: tuple[int, ...], num_classes: int, check_unread: bool = True, **options
) -> nn.Module:
    """Build a registered architecture; options are checked against its ``Config`` (unknown ones are listed), and
    one the architecture would not read is refused unless ``check_unread`` is False (``build``: ``resolve_config``
    judged those, and lets a resumed run keep what its saved config holds)."""
    cls = ARCHS.get(name)
    config = build_options(cls.Config, options, f"architecture {name!r}", check_unread=check_unread)
    if "config" in inspect.signature(cls).parameters:
        return cls(tuple(input_shape), num_classes, config)
    return cls(tuple(input_shape), num_classes, **dataclasses.asdict(config))  # options as keywords


__all__ = ["ARCHS", "create_arch"]
