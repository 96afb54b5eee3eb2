"""The densely connected ConvNet: ``convnet`` with the skip connections of Im, Patil & Branson's dense MLP ("DN"),
arranged as in DenseNet (Huang et al. 2017).

Every 3×3 convolution reads the channel-wise concatenation of all earlier feature maps at its resolution: the
block input and the outputs of every earlier convolution of the same block. A 2×2 max-pool after every
``pool_every``-th convolution ends a block; it pools the whole concatenation (a DenseNet transition without the
1×1 compression), which becomes the next block's input. With input channels C and growth rate ``channels`` = k:

    F_0 = [x],   h_l = f(conv3×3_l(concat(F_{l−1})))   (k maps),   F_l = F_{l−1} + [h_l],
    F_l ← [maxpool(concat(F_l))]   after every pool_every-th convolution,
    ŷ = W_out · global_average_pool(concat(F_depth)) + b_out,

so convolution l (1-based) has C + (l−1)·k input channels and the output layer C + depth·k inputs, as in
``dense-mlp``. Options and their defaults are those of ``convnet`` (:class:`~.convnet.ConvNetConfig`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layered import LayerSpec, global_average_pool
from ..registry import ARCHS
from .activations import make_activation
from .base import Architecture, arch_options
from .convnet import ConvNetConfig, check_image_input, pool_after


@ARCHS.register("dense-convnet")
class DenseConvNet(Architecture):
    """Densely connected ConvNet: each convolution reads every earlier feature map of its resolution."""

    Config = ConvNetConfig
    provides = ("layered",)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: ConvNetConfig | None = None, **options):
        super().__init__()
        o = arch_options(type(self), config, options)
        pools = pool_after(o.depth, o.pool_every)
        c, h, w = check_image_input(input_shape, sum(pools), "dense-convnet")
        self.input_size = (h, w)
        self.convs = nn.ModuleList(
            nn.Conv2d(c + l * o.channels, o.channels, kernel_size=3, padding=1, bias=o.bias) for l in range(o.depth)
        )
        self.pools = pools
        self.act = make_activation(o.activation)
        self.pool = nn.MaxPool2d(2)
        self.out = nn.Linear(c + o.depth * o.channels, num_classes, bias=o.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]  # [(N, C, H, W), (N, channels, H, W), ...] at the current resolution
        for layer, pool in zip(self.convs, self.pools):
            features.append(self.act(layer(torch.cat(features, dim=1))))  # (N, channels, H, W)
            if pool:
                features = [self.pool(torch.cat(features, dim=1))]  # (N, C + l·channels, H/2, W/2)
        h = torch.cat(features, dim=1)  # (N, C + depth·channels, H', W')
        return self.out(h.mean(dim=(2, 3)))  # (N, num_classes)

    def layers_spec(self) -> list[LayerSpec]:
        """The layered protocol (see :mod:`.spec`): every layer reads all earlier features, each max-pooled
        down to the layer's resolution (once per pooling stage it has passed); the output layer reads their global
        average pools."""
        size, specs = self.input_size, []
        for l, (conv, pool) in enumerate(zip(self.convs, self.pools)):
            specs.append(LayerSpec(conv, self.act, list(range(l + 1)), self._pool_to(size)))
            if pool:
                size = (size[0] // 2, size[1] // 2)
        pool_to = self._pool_to(size)

        def pool_then_average(h: torch.Tensor) -> torch.Tensor:
            return global_average_pool(pool_to(h))

        return [*specs, LayerSpec(self.out, None, list(range(len(self.convs) + 1)), pool_then_average)]

    def _pool_to(self, size: tuple[int, int]):
        """A map that max-pools a feature (2×2, repeatedly) until it has spatial ``size``."""

        def pool_to(h: torch.Tensor) -> torch.Tensor:
            while tuple(h.shape[-2:]) != size:
                h = self.pool(h)
            return h

        return pool_to
