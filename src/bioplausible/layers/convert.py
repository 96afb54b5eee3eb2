"""Swap the supported layers of any ``nn.Module`` for their feedback versions, keeping the weights."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import ConfigError
from .feedback import FEEDBACK_LAYERS, FeedbackLayer


def swappable_layers(model: nn.Module) -> list[str]:
    """Names of the layers a feedback rule can replace, in module order (the output layer is usually last)."""
    return [name for name, m in model.named_modules() if type(m) in FEEDBACK_LAYERS]


def resolve_layer_names(model: nn.Module, names: Iterable[str]) -> set[str]:
    """Expand the alias ``last`` (the last swappable layer) and check that every name is a swappable layer."""
    candidates = swappable_layers(model) + [n for n, m in model.named_modules() if isinstance(m, FeedbackLayer)]
    resolved = set()
    for name in names:
        if name == "last":
            if not candidates:
                raise ConfigError("bp_layers=last, but the model has no Linear or Conv layer")
            name = candidates[-1]
        if name not in candidates:
            raise ConfigError(
                f"bp_layers names {name!r}, which is not a supported layer; choose from: last, " + ", ".join(candidates)
            )
        resolved.add(name)
    return resolved


def swap_layers(model: nn.Module, keep: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Replace every supported layer not named in ``keep`` by its feedback version, in place.

    Returns:
        (converted, unchanged): qualified names of the swapped layers, and of the layers with parameters that
        keep their ordinary (true) gradient, such as batch norm or the layers in ``keep``.
    """
    keep = resolve_layer_names(model, keep)
    converted = []
    for name in swappable_layers(model):
        if name in keep:
            continue
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        old = getattr(owner, child)
        setattr(owner, child, FEEDBACK_LAYERS[type(old)].from_module(old))
        converted.append(name)
    unchanged = [
        n for n, m in model.named_modules() if n not in converted and any(True for _ in m.parameters(recurse=False))
    ]
    return converted, unchanged
