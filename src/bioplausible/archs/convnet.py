"""The plain convolutional network ("ConvNet" in Im, Patil & Branson), a stack of 3×3 convolutions with max pooling.

For an image input (C, H, W):

    h_0 = x,   h_l = f(conv3×3_l(h_{l−1}))  (stride 1, padding 1, ``channels`` maps each),  l = 1..depth,
    with a 2×2 max-pool after every ``pool_every``-th convolution (so depth=4, pool_every=2 halves the
    resolution twice: 28→14→7 on MNIST, 32→16→8 on CIFAR),
    ŷ = W_out · global_average_pool(h_depth) + b_out.

The global average pool makes the output layer independent of the input size. Options: ``depth`` (number of
convolutions), ``channels`` (maps per convolution), ``activation``, ``pool_every`` (0: never pool), ``bias``.
The densely connected version (``dense-convnet``) shares :class:`ConvNetConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..layered import LayerSpec, global_average_pool
from ..registry import ARCHS
from .activations import ACTIVATIONS, make_activation
from .base import Architecture, arch_options


@dataclass
class ConvNetConfig:
    depth: int = option(4, "number of hidden layers (3×3 convolutions in convnet and dense-convnet)", min=1)
    channels: int = option(32, "feature maps per convolution (the growth rate of dense-convnet)", min=1)
    activation: str = option("tanh", "hidden nonlinearity", choices=tuple(ACTIVATIONS))
    pool_every: int = option(2, "2×2 max-pool after every this many convolutions (0: never pool)", min=0)
    bias: bool = option(True, "give every layer a bias")


def pool_after(depth: int, pool_every: int) -> list[bool]:
    """For each of the ``depth`` convolutions, whether a 2×2 max-pool follows it."""
    return [pool_every > 0 and (l + 1) % pool_every == 0 for l in range(depth)]


def scaled(width: int, width_multiplier: float) -> int:
    """``width`` times ``width_multiplier``, rounded, at least 1."""
    return max(1, round(width * width_multiplier))


def check_image_input(input_shape: tuple[int, ...], num_pools: int, arch: str) -> tuple[int, int, int]:
    """The (C, H, W) of ``input_shape``; ConfigError if it is not an image or too small for ``num_pools`` halvings."""
    if len(input_shape) != 3:
        raise ConfigError(f"{arch} needs an image input (C, H, W), got input shape {tuple(input_shape)}")
    c, h, w = input_shape
    if min(h, w) < 2**num_pools:
        raise ConfigError(
            f"{arch}: an input of {h}×{w} is too small for {num_pools} 2×2 poolings (needs at least "
            f"{2**num_pools}×{2**num_pools}); use a smaller depth or a larger pool_every"
        )
    return c, h, w


@ARCHS.register("convnet")
class ConvNet(Architecture):
    """Plain ConvNet: each 3×3 convolution reads only the layer below; global average pool, then a Linear."""

    Config = ConvNetConfig
    provides = ("layered",)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: ConvNetConfig | None = None, **options):
        super().__init__()
        c = arch_options(type(self), config, options)
        pools = pool_after(c.depth, c.pool_every)
        in_channels, _, _ = check_image_input(input_shape, sum(pools), "convnet")
        sizes = [in_channels] + [c.channels] * c.depth
        self.convs = nn.ModuleList(
            nn.Conv2d(sizes[l], sizes[l + 1], kernel_size=3, padding=1, bias=c.bias) for l in range(c.depth)
        )
        self.pools = pools
        self.act = make_activation(c.activation)
        self.pool = nn.MaxPool2d(2)
        self.out = nn.Linear(c.channels, num_classes, bias=c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (N, C, H, W)
        for layer, pool in zip(self.convs, self.pools):
            h = self.act(layer(h))  # (N, channels, H', W')
            if pool:
                h = self.pool(h)  # (N, channels, H'/2, W'/2)
        return self.out(h.mean(dim=(2, 3)))  # (N, channels) -> (N, num_classes)

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): convolution l reads h_{l−1}, max-pooled when a pool follows
        convolution l−1; the output layer reads the global average pool of h_depth."""
        pooled = [False, *self.pools]  # pooled[l]: h_l is max-pooled before the next layer reads it
        specs = [LayerSpec(conv, self.act, [l], self.pool if pooled[l] else None) for l, conv in enumerate(self.convs)]

        def pool_then_average(h: torch.Tensor) -> torch.Tensor:
            return global_average_pool(self.pool(h))

        last = len(self.convs)
        return [*specs, LayerSpec(self.out, None, [last], pool_then_average if pooled[last] else global_average_pool)]
