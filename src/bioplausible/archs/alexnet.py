"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) with torchvision's single-tower layer shapes.

    conv 11×11/4 (64, padding 2) → ReLU → max-pool 3×3/2
    → conv 5×5 (192, padding 2) → ReLU → max-pool 3×3/2
    → conv 3×3 (384) → ReLU → conv 3×3 (256) → ReLU → conv 3×3 (256) → ReLU → max-pool 3×3/2   (3×3 convs: padding 1)
    → adaptive average pool 6×6 → flatten → dropout → Linear(4096) → ReLU → dropout → Linear(4096) → ReLU
    → Linear(classes)

On (3, 224, 224) the feature maps are (64, 55, 55) → (64, 27, 27) → (192, 27, 27) → (192, 13, 13) → (384, 13, 13)
→ (256, 13, 13) → (256, 6, 6); with 1000 classes and width_multiplier 1 that is torchvision's 61,100,840 parameters.

Small inputs: the three 3×3/2 max-pools each need at least 3×3 maps, so the ``imagenet`` stem (the 11×11/4 first
convolution) needs H, W ≥ 63. The ``cifar`` stem replaces only the first convolution by a 3×3/1 one (padding 1),
which runs on inputs from 15×15 up (32×32 → (64, 32, 32) → 15 → 7 → 3, then the adaptive pool up-samples to 6×6;
28×28 → 28 → 13 → 6 → 2). ``stem=auto`` picks imagenet when H ≥ 128, else cifar. An input too small for the chosen
stem raises ConfigError naming the minimum size.

Options: ``width_multiplier`` scales every width, the convolutions' channels and the two 4096-unit layers
(rounded, at least 1); ``dropout`` is the drop probability before each of the two hidden Linear layers; ``stem``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..registry import ARCHS
from .base import Architecture, arch_options
from .convnet import check_image_input, scaled
from .resnet import STEMS

# (out_channels, kernel, stride, padding, max-pool after) of the five convolutions, per stem (only conv1 differs).
_LATER_CONVS = [(192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False), (256, 3, 1, 1, True)]
CONVS = {"imagenet": [(64, 11, 4, 2, True), *_LATER_CONVS], "cifar": [(64, 3, 1, 1, True), *_LATER_CONVS]}
HIDDEN = 4096
POOL_KERNEL, POOL_STRIDE = 3, 2


@dataclass
class AlexNetConfig:
    width_multiplier: float = option(1.0, "scales the channel counts (and alexnet's 4096-unit layers)", above=0)
    dropout: float = option(0.5, "dropout probability before each hidden Linear layer", min=0, below=1)
    stem: str = option(
        "auto",
        "first layers: imagenet (large kernel, stride, max-pool) or cifar (3×3, stride 1); auto: by H >= 128",
        choices=STEMS,
    )


def feature_size(n: int, stem: str) -> int:
    """Side length of the last max-pool's output for an input side ``n``; 0 when a max-pool gets less than 3."""
    for _, k, s, p, pool in CONVS[stem]:
        n = (n + 2 * p - k) // s + 1
        if pool:
            if n < POOL_KERNEL:
                return 0
            n = (n - POOL_KERNEL) // POOL_STRIDE + 1
    return n


def min_input_size(stem: str) -> int:
    return next(n for n in range(1, 1024) if feature_size(n, stem) > 0)


@ARCHS.register("alexnet")
class AlexNet(Architecture):
    """AlexNet with torchvision's layer shapes; a stride-1 3×3 first convolution (stem=cifar) for small inputs."""

    Config = AlexNetConfig

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: AlexNetConfig | None = None, **options):
        super().__init__()
        o = arch_options(type(self), config, options)
        width_multiplier, dropout = o.width_multiplier, o.dropout
        c, h, w = check_image_input(input_shape, 0, "alexnet")
        stem = o.stem if o.stem != "auto" else "imagenet" if h >= 128 else "cifar"
        if feature_size(min(h, w), stem) < 1:
            raise ConfigError(
                f"alexnet: an input of {h}×{w} is too small for the {stem} stem (its max-pools need at least "
                f"{min_input_size(stem)}×{min_input_size(stem)})" + ("; try stem=cifar" if stem == "imagenet" else "")
            )
        self.stem_kind = stem
        layers: list[nn.Module] = []
        for out_channels, k, s, p, pool in CONVS[stem]:
            out_channels = scaled(out_channels, width_multiplier)
            layers += [nn.Conv2d(c, out_channels, kernel_size=k, stride=s, padding=p), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=POOL_KERNEL, stride=POOL_STRIDE))
            c = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        hidden = scaled(HIDDEN, width_multiplier)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c * 6 * 6, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (N, 256, H', W'), e.g. (N, 256, 6, 6) on 224×224, (N, 256, 3, 3) on 32×32 (cifar stem)
        h = self.avgpool(h)  # (N, 256, 6, 6)
        return self.classifier(h.flatten(1))  # (N, 9216) -> (N, num_classes)
