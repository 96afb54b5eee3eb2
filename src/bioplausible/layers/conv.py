"""``nn.Conv2d`` whose backward sends the error through a feedback kernel B instead of W.

    ∂W = the ordinary weight gradient of the convolution (true, local)
    ∂h = the input gradient of the convolution computed with B in place of W      (FA family; B = W is backprop)
    ∂h = e B reshaped to h's shape                                              (DFA; B is (n_e, C·H·W))

The gradients come from ``aten.convolution_backward``, the kernel autograd itself uses, in one call as for
backprop: the FA backward does backprop's arithmetic with another kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import IncompatibleError
from .feedback import FEEDBACK_LAYERS, FeedbackLayer


def _conv_backward(g, h, kernel, geometry, mask):
    stride, padding, dilation, groups = geometry
    bias_sizes = [kernel.shape[0]] if mask[2] else None
    return torch.ops.aten.convolution_backward(
        g, h, kernel, bias_sizes, stride, padding, dilation, False, [0, 0], groups, mask
    )


class _FeedbackConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, feedback, direct, geometry):
        # h (N, C, H, W); weight (out, C/groups, k, k); feedback like weight, or (n_e, C·H·W) for DFA
        ctx.save_for_backward(h, weight if direct is not None else None, feedback)
        ctx.direct, ctx.geometry, ctx.has_bias = direct, geometry, bias is not None
        stride, padding, dilation, groups = geometry
        return F.conv2d(h, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):  # g (N, out, H', W')
        h, weight, feedback = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        mask = [need_h, need_w, need_b and ctx.has_bias]
        if ctx.direct is None:
            # One kernel call, as backprop makes: the weight gradient does not read the kernel's values, so
            # passing B yields the input gradient through B and the true weight and bias gradients.
            grad_h, grad_w, grad_b = _conv_backward(g, h, feedback, ctx.geometry, mask)
            return grad_h, grad_w, grad_b, None, None, None
        grad_h = ctx.direct.input_grad(feedback, h) if need_h else None
        _, grad_w, grad_b = _conv_backward(g, h, weight, ctx.geometry, [False, *mask[1:]])
        return grad_h, grad_w, grad_b, None, None, None


def _explicit_padding(conv: nn.Conv2d) -> tuple[int, int]:
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


class FeedbackConv2d(nn.Conv2d, FeedbackLayer):
    """``nn.Conv2d`` with a feedback kernel; ``FeedbackConv2d.from_module(conv)`` keeps the weights."""

    @classmethod
    def from_module(cls, conv: nn.Conv2d) -> FeedbackConv2d:
        layer = super().from_module(conv)
        layer.geometry = (list(conv.stride), list(_explicit_padding(conv)), list(conv.dilation), conv.groups)
        return layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return super().forward(h)
        if self.direct is not None:
            self.direct.ensure_feedback(self, h)
        return _FeedbackConv2dFn.apply(h, self.weight, self.bias, self.feedback, self.direct, self.geometry)

    def mirror_input_shape(self) -> tuple[int, ...]:
        # one kernel-sized patch: the convolution then has a single output position
        return (self.in_channels, *(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)))

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, weight, None, 1, 0, self.dilation, self.groups)


FEEDBACK_LAYERS[nn.Conv2d] = FeedbackConv2d
