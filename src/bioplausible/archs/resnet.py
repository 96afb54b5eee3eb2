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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..registry import ARCHS
from .convnet import check_image_input, scaled

STEMS = ("auto", "imagenet", "cifar")


def check_width_multiplier(width_multiplier: float) -> None:
    if width_multiplier <= 0:
        raise ConfigError(f"width_multiplier must be > 0 (got {width_multiplier})")


def check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ConfigError(f"unknown stem {stem!r}; choose from: {', '.join(STEMS)}")


@dataclass
class ResNet18Config:
    width_multiplier: float = option(1.0, "scales every layer width (channel counts)")
    stem: str = option(
        "auto",
        "first layers: imagenet (large kernel, stride, max-pool) or cifar (3×3, stride 1); auto: by H >= 128",
        choices=STEMS,
    )

    def validate(self) -> None:
        check_width_multiplier(self.width_multiplier)
        check_stem(self.stem)


@dataclass
class ResNet20Config:
    width_multiplier: float = option(1.0, "scales every layer width (channel counts)")

    def validate(self) -> None:
        check_width_multiplier(self.width_multiplier)


class BasicBlock(nn.Module):
    """Two 3×3 conv + BN layers with a residual connection; a 1×1 conv + BN projection when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int, conv: Callable[..., nn.Module]):
        super().__init__()
        self.conv1 = conv(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))  # (N, channels, H/stride, W/stride)
        h = self.bn2(self.conv2(h))  # (N, channels, H/stride, W/stride)
        return self.relu(h + self.shortcut(x))  # (N, channels, H/stride, W/stride)


class ResNet(nn.Module):
    """Stem → stages of BasicBlocks → adaptive average pool → flatten → Linear."""

    def __init__(
        self,
        num_classes: int,
        stem: nn.Module,
        stem_channels: int,
        stages: list[tuple[int, int, int]],
        conv: Callable[..., nn.Module],
        linear: Callable[..., nn.Module],
    ):
        """``stages``: (blocks, width, stride of the first block) per stage."""
        super().__init__()
        self.stem = stem
        blocks, c = [], stem_channels
        for n_blocks, width, stride in stages:
            stage = [BasicBlock(c, width, stride, conv)]
            stage += [BasicBlock(width, width, 1, conv) for _ in range(n_blocks - 1)]
            blocks.append(nn.Sequential(*stage))
            c = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)  # (N, stem_channels, H', W')
        h = self.stages(h)  # (N, last width, H'', W'')
        return self.fc(self.pool(h).flatten(1))  # (N, last width) -> (N, num_classes)


@ARCHS.register("resnet18")
class ResNet18(ResNet):
    """torchvision-style ResNet-18 (BasicBlock, [2, 2, 2, 2]) with an ImageNet or a CIFAR stem."""

    Config = ResNet18Config

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width_multiplier: float = 1.0,
        stem: str = "auto",
        linear: Callable[..., nn.Module] = nn.Linear,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ):
        c, h, _ = check_image_input(input_shape, 0, "resnet18")
        if stem == "auto":
            stem = "imagenet" if h >= 128 else "cifar"
        w = [scaled(n, width_multiplier) for n in (64, 128, 256, 512)]
        if stem == "imagenet":
            first = conv(c, w[0], kernel_size=7, stride=2, padding=3, bias=False)
            tail = [nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        else:
            first = conv(c, w[0], kernel_size=3, stride=1, padding=1, bias=False)
            tail = []
        stem_module = nn.Sequential(first, nn.BatchNorm2d(w[0]), nn.ReLU(), *tail)
        stages = [(2, w[0], 1), (2, w[1], 2), (2, w[2], 2), (2, w[3], 2)]
        super().__init__(num_classes, stem_module, w[0], stages, conv, linear)
        self.stem_kind = stem


@ARCHS.register("resnet20")
class ResNet20(ResNet):
    """He et al.'s CIFAR ResNet-20 (3 stages × 3 BasicBlocks, widths 16-32-64), projection (option B) shortcuts."""

    Config = ResNet20Config

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width_multiplier: float = 1.0,
        linear: Callable[..., nn.Module] = nn.Linear,
        conv: Callable[..., nn.Module] = nn.Conv2d,
    ):
        c, _, _ = check_image_input(input_shape, 0, "resnet20")
        w = [scaled(n, width_multiplier) for n in (16, 32, 64)]
        stem_module = nn.Sequential(
            conv(c, w[0], kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU()
        )
        stages = [(3, w[0], 1), (3, w[1], 2), (3, w[2], 2)]
        super().__init__(num_classes, stem_module, w[0], stages, conv, linear)
