"""``nn.Conv2d`` with a feedback path.

    ∂W, ∂b = the ordinary gradients of the convolution (true, local)
    ∂h     = the input gradient of the convolution computed with B in place of W     (FA family; B = W: backprop)

The gradients come from ``aten.convolution_backward``, the kernel autograd itself uses, in one call as for
backprop: the FA backward does backprop's arithmetic with another kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleError
from .feedback import FeedbackLayer
from .types import LayerType, dense_fan_in, dense_matrices, register_layer_type


def explicit_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """The zero padding of ``conv`` as two numbers; IncompatibleError for what a feedback layer cannot copy."""
    if conv.padding_mode != "zeros":
        raise IncompatibleError(f"feedback convolutions support padding_mode='zeros' only (got {conv.padding_mode!r})")
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise IncompatibleError("padding='same' with an even kernel pads asymmetrically; give explicit padding")
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """``nn.Conv2d`` with a feedback kernel; ``FeedbackConv2d.from_module(conv, mode)`` keeps the weights."""

    @classmethod
    def from_module(cls, conv: nn.Conv2d, mode):
        layer = super().from_module(conv, mode)
        layer.geometry = (list(conv.stride), list(explicit_padding(conv)), list(conv.dilation), conv.groups)
        return layer

    def op(self, h, weight, bias):
        stride, padding, dilation, groups = self.geometry
        return F.conv2d(h, weight, bias, stride, padding, dilation, groups)

    def op_backward(self, g, h, weight, kernel, need_h, need_w, need_b):
        # One kernel call, as backprop makes: the weight gradient does not read the kernel's values, so passing B
        # yields the input gradient through B and the true weight and bias gradients.
        stride, padding, dilation, groups = self.geometry
        bias_sizes = [weight.shape[0]] if need_b else None
        return torch.ops.aten.convolution_backward(
            g, h, kernel if need_h else weight, bias_sizes, stride, padding, dilation, False, [0, 0], groups,
            [need_h, need_w, need_b],
        )  # fmt: skip

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H', W') of the output for an input of spatial ``size``."""
        stride, padding, dilation, _ = self.geometry
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(size, padding, dilation, self.kernel_size, stride)
        )

    def mirror_input_shape(self) -> tuple[int, ...]:
        # one kernel-sized patch: the convolution then has a single output position
        return (self.in_channels, *(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)))

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, weight, None, 1, 0, self.dilation, self.groups)


def conv_transpose(module: nn.Conv2d, channels_in: int, hidden: torch.Size) -> nn.Module:
    """A ConvTranspose2d of the same geometry, from the layer's output to an input of shape ``hidden``."""
    if module.groups != 1 or isinstance(module.padding, str):
        raise IncompatibleError(f"target propagation inverts ungrouped, numerically padded convolutions, not {module}")
    # output_padding restores the rows and columns that the strided forward convolution dropped
    output_padding = []
    for n, k, s, p, d in zip(hidden[2:], module.kernel_size, module.stride, module.padding, module.dilation):
        m = (n + 2 * p - d * (k - 1) - 1) // s + 1  # the forward convolution's output size
        output_padding.append(n - ((m - 1) * s - 2 * p + d * (k - 1) + 1))
    return nn.ConvTranspose2d(
        channels_in, hidden[1], module.kernel_size, module.stride, module.padding, tuple(output_padding),
        dilation=module.dilation,
    )  # fmt: skip


register_layer_type(
    LayerType(
        nn.Conv2d,
        FeedbackConv2d,
        fan_in=dense_fan_in,
        matrices=dense_matrices,
        transpose=conv_transpose,
        check=explicit_padding,
    )
)
