"""Locally connected layers: convolution-shaped, but every output position has its own kernel (no weight sharing).

Bartunov et al. 2018 use them to ask whether biologically motivated rules scale without the (implausible) weight
sharing of convolutions. With patches P = unfold(h) of shape (L, N, C·k·k), one per output position ℓ:

    a[ℓ] = P[ℓ] W[ℓ]ᵀ + b[ℓ]            W: (L, out, C·k·k), a batched matmul over the L positions
    ∂W[ℓ] = g[ℓ]ᵀ P[ℓ]                  ∂P[ℓ] = g[ℓ] B[ℓ],  ∂h = fold(∂P)   (B = W is backprop)

Memory: W holds L·out·C·k² numbers (L times a convolution's); the forward keeps P, k²/stride² times h's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .feedback import FEEDBACK_LAYERS, FeedbackLayer


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class LocallyConnected2d(nn.Module):
    """Conv2d-shaped layer with unshared weights: ``LocallyConnected2d(C, out, (H, W), kernel_size, stride, padding)``.

    Attributes:
        weight: (L, out, C·k·k) with L = H'·W' output positions.
        bias: (out, H', W') — one bias per output unit, or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_size: tuple[int, int],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.kernel_size = _pair(in_size), _pair(kernel_size)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.out_size = tuple(
            (n + 2 * p - k) // s + 1 for n, p, k, s in zip(self.in_size, self.padding, self.kernel_size, self.stride)
        )
        if min(self.out_size) < 1:
            raise ValueError(f"input {self.in_size} is too small for kernel {self.kernel_size}")
        positions = self.out_size[0] * self.out_size[1]
        self.weight = nn.Parameter(torch.empty(positions, out_channels, in_channels * math.prod(self.kernel_size)))
        self.bias = nn.Parameter(torch.empty(out_channels, *self.out_size)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        return self.weight.shape[-1]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.fan_in)  # nn.Conv2d's default init, per position
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def patches(self, h: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (L, N, C·k·k)."""
        return F.unfold(h, self.kernel_size, padding=self.padding, stride=self.stride).permute(2, 0, 1)

    def from_patches(self, a: torch.Tensor) -> torch.Tensor:
        """(L, N, out) -> (N, out, H', W'), adding the bias."""
        out = a.permute(1, 2, 0).reshape(a.shape[1], self.out_channels, *self.out_size)
        return out if self.bias is None else out + self.bias

    def fold(self, grad_patches: torch.Tensor) -> torch.Tensor:
        """(L, N, C·k·k) -> (N, C, H, W): the adjoint of ``patches``."""
        return F.fold(
            grad_patches.permute(1, 2, 0), self.in_size, self.kernel_size, padding=self.padding, stride=self.stride
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.from_patches(torch.bmm(self.patches(h), self.weight.transpose(1, 2)))  # (N, out, H', W')

    def mirror_input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.in_size)

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.patches(h), weight.transpose(1, 2))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class _FeedbackLocalFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, feedback, direct, layer):
        p = layer.patches(h)  # (L, N, C·k·k)
        ctx.save_for_backward(h if direct is not None else None, p, feedback)
        ctx.direct, ctx.layer, ctx.has_bias = direct, layer, bias is not None
        return layer.from_patches(torch.bmm(p, weight.transpose(1, 2)))

    @staticmethod
    def backward(ctx, g):  # g (N, out, H', W')
        h, p, feedback = ctx.saved_tensors
        g_l = g.flatten(2).permute(2, 0, 1)  # (L, N, out)
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if ctx.direct is not None:
                grad_h = ctx.direct.input_grad(feedback, h)
            else:
                grad_h = ctx.layer.fold(torch.bmm(g_l, feedback))  # (N, C, H, W)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(g_l.transpose(1, 2), p)  # (L, out, C·k·k)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_h, grad_w, grad_b, None, None, None


class FeedbackLocallyConnected2d(LocallyConnected2d, FeedbackLayer):
    """``LocallyConnected2d`` with a feedback matrix per position (B shaped like W)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return super().forward(h)
        if self.direct is not None:
            self.direct.ensure_feedback(self, h)
        return _FeedbackLocalFn.apply(h, self.weight, self.bias, self.feedback, self.direct, self)


FEEDBACK_LAYERS[LocallyConnected2d] = FeedbackLocallyConnected2d
