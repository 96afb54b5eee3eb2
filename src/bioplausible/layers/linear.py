"""``nn.Linear`` with a feedback path: a = h Wᵀ + b;  ∂W = gᵀ h,  ∂b = Σ g,  ∂h = g B (B = W: backprop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .feedback import FeedbackLayer, FeedbackMode
from .types import LayerType, dense_fan_in, dense_matrices, register_layer_type


class FeedbackLinear(FeedbackLayer, nn.Linear):
    """``nn.Linear`` whose input gradient goes through the layer's feedback mode; ``from_module`` keeps W and b."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("feedback", self.weight.detach().clone())
        self.exact, self.feedback_mode = False, FeedbackMode()

    def op(self, h, weight, bias):
        return F.linear(h, weight, bias)

    def op_backward(self, g, h, weight, kernel, need_h, need_w, need_b):
        # h (N, *, in); g (N, *, out); kernel (out, in)
        g2 = g.reshape(-1, g.shape[-1])
        grad_h = g @ kernel if need_h else None
        grad_w = g2.t() @ h.reshape(-1, h.shape[-1]) if need_w else None
        grad_b = g2.sum(0) if need_b else None
        return grad_h, grad_w, grad_b

    def mirror_input_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(h, weight)


def linear_transpose(layer: nn.Linear, channels_in: int, hidden: torch.Size) -> nn.Module:
    return nn.Linear(channels_in, hidden[1])


register_layer_type(
    LayerType(nn.Linear, FeedbackLinear, fan_in=dense_fan_in, matrices=dense_matrices, transpose=linear_transpose)
)
