"""The plain multilayer perceptron ("NN" in Im et al.; Bartunov et al.'s 784-256×5-10 with depth=5, width=256).

h_0 = flatten(x),   h_l = f(W_l h_{l−1} + b_l)  for l = 1..depth,   ŷ = W_out h_depth + b_out
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..registry import ARCHS
from .activations import ACTIVATIONS, make_activation
from .spec import LayerSpec, flatten


@dataclass
class MLPConfig:
    depth: int = option(3, "number of hidden layers")
    width: int = option(256, "units per hidden layer")
    activation: str = option("tanh", "hidden nonlinearity", choices=tuple(ACTIVATIONS))
    bias: bool = option(True, "give every layer a bias")

    def validate(self) -> None:
        if self.depth < 1 or self.width < 1:
            raise ConfigError(f"depth and width must be >= 1 (got depth={self.depth}, width={self.width})")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose from: {', '.join(ACTIVATIONS)}")


@ARCHS.register("mlp")
class MLP(nn.Module):
    """Plain MLP: each hidden layer reads only the layer below."""

    Config = MLPConfig

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        depth: int = 3,
        width: int = 256,
        activation: str = "tanh",
        bias: bool = True,
        linear: Callable[..., nn.Module] = nn.Linear,
    ):
        super().__init__()
        sizes = [math.prod(input_shape)] + [width] * depth
        self.hidden = nn.ModuleList(linear(n_in, n_out, bias=bias) for n_in, n_out in pairwise(sizes))
        self.act = make_activation(activation)
        self.out = linear(sizes[-1], num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (N, D)
        for layer in self.hidden:
            h = self.act(layer(h))  # (N, width)
        return self.out(h)  # (N, num_classes)

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): layer l reads h_{l−1}; the first flattens the input."""
        hidden = [LayerSpec(layer, self.act, [l], flatten if l == 0 else None) for l, layer in enumerate(self.hidden)]
        return [*hidden, LayerSpec(self.out, None, [len(self.hidden)])]
