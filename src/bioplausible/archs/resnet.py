"""Residual networks with BasicBlocks (He et al. 2016, "Deep residual learning for image recognition").

BasicBlock(c_in → c, stride s):  y = relu(bn(conv3×3(relu(bn(conv3×3_s(x))))) + shortcut(x)),
shortcut = identity, or bn(conv1×1_s(x)) (a projection, "option B") where the stride or channel count changes.
Every convolution is bias-free and followed by batch norm; all nonlinearities are ReLU.

``resnet18`` — torchvision's ResNet-18: stem → 4 stages of 2 blocks, widths 64-128-256-512 (strides 1-2-2-2) →
adaptive average pool → flatten → Linear. Stem ``imagenet``: conv 7×7/2 (64) + BN + ReLU + max-pool 3×3/2;
stem ``cifar``: conv 3×3/1 + BN + ReLU, no max-pool; ``auto`` picks imagenet when H ≥ 128, else cifar.
With width_multiplier 1 and 1000 classes on the imagenet stem it has torchvision's 11,689,512 parameters.

``resnet20`` — the CIFAR ResNet of He et al. (Section 4.2, n = 3): conv 3×3 (16) + BN + ReLU → 3 stages of 3 blocks,
widths 16-32-64 (strides 1-2-2) → adaptive average pool → flatten → Linear. The paper's CIFAR nets use
parameter-free "option A" shortcuts; here the two shortcuts that change shape are 1×1 conv + BN projections
(option B), which adds 2,752 parameters: 272,474 in all for 10 classes.

``width_multiplier`` scales every width (rounded, at least 1). Shapes (N, C, H, W) on a (3, 32, 32) input,
resnet20: (16, 32, 32) → (32, 16, 16) → (64, 8, 8) → 64 → classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..registry import ARCHS
from .base import Architecture, arch_options
from .convnet import check_image_input, scaled

STEMS = ("auto", "imagenet", "cifar")


@dataclass
class ResNet18Config:
    width_multiplier: float = option(1.0, "scales every layer width (channel counts)", above=0)
    stem: str = option(
        "auto",
        "first layers: imagenet (large kernel, stride, max-pool) or cifar (3×3, stride 1); auto: by H >= 128",
        choices=STEMS,
    )


@dataclass
class ResNet20Config:
    width_multiplier: float = option(1.0, "scales every layer width (channel counts)", above=0)


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers with a residual connection; a 1×1 conv + BN projection when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))  # (N, channels, H/stride, W/stride)
        h = self.bn2(self.conv2(h))  # (N, channels, H/stride, W/stride)
        return self.relu(h + self.shortcut(x))  # (N, channels, H/stride, W/stride)


class ResNet(Architecture):
    """Stem → stages of BasicBlocks → adaptive average pool → flatten → Linear."""

    def build(self, num_classes: int, stem: nn.Module, stem_channels: int, stages: list[tuple[int, int, int]]) -> None:
        """``stages``: (blocks, width, stride of the first block) per stage."""
        self.stem = stem
        blocks, c = [], stem_channels
        for n_blocks, width, stride in stages:
            stage = [BasicBlock(c, width, stride)]
            stage += [BasicBlock(width, width, 1) for _ in range(n_blocks - 1)]
            blocks.append(nn.Sequential(*stage))
            c = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)  # (N, stem_channels, H', W')
        h = self.stages(h)  # (N, last width, H'', W'')
        return self.fc(self.pool(h).flatten(1))  # (N, last width) -> (N, num_classes)


@ARCHS.register("resnet18")
class ResNet18(ResNet):
    """torchvision-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) with an ImageNet or a CIFAR stem."""

    Config = ResNet18Config

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: ResNet18Config | None = None, **options):
        super().__init__()
        o = arch_options(type(self), config, options)
        c, h, _ = check_image_input(input_shape, 0, "resnet18")
        stem = o.stem if o.stem != "auto" else "imagenet" if h >= 128 else "cifar"
        w = [scaled(n, o.width_multiplier) for n in (64, 128, 256, 512)]
        if stem == "imagenet":
            first = nn.Conv2d(c, w[0], kernel_size=7, stride=2, padding=3, bias=False)
            tail = [nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        else:
            first = nn.Conv2d(c, w[0], kernel_size=3, stride=1, padding=1, bias=False)
            tail = []
        stem_module = nn.Sequential(first, nn.BatchNorm2d(w[0]), nn.ReLU(), *tail)
        stages = [(2, w[0], 1), (2, w[1], 2), (2, w[2], 2), (2, w[3], 2)]
        self.build(num_classes, stem_module, w[0], stages)
        self.stem_kind = stem


@ARCHS.register("resnet20")
class ResNet20(ResNet):
    """He et al.'s CIFAR ResNet-20 (3 stages × 3 BasicBlocks, widths 16-32-64), projection (option B) shortcuts."""

    Config = ResNet20Config

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: ResNet20Config | None = None, **options):
        super().__init__()
        o = arch_options(type(self), config, options)
        c, _, _ = check_image_input(input_shape, 0, "resnet20")
        w = [scaled(n, o.width_multiplier) for n in (16, 32, 64)]
        stem_module = nn.Sequential(
            nn.Conv2d(c, w[0], kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU()
        )
        stages = [(3, w[0], 1), (3, w[1], 2), (3, w[2], 2)]
        self.build(num_classes, stem_module, w[0], stages)
