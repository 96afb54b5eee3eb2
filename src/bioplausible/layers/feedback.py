"""Layers whose backward pass sends the error through a feedback path chosen by the rule, instead of through W.

Forward is the ordinary layer, a = op(h, W) + b. Backward, for an incoming error g = ∂L/∂a:

    ∂W = the true local weight gradient (gᵀ h for a dense layer)
    ∂b = Σ_n g
    ∂h = the transposed operation applied with B in place of W     (FA family; B = W gives backprop exactly)
    ∂h = a direct projection of the output error e = ∂L/∂ŷ           (DFA)

*What* B is, is a :class:`FeedbackMode` the rule installs on each layer (a strategy, not a branch in every layer
type): a fixed random matrix, sign(W) ⊙ M computed from the current W in the backward, a learned matrix, a mirror
of W learned from noise, or the direct output error. Anything a mode must do once per training batch (redraw
magnitudes, a weight-mirror update) happens in the layer's training-mode forward, so a plain
``loss.backward()`` loop trains exactly as ``rule.step`` does. *How* the transposed operation is computed is the
layer type's business (:mod:`.linear`, :mod:`.conv`, :mod:`.local`), registered once in :mod:`.types`.

Under ``torch.autocast`` the layer casts its operands to the autocast dtype as autocast does for the plain op, and
computes the backward in that dtype, so a converted model trains in bf16/fp16 like the original.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch
from torch import nn


def autocast_dtype(t: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast would run a matmul or convolution in on ``t``'s device, or None when it is off."""
    device = t.device.type
    if device not in ("cpu", "cuda") or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def cast(t: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor | None:
    if t is None or dtype is None or not t.is_floating_point():
        return t
    return t.to(dtype)


class FeedbackFunction(torch.autograd.Function):
    """a = op(h, W, b); backward: the true ∂W and ∂b, and ∂h through the layer's feedback mode."""

    @staticmethod
    def forward(ctx, h, weight, bias, feedback, layer):
        dtype = autocast_dtype(h)
        h, weight, bias, feedback = (cast(t, dtype) for t in (h, weight, bias, feedback))
        with torch.autocast(h.device.type, enabled=False):
            a = layer.op(h, weight, bias)
        ctx.layer, ctx.has_bias = layer, bias is not None
        ctx.save_for_backward(h, weight, feedback)
        return a

    @staticmethod
    def backward(ctx, g):
        h, weight, feedback = ctx.saved_tensors
        layer, mode = ctx.layer, ctx.layer.feedback_mode
        need_h, need_w, need_b, need_f = ctx.needs_input_grad[:4]
        g = g.to(h.dtype)
        kernel = None if mode.direct or not need_h else mode.kernel(weight, feedback)
        grad_h, grad_w, grad_b = layer.op_backward(g, h, weight, kernel, need_h and kernel is not None, need_w, need_b)
        if need_h and mode.direct:
            grad_h = mode.input_grad(layer, h, feedback)
        grad_w, grad_f = mode.adjust(grad_w, weight, feedback, need_f)
        return grad_h, grad_w, grad_b if ctx.has_bias else None, grad_f, None


class FeedbackMode:
    """Strategy: what a feedback layer uses for B. The base class is fixed feedback, B = ``layer.feedback``.

    Subclasses override what they change. A mode holds only hyper-parameters and shared references; its tensors
    are the layer's buffers or parameters, so ``state_dict`` saves them.
    """

    direct = False  # True: ∂h is the projected output error, not a transposed operation
    fixed = True  # B is drawn once and never changes (FA); False where it follows W (sign modes) or learns (KP, WM)

    def operand(self, layer: nn.Module) -> torch.Tensor | None:
        """The tensor the forward saves for the backward (B, or what B is computed from)."""
        return layer.feedback

    def kernel(self, weight: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        """B, used in place of W by the input gradient."""
        return operand

    def before_forward(self, layer: nn.Module) -> None:
        """Per-batch work, run by every training-mode forward with autograd on."""

    def adjust(self, grad_w, weight, operand, need_operand_grad):
        """(∂W, ∂operand): learned feedback returns a gradient for B; others leave ∂W alone."""
        return grad_w, None

    def matrix(self, layer: nn.Module) -> torch.Tensor | None:
        """The current B with W's shape, for the alignment probes (None when B is not W-shaped)."""
        return layer.feedback

    def input_grad(self, layer, h, operand):  # direct modes only
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class FeedbackLayer(nn.Module):
    """Mixin of every feedback layer: the mode, the exact switch, and the forward through FeedbackFunction.
    It comes first in a feedback layer's bases (``class FeedbackLinear(FeedbackLayer, nn.Linear)``) so its
    ``forward`` wins. Layer types also give ``mirror_input_shape()`` (the smallest input that reaches every weight
    once) and ``mirror_forward(h, weight)`` (the bias-free linear map of it), for weight mirrors.

    Attributes:
        feedback_mode: the :class:`FeedbackMode` the rule installed.
        exact: when True the layer backpropagates through W (oracle tests, the backprop probe, bp_layers).
    """

    feedback_mode: FeedbackMode
    exact: bool

    def op(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The layer's forward operation with the given operands."""
        raise NotImplementedError

    def op_backward(self, g, h, weight, kernel, need_h, need_w, need_b):
        """(∂h computed with ``kernel`` in place of ``weight``, the true ∂W, ∂b); None for what is not needed."""
        raise NotImplementedError

    @classmethod
    def from_module(cls, module: nn.Module, mode: FeedbackMode):
        """The feedback version of ``module``: the same attributes and the very same Parameters (so optimizers
        built before the swap stay valid for W and b), with ``mode`` installed."""
        layer = cls.__new__(cls)
        layer.__dict__.update(module.__dict__)
        layer._parameters = dict(module._parameters)
        layer._buffers = dict(module._buffers)
        layer._modules = dict(module._modules)
        layer.exact = False
        layer.feedback_mode = mode
        return layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.exact:
            return self.op(h, self.weight, self.bias)
        if self.training and torch.is_grad_enabled():
            self.feedback_mode.before_forward(self)
        return FeedbackFunction.apply(h, self.weight, self.bias, self.feedback_mode.operand(self), self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feedback={self.feedback_mode!r}"


def feedback_layers(model: nn.Module) -> dict[str, FeedbackLayer]:
    """Every feedback layer of ``model`` by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, FeedbackLayer)}


_TRUE_GRADIENT = contextvars.ContextVar("true_gradient", default=False)


def true_gradient_requested() -> bool:
    """Whether the code running asked for the true gradient (inside :func:`exact_gradients`): a rule that refuses
    a plain backward on its model (target propagation, EP) lets this one through."""
    return _TRUE_GRADIENT.get()


@contextmanager
def exact_gradients(model: nn.Module):
    """Within the block every feedback layer backpropagates through W: the true gradient, for comparisons."""
    layers = list(feedback_layers(model).values())
    saved = [layer.exact for layer in layers]
    token = _TRUE_GRADIENT.set(True)
    for layer in layers:
        layer.exact = True
    try:
        yield model
    finally:
        _TRUE_GRADIENT.reset(token)
        for layer, was in zip(layers, saved, strict=False):
            layer.exact = was
