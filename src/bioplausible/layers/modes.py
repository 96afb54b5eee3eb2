"""Feedback modes: what B is, for each family of rules (strategies held by every feedback layer).

    FixedFeedback     B drawn once, fixed (feedback alignment, Lillicrap et al. 2016)
    SignFeedback      B = sign(W) ⊙ M from the current W in every backward; M uniform, fixed random, or redrawn
                      for every training batch (Liao et al. 2016; Xiao et al. 2018)
    LearnedFeedback   B a Parameter with the gradient of W plus its own decay (Kolen-Pollack; Akrout et al. 2019)
    MirrorFeedback    B learned from noise by a Hebbian mirror step before every training forward (weight mirrors)
    DirectFeedback    ∂h = the output error e projected by a fixed random B (DFA, Nøkland 2016)

The rules in :mod:`bioplausible.rules` choose a mode and its hyper-parameters; the modes keep their tensors on the
layer (buffers or parameters) so ``state_dict`` holds them and a fresh twin converted the same way loads them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, IncompatibleError
from .feedback import FeedbackMode

FixedFeedback = FeedbackMode  # the base mode is B = layer.feedback, fixed


class BatchClock:
    """Counts the forward passes of the model a rule converted, so per-batch work (brsf's redraw, the weight-mirror
    step) happens once per batch: a layer used twice in one forward is redrawn once, not twice."""

    def __init__(self) -> None:
        self.tick = 0
        self._last: dict[int, int] = {}

    def attach(self, model: nn.Module) -> None:
        model.register_forward_pre_hook(self._advance)

    def _advance(self, module, args) -> None:
        self.tick += 1

    def first_time(self, layer: nn.Module) -> bool:
        """True once per layer per model forward (always when no model forward is watched)."""
        if self._last.get(id(layer)) == self.tick and self.tick:
            return False
        self._last[id(layer)] = self.tick
        return True


class SignFeedback(FeedbackMode):
    """B = sign(W) ⊙ M, with M = ``layer.feedback_magnitude``: a scalar (uniform), or W-shaped, drawn once (fixed)
    or for every training batch (batch) from U(0, bound)."""

    fixed = False

    def __init__(self, magnitudes: str, bound: float, clock: BatchClock | None = None):
        self.magnitudes, self.bound, self.clock = magnitudes, bound, clock or BatchClock()

    def install(self, layer: nn.Module) -> None:
        w = layer.weight
        if self.magnitudes == "uniform":  # the standard deviation of U(−bound, bound)
            magnitude = torch.tensor(self.bound / math.sqrt(3.0), device=w.device, dtype=w.dtype)
        else:
            magnitude = torch.empty_like(w).uniform_(0.0, self.bound)
        layer.register_buffer("feedback_magnitude", magnitude)

    def operand(self, layer):
        return layer.feedback_magnitude

    def kernel(self, weight, operand):
        return torch.sign(weight) * operand

    @torch.no_grad()
    def before_forward(self, layer):
        if self.magnitudes == "batch" and self.clock.first_time(layer):
            # a new tensor, not uniform_ in place: a graph still holding the old M keeps it
            layer.feedback_magnitude = torch.empty_like(layer.feedback_magnitude).uniform_(0.0, self.bound)

    def matrix(self, layer):
        return torch.sign(layer.weight.detach()) * layer.feedback_magnitude

    def __repr__(self) -> str:
        return f"SignFeedback({self.magnitudes})"


class LearnedFeedback(FeedbackMode):
    """Kolen-Pollack: B (a Parameter) receives W's gradient, and both decay by λ, so W − B shrinks each step:

        ∂B = ∂W + λ B,   ∂W ← ∂W + λ W

    The gradients are set in the backward itself, so any optimizer that holds B trains it, in ``rule.step`` or a
    plain ``loss.backward()`` loop alike. If B is in no optimizer (one built before ``convert``), B would never
    learn and the rule would silently be FA: the first training forward after W moved while B did not raises.
    """

    fixed = False

    def __init__(self, decay: float):
        self.decay = decay
        self._versions: dict[int, tuple[int, int]] = {}  # layer id -> (W, B) versions at its last forward

    def adjust(self, grad_w, weight, operand, need_operand_grad):
        # one fused pass each (add with alpha): on a wide FC layer these passes are most of what kp adds to fa
        grad_b = torch.add(grad_w, operand, alpha=self.decay) if need_operand_grad and grad_w is not None else None
        if grad_w is not None:
            grad_w = grad_w.add(weight, alpha=self.decay)
        return grad_w, grad_b

    def before_forward(self, layer):
        w, b = layer.weight, layer.feedback
        seen = self._versions.get(id(layer))
        if seen is not None and w._version != seen[0] and b._version == seen[1] and b.grad is not None:
            raise ConfigError(
                "kp: the forward weights W moved but the feedback matrices B did not, so B is in no optimizer and "
                "kp would silently train as fa. Build the optimizer after bioplausible.convert() (or add the "
                "rule's feedback parameters: rule.feedback_parameters())"
            )
        self._versions[id(layer)] = (w._version, b._version)


class MirrorFeedback(FeedbackMode):
    """Weight mirrors: before every training forward the layer is driven by noise ξ ~ N(0, σ²I) and B takes a
    Hebbian step on the correlation of its bias-free response a = W ξ with the noise,

        B ← (1 − η λ) B + η · mean_n(a ξᵀ),      E[a ξᵀ] = σ² W   ⇒   B → (σ²/λ) W
    """

    fixed = False

    def __init__(self, lr: float, decay: float, noise_std: float, samples: int, clock: BatchClock | None = None):
        self.lr, self.decay, self.noise_std, self.samples = lr, decay, noise_std, samples
        self.clock = clock or BatchClock()

    def before_forward(self, layer):
        if not self.clock.first_time(layer):
            return
        w = layer.weight
        with torch.autocast(w.device.type, enabled=False), torch.enable_grad():
            ξ = self.noise_std * torch.randn(self.samples, *layer.mirror_input_shape(), device=w.device, dtype=w.dtype)
            w = w.detach().requires_grad_()
            a = layer.mirror_forward(ξ, w)
            # ∂/∂W of ½‖W ξ‖² is a ξᵀ: autograd forms the correlation for every layer type alike
            (correlation,) = torch.autograd.grad(0.5 * a.pow(2).sum() / self.samples, w)
        with torch.no_grad():  # a new tensor: a graph still holding the old B keeps it
            layer.feedback = layer.feedback.mul(1 - self.lr * self.decay).add_(correlation, alpha=self.lr)


class DirectError:
    """The output error e = ∂L/∂ŷ of the current batch, (N, n_e), shared by every layer of a DFA model.

    ``attach(model)`` captures it from the model's own backward: a hook on the model's output tensor runs before
    any layer's backward (the output is the last node of the graph), so DFA works with ``rule.step`` and with a
    plain ``loss.backward()``. A new forward clears it, so a backward that never passed through the output (a
    loss on an inner feature) fails loudly instead of reusing a stale e.
    """

    def __init__(self) -> None:
        self.e: torch.Tensor | None = None

    def attach(self, model: nn.Module) -> None:
        model.register_forward_pre_hook(self._clear)
        model.register_forward_hook(self._watch)

    def _clear(self, module, args) -> None:
        self.e = None

    def _watch(self, module, args, output) -> None:
        if not isinstance(output, torch.Tensor):
            raise IncompatibleError(
                f"dfa needs a model whose forward returns one tensor (the output ŷ); {type(module).__name__} "
                f"returns {type(output).__name__}"
            )
        if output.requires_grad:
            output.register_hook(self._set)

    def _set(self, grad: torch.Tensor) -> None:
        self.e = grad.detach().flatten(1)

    def get(self) -> torch.Tensor:
        if self.e is None:
            raise RuntimeError(
                "a DFA layer ran backward without the output error e: the loss must be computed from the model's "
                "output (rule.step or loss(model(x), y).backward())"
            )
        return self.e


class DirectFeedback(FeedbackMode):
    """DFA: ∂h = e B, with B drawn once for this layer.

    ``dense`` (any layer): B is (n_e, inputs), inputs = C·H·W of the layer's input, and ∂h = (e B) reshaped to h.
    ``kernel`` (convolutions): B is (n_e, C_in, k, k); e is broadcast over the layer's output positions and sent
    back through the transposed convolution with B, ∂h = conv_transpose(e ⊗ 1_{H'×W'}, B) — the memory-light form
    (as BioTorch draws it): n_e·C_in·k² numbers instead of n_e·C·H·W.
    """

    direct = True

    def __init__(self, error: DirectError, shape: str = "dense"):
        self.error, self.shape = error, shape

    def matrix(self, layer):
        return None

    def input_grad(self, layer, h, operand):
        e = self.error.get().to(h.dtype)
        if operand.shape[0] != e.shape[1]:
            raise IncompatibleError(
                f"DFA feedback was drawn for {operand.shape[0]} outputs; the error has {e.shape[1]}"
            )
        if self.shape == "kernel":
            rows, cols = layer.output_size(h.shape[-2:])
            spread = e[:, :, None, None].expand(-1, -1, rows, cols)
            stride, padding, dilation, _ = layer.geometry
            return torch.nn.grad.conv2d_input(h.shape, operand, spread, stride, padding, dilation)
        if operand.shape[1] != h[0].numel():
            raise IncompatibleError(
                f"DFA feedback B of this layer was drawn for inputs of {operand.shape[1]} numbers; this input has "
                f"{h[0].numel()} (shape {tuple(h.shape[1:])}). Fixed feedback serves one input size: convert a "
                "fresh model for another"
            )
        return (e @ operand).view_as(h)

    def __repr__(self) -> str:
        return f"DirectFeedback({self.shape})"


def direct_feedback_shape(layer: nn.Module, n_e: int, input_shape: tuple[int, ...], shape: str) -> tuple[int, ...]:
    """The shape of a DFA B for ``layer`` reading inputs of ``input_shape`` (one sample)."""
    if shape == "kernel":
        if not hasattr(layer, "geometry") or layer.groups != 1:
            raise IncompatibleError(
                "dfa_feedback=kernel draws kernel-shaped feedback for ungrouped convolutions only; "
                f"{type(layer).__name__} gets the dense form (use dfa_feedback=dense)"
            )
        return (n_e, layer.in_channels, *layer.kernel_size)
    return (n_e, math.prod(input_shape))


def uniform_feedback(shape, bound: float, like: torch.Tensor) -> torch.Tensor:
    """U(−bound, bound) of ``shape`` with ``like``'s device and dtype (drawn from the global generator)."""
    return torch.empty(shape, device=like.device, dtype=like.dtype).uniform_(-bound, bound)


__all__ = [
    "BatchClock",
    "DirectError",
    "DirectFeedback",
    "FixedFeedback",
    "LearnedFeedback",
    "MirrorFeedback",
    "SignFeedback",
    "direct_feedback_shape",
    "uniform_feedback",
]
