"""Activation functions by name. ``hard-sigmoid`` is ρ(s) = clamp(s, 0, 1), as in the equilibrium-propagation papers
(not torch's Hardsigmoid, which is relu6(s + 3) / 6)."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module] | object] = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "hard-sigmoid": lambda: nn.Hardtanh(0.0, 1.0),
}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; choose from: {', '.join(ACTIVATIONS)}") from None
