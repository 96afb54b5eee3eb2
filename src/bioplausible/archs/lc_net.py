"""The locally connected network of Bartunov et al. 2018 ("Assessing the scalability of biologically-motivated deep
learning algorithms and architectures", Table 3), and the builder it shares with ``shared-conv-net``.

Layers (k×k kernel, c maps, stride s, zero padding k//2; f after every hidden layer):

    mnist: LC(3×3, 32, s2) → f → LC(3×3, 64, s2) → f → flatten → Linear(hidden) → f → Linear(classes)
           (1, 28, 28) → (32, 14, 14) → (64, 7, 7) → 3136 → 1024 → 10
    cifar: LC(5×5, 64, s2) → f → LC(5×5, 128, s2) → f → LC(3×3, 256, s1) → f → flatten → Linear(hidden) → f
           → Linear(classes)
           (3, 32, 32) → (64, 16, 16) → (128, 8, 8) → (256, 8, 8) → 16384 → 1024 → 10

A locally connected layer (:class:`~bioplausible.layers.local.LocallyConnected2d`) is a convolution without weight
sharing: every output position has its own kernel. Options: ``variant`` (auto picks mnist for 1 input channel and
cifar for 3), ``activation`` (tanh), ``hidden`` (units of the fully connected layer), ``width_multiplier`` (scales
the channel counts of the locally connected layers), ``bias``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..layered import LayerSpec, flatten
from ..layers.local import LocallyConnected2d
from ..registry import ARCHS
from .activations import ACTIVATIONS, make_activation
from .base import Architecture, arch_options
from .convnet import check_image_input, scaled

#: (out_channels, kernel_size, stride) of each locally connected (or convolutional) layer, per variant.
VARIANTS: dict[str, list[tuple[int, int, int]]] = {
    "mnist": [(32, 3, 2), (64, 3, 2)],
    "cifar": [(64, 5, 2), (128, 5, 2), (256, 3, 1)],
}
AUTO_VARIANT = {1: "mnist", 3: "cifar"}  # input channels -> variant


@dataclass
class LocalNetConfig:
    variant: str = option(
        "auto",
        "layer shapes of Bartunov et al.: mnist, cifar, or auto (by input channels: 1 mnist, 3 cifar)",
        choices=("auto", *VARIANTS),
    )
    activation: str = option("tanh", "hidden nonlinearity", choices=tuple(ACTIVATIONS))
    hidden: int = option(1024, "units of the fully connected hidden layer", min=1)
    width_multiplier: float = option(
        1.0, "scales the channel counts of the locally connected (or conv) layers", above=0
    )
    bias: bool = option(True, "give every layer a bias")


def spatial_layer(kind: str, c_in: int, c_out: int, in_size: tuple[int, int], k: int, stride: int, padding: int, bias):
    """A locally connected layer (``local``) or a convolution (``conv``) of the same shape."""
    if kind == "local":
        return LocallyConnected2d(c_in, c_out, in_size, k, stride=stride, padding=padding, bias=bias)
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias)


class LocalNet(Architecture):
    """Bartunov et al.'s Table 3 network; ``spatial`` (a class attribute of each registered variant) says whether
    its spatial layers are locally connected (``lc-net``) or convolutions (``shared-conv-net``): same shapes."""

    Config = LocalNetConfig
    provides = ("layered",)
    spatial = "local"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: LocalNetConfig | None = None, **options):
        super().__init__()
        o = arch_options(type(self), config, options)
        c, h, w = check_image_input(input_shape, 0, self.name)
        variant = o.variant
        if variant == "auto":
            if c not in AUTO_VARIANT:
                raise ConfigError(f"{self.name}: variant=auto picks by input channels (1 or 3), got {c}; set variant")
            variant = AUTO_VARIANT[c]
        layers = []
        for out_channels, k, stride in VARIANTS[variant]:
            out_channels = scaled(out_channels, o.width_multiplier)
            padding = k // 2  # odd k: every output size is >= 1
            out_h, out_w = ((n + 2 * padding - k) // stride + 1 for n in (h, w))
            layers.append(spatial_layer(self.spatial, c, out_channels, (h, w), k, stride, padding, o.bias))
            c, h, w = out_channels, out_h, out_w
        self.variant = variant
        self.features = nn.ModuleList(layers)
        self.act = make_activation(o.activation)
        self.fc = nn.Linear(c * h * w, o.hidden, bias=o.bias)
        self.out = nn.Linear(o.hidden, num_classes, bias=o.bias)

    @classmethod
    def describe(cls, options: dict) -> str:
        return cls.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (N, C, H, W)
        for layer in self.features:
            h = self.act(layer(h))  # (N, c_l, H_l, W_l), e.g. (N, 32, 14, 14) then (N, 64, 7, 7) on MNIST
        h = self.act(self.fc(h.flatten(1)))  # (N, hidden)
        return self.out(h)  # (N, num_classes)

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): each layer reads the one below; the fully connected layer
        reads the flattened maps."""
        n = len(self.features)
        specs = [LayerSpec(layer, self.act, [l]) for l, layer in enumerate(self.features)]
        return [*specs, LayerSpec(self.fc, self.act, [n], flatten), LayerSpec(self.out, None, [n + 1])]


@ARCHS.register("lc-net")
class LCNet(LocalNet):
    """Bartunov et al.'s locally connected network: unshared k×k kernels at every position."""

    spatial = "local"
