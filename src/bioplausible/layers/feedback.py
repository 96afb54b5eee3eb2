"""Layers whose backward pass sends the error through a separate feedback matrix B instead of W.

Forward is the ordinary layer. Backward, for an incoming error g = ∂L/∂a (a = W h + b):

    ∂W = gᵀ h                (the true local weight gradient, as in backprop)
    ∂b = Σ_n g
    ∂h = g B                 feedback alignment family: B has W's shape (B = W gives backprop exactly)
    ∂h = e B                 direct feedback alignment: e = ∂L/∂ŷ at the model output, B is (n_e, in)

Rules decide what B is (fixed random, sign(W)·scale, learned); the layer only uses it. The custom
``torch.autograd.Function`` keeps this free of module hooks and private APIs, and works with ``bias=False``,
residual and dense connections, and layers (batch norm, pooling) that keep their true gradient around it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class DirectError:
    """The output error e = ∂L/∂ŷ of the current batch, shared by every layer of a DFA model.

    Also draws each layer's direct feedback matrix B (n_e, inputs) when the layer first sees its input: a
    convolution's input size is only known then. Draws happen in forward order, so a seed fixes them.
    """

    def __init__(self, n_e: int = 0, scale: float = 1.0) -> None:
        self.e: torch.Tensor | None = None
        self.n_e = n_e
        self.scale = scale

    def get(self) -> torch.Tensor:
        if self.e is None:
            raise RuntimeError("DFA layer ran backward without an output error; call the rule's step()")
        return self.e

    @torch.no_grad()
    def ensure_feedback(self, layer: nn.Module, h: torch.Tensor) -> None:
        """Give ``layer`` a B of shape (n_e, h[0].numel()), U(−k, k)·scale with k = 1/√inputs, if it has none."""
        n_in = h[0].numel()
        if tuple(layer.feedback.shape) != (self.n_e, n_in):
            k = self.scale / math.sqrt(n_in)
            layer.feedback = torch.empty(self.n_e, n_in, device=h.device, dtype=h.dtype).uniform_(-k, k)

    def input_grad(self, feedback: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """e B, shaped like the layer's input h."""
        return (self.get() @ feedback).view_as(h)


class _FeedbackLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, feedback, direct):
        # h (N, *, in); weight (out, in); feedback (out, in) or (n_e, in)
        ctx.save_for_backward(h, feedback)
        ctx.direct = direct
        ctx.has_bias = bias is not None
        return F.linear(h, weight, bias)

    @staticmethod
    def backward(ctx, g):  # g (N, *, out)
        h, feedback = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = g @ feedback if ctx.direct is None else ctx.direct.input_grad(feedback, h)  # (N, *, in)
        if ctx.needs_input_grad[1]:
            grad_w = g.reshape(-1, g.shape[-1]).t() @ h.reshape(-1, h.shape[-1])  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.reshape(-1, g.shape[-1]).sum(0)
        return grad_h, grad_w, grad_b, None, None


class FeedbackLayer(nn.Module):
    """Mixin state shared by every feedback layer.

    Attributes:
        feedback: buffer B used by the backward pass (a rule may replace it with a Parameter, e.g. Kolen-Pollack).
        direct: a :class:`DirectError` when the layer takes its error straight from the output (DFA), else None.
        exact: when True the layer backpropagates through W (used by oracle tests and the BP-angle probe).
    """

    feedback: torch.Tensor
    direct: DirectError | None
    exact: bool

    @classmethod
    def from_module(cls, module: nn.Module):
        """The feedback version of ``module``: the same attributes and the very same Parameters (so optimizers
        built before the swap stay valid), plus B = a copy of W, on W's device."""
        layer = cls.__new__(cls)
        layer.__dict__.update(module.__dict__)
        layer._parameters = dict(module._parameters)
        layer._buffers = dict(module._buffers)
        layer._modules = dict(module._modules)
        layer.register_buffer("feedback", module.weight.detach().clone())
        layer.direct = None
        layer.exact = False
        return layer

    def mirror_input_shape(self) -> tuple[int, ...]:
        """Shape of the smallest input that reaches every weight once (per sample), for weight mirrors."""
        raise NotImplementedError

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's linear map of such an input with ``weight`` and no bias."""
        raise NotImplementedError


class FeedbackLinear(nn.Linear, FeedbackLayer):
    """``nn.Linear`` with a feedback matrix; ``FeedbackLinear.from_module(linear)`` keeps the weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("feedback", self.weight.detach().clone())
        self.direct = None
        self.exact = False

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return F.linear(h, self.weight, self.bias)
        if self.direct is not None:
            self.direct.ensure_feedback(self, h)
        return _FeedbackLinearFn.apply(h, self.weight, self.bias, self.feedback, self.direct)

    def mirror_input_shape(self) -> tuple[int, ...]:
        return (self.in_features,)

    def mirror_forward(self, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(h, weight)

    def extra_repr(self) -> str:
        mode = "direct" if self.direct is not None else "feedback"
        return f"{super().extra_repr()}, {mode}={tuple(self.feedback.shape)}"


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit, for the 1/√fan_in init scale (a locally connected layer says its own)."""
    return layer.fan_in if hasattr(type(layer), "fan_in") else layer.weight[0].numel()


# Layer types a rule can swap in, keyed by the torch type they replace. Issue-specific layers (conv, locally
# connected) add themselves here, so conversion needs no if/elif chain.
FEEDBACK_LAYERS: dict[type[nn.Module], type[FeedbackLayer]] = {nn.Linear: FeedbackLinear}


def feedback_layers(model: nn.Module) -> dict[str, FeedbackLayer]:
    """Every feedback layer of ``model`` by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FeedbackLayer)}


@contextmanager
def exact_gradients(model: nn.Module):
    """Within the block every feedback layer backpropagates through W: the true gradient, for comparisons."""
    layers = list(feedback_layers(model).values())
    saved = [layer.exact for layer in layers]
    for layer in layers:
        layer.exact = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, saved, strict=False):
            layer.exact = was
