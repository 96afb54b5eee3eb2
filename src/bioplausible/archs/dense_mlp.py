"""The densely connected MLP ("DN" in Im, Patil & Branson), DenseNet-style skip connections.

Every hidden layer and the output read the concatenation of the input and all earlier hidden outputs:

    h_0 = flatten(x),   h_l = f(W_l [h_0; h_1; …; h_{l−1}] + b_l),   ŷ = W_out [h_0; …; h_depth] + b_out

so layer l has D + (l−1)·width inputs and the error reaches every layer in one step from the output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layered import LayerSpec, flatten
from ..registry import ARCHS
from .activations import make_activation
from .base import Architecture, arch_options
from .mlp import MLPConfig


@ARCHS.register("dense-mlp")
class DenseMLP(Architecture):
    """Densely connected MLP: every layer reads the input and all earlier hidden layers."""

    Config = MLPConfig
    provides = ("layered",)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: MLPConfig | None = None, **options):
        super().__init__()
        c = arch_options(type(self), config, options)
        d = math.prod(input_shape)
        self.hidden = nn.ModuleList(nn.Linear(d + l * c.width, c.width, bias=c.bias) for l in range(c.depth))
        self.act = make_activation(c.activation)
        self.out = nn.Linear(d + c.depth * c.width, num_classes, bias=c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x.flatten(1)]  # [(N, D), (N, width), ...]
        for layer in self.hidden:
            features.append(self.act(layer(torch.cat(features, dim=1))))
        return self.out(torch.cat(features, dim=1))

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): layer l reads [h_0, …, h_{l−1}] (flatten is a no-op on the
        hidden features)."""
        layers = [*self.hidden, self.out]
        return [
            LayerSpec(layer, self.act if layer is not self.out else None, list(range(l + 1)), flatten)
            for l, layer in enumerate(layers)
        ]
