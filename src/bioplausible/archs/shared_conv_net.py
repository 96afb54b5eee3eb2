"""Bartunov et al. 2018's "BP ConvNet": the ``lc-net`` shapes (their Table 3) with weight-shared convolutions.

Identical to :mod:`.lc_net` layer for layer (same kernels, strides, zero padding k//2, channels, fully connected
layer and options), except that every spatial layer is a Conv2d, so a kernel is shared across positions:

    mnist: Conv(3×3, 32, s2) → f → Conv(3×3, 64, s2) → f → flatten → Linear(hidden) → f → Linear(classes)
    cifar: Conv(5×5, 64, s2) → f → Conv(5×5, 128, s2) → f → Conv(3×3, 256, s1) → f → flatten → Linear(hidden) → f
           → Linear(classes)
"""

from __future__ import annotations

from ..registry import ARCHS
from .lc_net import LocalNet


@ARCHS.register("shared-conv-net")
class SharedConvNet(LocalNet):
    """Bartunov et al.'s convolutional baseline: the lc-net shapes with shared kernels."""

    spatial = "conv"
