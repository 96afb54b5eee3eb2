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

from .feedback import FeedbackLayer
from .types import LayerType, register_layer_type


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
        """(N, C, H, W) -> (L, N, C·k·k), contiguous: the values of ``F.unfold`` (channel-major, then kernel rows),
        gathered from strided views of the padded input in one copy. ``F.unfold(...).permute(2, 0, 1)`` is the
        same tensor, but batched matmuls copy such a permuted operand matrix by matrix, with L-strided reads: a
        training step of Bartunov's CIFAR-10 LC net costs 0.75-0.81 × that way's (bp, fa, dfa, batch 100, one
        CPU thread; ``benchmarks/lc_patches.py``, ``results/bench/lc_patches_cpu.txt``)."""
        (ph, pw), (kh, kw), (sh, sw) = self.padding, self.kernel_size, self.stride
        windows = F.pad(h, (pw, pw, ph, ph)).unfold(2, kh, sh).unfold(3, kw, sw)  # (N, C, H', W', kh, kw), a view
        n, c, h_out, w_out = windows.shape[:4]
        return windows.permute(2, 3, 0, 1, 4, 5).contiguous().view(h_out * w_out, n, c * kh * kw)

    def from_patches(self, a: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(L, N, out) -> (N, out, H', W'), adding ``bias`` (out, H', W') when given."""
        out = a.permute(1, 2, 0).reshape(a.shape[1], self.out_channels, *self.out_size)
        return out if bias is None else out + bias

    def fold(self, grad_patches: torch.Tensor) -> torch.Tensor:
        """(L, N, C·k·k) -> (N, C, H, W): the adjoint of ``patches``."""
        return F.fold(
            grad_patches.permute(1, 2, 0), self.in_size, self.kernel_size, padding=self.padding, stride=self.stride
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.from_patches(torch.bmm(self.patches(h), self.weight.transpose(1, 2)), self.bias)  # (N, out, H', W')

    def mirror_input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.in_size)

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.patches(h), weight.transpose(1, 2))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class FeedbackLocallyConnected2d(FeedbackLayer, LocallyConnected2d):
    """``LocallyConnected2d`` with a feedback matrix per position (B shaped like W)."""

    def op(self, h, weight, bias):
        return self.from_patches(torch.bmm(self.patches(h), weight.transpose(1, 2)), bias)

    def op_backward(self, g, h, weight, kernel, need_h, need_w, need_b):
        g_l = g.flatten(2).permute(2, 0, 1)  # (L, N, out)
        grad_h = self.fold(torch.bmm(g_l, kernel)) if need_h else None  # (N, C, H, W)
        grad_w = torch.bmm(g_l.transpose(1, 2), self.patches(h)) if need_w else None  # (L, out, C·k·k)
        grad_b = g.sum(0) if need_b else None
        return grad_h, grad_w, grad_b


class LocalTranspose(nn.Module):
    """The transposed locally connected map of ``layer`` onto ``channels`` input channels:
    (N, out, H', W') -> (N, channels, H, W), one (out -> channels·k·k) matrix per output position, summed back
    onto the input grid with ``fold`` (the adjoint of the layer's patch extraction). Target propagation's inverse."""

    def __init__(self, layer: LocallyConnected2d, channels: int):
        super().__init__()
        self.layer_geometry = (layer.in_size, layer.kernel_size, layer.padding, layer.stride)
        k = layer.kernel_size[0] * layer.kernel_size[1]
        positions = layer.out_size[0] * layer.out_size[1]
        bound = 1.0 / (layer.out_channels * k) ** 0.5
        self.weight = nn.Parameter(torch.empty(positions, layer.out_channels, channels * k).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels, *layer.in_size).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        in_size, kernel, padding, stride = self.layer_geometry
        p = torch.bmm(h.flatten(2).permute(2, 0, 1), self.weight)  # (L, N, out) @ (L, out, C·k·k) -> (L, N, C·k·k)
        return F.fold(p.permute(1, 2, 0), in_size, kernel, padding=padding, stride=stride) + self.bias


register_layer_type(
    LayerType(
        LocallyConnected2d,
        FeedbackLocallyConnected2d,
        fan_in=lambda layer: layer.fan_in,
        matrices=lambda layer: list(layer.weight.data),  # one (out, C·k·k) matrix per position
        transpose=lambda layer, channels_in, hidden: LocalTranspose(layer, hidden[1]),
    )
)
