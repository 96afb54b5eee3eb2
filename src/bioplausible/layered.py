"""The layered protocol: an architecture's layer structure as data, for rules that work layer by layer.

Target propagation needs to see a network as a stack of layers, each reading earlier features, without importing
any particular architecture. An architecture built that way exposes ``layers_spec() -> list[LayerSpec]``, one
entry per layer in forward order, the output layer last. With the features

    h_0 = x (the input as ``forward`` receives it),   h_1, …, h_L (the layers' outputs, h_L = ŷ),

layer l computes

    x_l = concat([pre_l(h_i) for i in inputs_l], dim=1)     (pre_l = identity when None)
    h_l = activation_l(module_l(x_l))                      (activation None: no activation, as at the output)

and ``forward(x)`` must equal ``compose(model.layers_spec(), x)[-1]`` exactly (the tests check every layered
architecture). ``pre`` is applied to each input feature before the concatenation, so a layer may read features of
different resolutions (dense-convnet pools earlier maps once per pooling stage they pass). It must be a fixed,
parameter-free map that acts on each channel separately (flatten, max-pool, average pool, global average pool):
such maps commute with concatenation along dim 1, so this equals applying ``pre`` to the concatenated input when
the features share a resolution. Residual additions, batch norm or learned maps between layers do not fit; those
architectures (resnet18, resnet20, alexnet) do not offer the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import IncompatibleError


@dataclass
class LayerSpec:
    """One layer of a layered architecture; see the module docstring for the semantics."""

    module: nn.Module  # nn.Linear, nn.Conv2d or LocallyConnected2d (or a subclass from a layer factory)
    activation: nn.Module | None  # f_l; None for the output layer (and for a linear layer)
    inputs: list[int] = field(default_factory=list)  # indices of the features this layer reads, in order
    pre: Callable[[torch.Tensor], torch.Tensor] | None = None  # applied to each input feature (flatten, pool)

    def layer_input(self, features: list[torch.Tensor]) -> torch.Tensor:
        """x_l: the layer's input assembled from the feature list [h_0, h_1, ...]."""
        parts = [features[i] if self.pre is None else self.pre(features[i]) for i in self.inputs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def layer_output(self, x: torch.Tensor) -> torch.Tensor:
        """h_l = f_l(module_l(x_l))."""
        a = self.module(x)
        return a if self.activation is None else self.activation(a)


def compose(specs: list[LayerSpec], x: torch.Tensor) -> list[torch.Tensor]:
    """The features [h_0 = x, h_1, …, h_L] of a layered network; ``[-1]`` equals ``model(x)``."""
    features = [x]
    for spec in specs:
        features.append(spec.layer_output(spec.layer_input(features)))
    return features


def flatten(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C·H·W); a 2-D feature is returned as it is."""
    return h.flatten(1)


def global_average_pool(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C)."""
    return h.mean(dim=(2, 3))


def sequential_specs(model: nn.Sequential) -> list[LayerSpec]:
    """The layered protocol of a plain ``nn.Sequential`` of weight layers, activations and Flatten.

    Each weight layer (a registered layer type) reads the previous layer's output (flattened if a Flatten came
    between them) and is followed by at most one activation; the last layer has none. Raises IncompatibleError
    naming the first module that does not fit.
    """
    from .layers.types import layer_type  # the table of layer types: no rule, no architecture

    specs: list[LayerSpec] = []
    pending_flatten = False
    for name, module in model.named_children():
        if layer_type(module) is not None:
            pre = flatten if pending_flatten else None
            specs.append(LayerSpec(module, None, [len(specs)], pre))
            pending_flatten = False
        elif isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (1, -1):
            pending_flatten = True
        elif specs and specs[-1].activation is None and not pending_flatten and is_activation(module):
            specs[-1].activation = module
        else:
            raise IncompatibleError(
                f"{type(model).__name__} module {name!r} ({type(module).__name__}) is not a weight layer, an "
                "activation after one, or Flatten: target propagation cannot invert it"
            )
    if not specs:
        raise IncompatibleError(f"{type(model).__name__} has no Linear, Conv2d or locally connected layer")
    return specs


ACTIVATION_TYPES = (nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Hardtanh, nn.Softplus, nn.SiLU)


def is_activation(module: nn.Module) -> bool:
    """An elementwise nonlinearity without parameters (the inverses reuse it on their outputs)."""
    return isinstance(module, ACTIVATION_TYPES)


def layered_view(model: nn.Module, explain: bool = True) -> list[LayerSpec] | None:
    """The model's layer specs: its ``layers_spec()``, or those of a plain ``nn.Sequential``.

    With ``explain``, a model that has neither raises IncompatibleError saying why; otherwise returns None."""
    try:
        if hasattr(model, "layers_spec"):
            return model.layers_spec()
        if isinstance(model, nn.Sequential):
            return sequential_specs(model)
        raise IncompatibleError(
            f"{type(model).__name__} offers no layers_spec() and is not an nn.Sequential of layers and activations"
        )
    except IncompatibleError:
        if explain:
            raise
        return None
