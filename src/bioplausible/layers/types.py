"""One table per layer type: everything the library knows about a trainable torch layer, in one entry.

The swap (:mod:`.swap`), the initialisations (``--init``), target propagation's inverses and the weight mirrors
read this table; none of them has a branch per layer type. A new layer type is one entry:

    register_layer_type(LayerType(nn.Linear, FeedbackLinear, fan_in=..., matrices=..., transpose=...))

The swap matches a module to an entry by ``isinstance`` (the most specific registered type wins), so a subclass of
nn.Linear is swapped like nn.Linear; modules that use their weights without calling their own forward
(``nn.MultiheadAttention``) are listed in ``FUNCTIONAL_USERS`` and never swapped (see :mod:`.swap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerType:
    """A torch layer type and how each part of the library treats it.

    Attributes:
        torch_type: the layer class (matched with isinstance).
        feedback_class: its feedback version (:class:`~.feedback.FeedbackLayer` subclass with ``from_module``).
        fan_in: inputs feeding one output unit (the 1/√fan_in scale of inits and feedback matrices).
        matrices: the weight as (out_channels, fan_in) matrices to initialise (one per position for unshared
            layers); a convolution's fan_out is out_channels·k·k (see :func:`fan_out`).
        transpose: ``transpose(layer, channels_in, hidden_shape) -> nn.Module``: the learnable map from the layer's
            output back to an input of shape ``hidden_shape`` (target propagation's inverses), or None.
        check: raises IncompatibleError for a configuration of the layer the feedback version cannot serve.
    """

    torch_type: type[nn.Module]
    feedback_class: type[nn.Module]
    fan_in: Callable[[nn.Module], int]
    matrices: Callable[[nn.Module], list[torch.Tensor]]
    transpose: Callable[[nn.Module, int, torch.Size], nn.Module] | None = None
    check: Callable[[nn.Module], None] = lambda layer: None


LAYER_TYPES: dict[type[nn.Module], LayerType] = {}

# Modules whose forward uses their (or their children's) weights without calling the children's forward: swapping
# a child there would change nothing, silently. They keep backprop, with a warning (see swap.py).
FUNCTIONAL_USERS: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)


def register_layer_type(entry: LayerType) -> LayerType:
    if entry.torch_type in LAYER_TYPES:
        raise ValueError(f"layer type {entry.torch_type.__name__} is already registered")
    LAYER_TYPES[entry.torch_type] = entry
    return entry


def layer_type(module: nn.Module) -> LayerType | None:
    """The entry for ``module`` (most specific registered base class first), or None if it has none."""
    for cls in type(module).__mro__:
        if cls in LAYER_TYPES:
            return LAYER_TYPES[cls]
    return None


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit of a registered layer (or of its feedback version)."""
    entry = layer_type(layer)
    return entry.fan_in(layer) if entry else layer.weight[0].numel()


def out_rows(layer: nn.Module) -> int:
    """Rows of the layer's weight matrix: out_features, or out_channels for a convolution or locally connected
    layer."""
    entry = layer_type(layer)
    return entry.matrices(layer)[0].shape[0] if entry else layer.weight.shape[0]


def kernel_area(layer: nn.Module) -> int:
    """k·k of a layer's ``kernel_size`` (an int or a tuple), 1 for a layer without one (Linear)."""
    size = getattr(layer, "kernel_size", 1)
    return math.prod(size) if isinstance(size, (tuple, list)) else int(size)


def fan_out(layer: nn.Module) -> int:
    """Outputs one input unit feeds, counted as PyTorch's ``xavier_uniform_`` and Keras's ``glorot_uniform`` count
    them: out_features for a linear layer, out_channels·k·k for a convolution or a locally connected layer."""
    return out_rows(layer) * kernel_area(layer)


INIT_SCHEMES = ("default", "lecun", "xavier", "orthogonal")  # --init's choices (bioplausible.archs.init)


def init_bound(layer: nn.Module, scheme: str = "default") -> float:
    """The bound k of the uniform distribution U(−k, k) with the standard deviation of W's init under ``scheme``
    (σ = k/√3): default (PyTorch's) 1/√fan_in; lecun √(3/fan_in); xavier √(6/(fan_in + fan_out)); orthogonal
    √(3/max(rows, fan_in)), rows being the weight matrix's output rows. Feedback rules draw B on it.

    Raises:
        ValueError: for a scheme not in INIT_SCHEMES.
    """
    n_in = fan_in(layer)
    if scheme == "default":
        return 1.0 / math.sqrt(n_in)  # exactly as before schemes existed: runs drawn with it stay bit for bit
    if scheme == "lecun":
        return math.sqrt(3.0 / n_in)
    if scheme == "xavier":
        return math.sqrt(6.0 / (n_in + fan_out(layer)))
    if scheme == "orthogonal":
        return math.sqrt(3.0 / max(out_rows(layer), n_in))
    raise ValueError(f"unknown init scheme {scheme!r}; choose from: {', '.join(INIT_SCHEMES)}")


def dense_matrices(layer: nn.Module) -> list[torch.Tensor]:
    """The weight viewed as one (out, in·k·k) matrix: Linear and Conv2d."""
    return [layer.weight.data.view(layer.weight.shape[0], -1)]


def dense_fan_in(layer: nn.Module) -> int:
    return layer.weight[0].numel()
