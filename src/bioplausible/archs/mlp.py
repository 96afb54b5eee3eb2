"""The plain multilayer perceptron ("NN" in Im et al.; Bartunov et al.'s 784-256×5-10 with depth=5, width=256).

h_0 = flatten(x),   h_l = f(W_l h_{l−1} + b_l)  for l = 1..depth,   ŷ = W_out h_depth + b_out
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from ..config import option
from ..layered import LayerSpec, flatten
from ..registry import ARCHS
from .activations import ACTIVATIONS, make_activation
from .base import Architecture, arch_options


@dataclass
class MLPConfig:
    depth: int = option(3, "number of hidden layers", min=1)
    width: int = option(256, "units per hidden layer", min=1)
    activation: str = option("tanh", "hidden nonlinearity", choices=tuple(ACTIVATIONS))
    bias: bool = option(True, "give every layer a bias")


@ARCHS.register("mlp")
class MLP(Architecture):
    """Plain MLP: each hidden layer reads only the layer below."""

    Config = MLPConfig
    provides = ("layered",)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: MLPConfig | None = None, **options):
        super().__init__()
        c = arch_options(type(self), config, options)
        sizes = [math.prod(input_shape)] + [c.width] * c.depth
        self.hidden = nn.ModuleList(nn.Linear(n_in, n_out, bias=c.bias) for n_in, n_out in pairwise(sizes))
        self.act = make_activation(c.activation)
        self.out = nn.Linear(sizes[-1], num_classes, bias=c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (N, D)
        for layer in self.hidden:
            h = self.act(layer(h))  # (N, width)
        return self.out(h)  # (N, num_classes)

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): layer l reads h_{l−1}; the first flattens the input."""
        hidden = [LayerSpec(layer, self.act, [l], flatten if l == 0 else None) for l, layer in enumerate(self.hidden)]
        return [*hidden, LayerSpec(self.out, None, [len(self.hidden)])]
