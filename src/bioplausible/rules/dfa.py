"""Direct feedback alignment (Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks").

Every hidden layer receives the output error e = ∂L/∂ŷ directly through its own fixed random matrix:

    δ_l  = (B_l e) ⊙ f'(a_l)
    ΔW_l ∝ −δ_l h_{l−1}ᵀ

Implementation: each layer's backward returns e B as the gradient of its *input* h_{l−1} (instead of g W), and
autograd's activation backward multiplies by f'(a_{l−1}). So the matrix that carries e to h_l is stored on the
layer that reads h_l, with shape (n_e, inputs) (``dfa_feedback=dense``), or for convolutions, optionally, as a
kernel (n_e, C_in, k, k) sent back through the transposed convolution (``dfa_feedback=kernel``: memory
n_e·C_in·k² instead of n_e·C_in·H·W; 121 MiB instead of 8.3 GiB for ResNet-18 at ImageNet size). The output
layer's own weight gradient uses the true e. On dense nets, where h_l is read by several layers, h_l receives the
sum of their projections: still one fixed random projection of e. No layer backpropagates through W.

B is drawn once, at ``prepare``, in the order the layers run on the example input (a seed fixes it); an input of
another size later is an error, never a silent redraw. e is taken from the model's own backward (a hook on its
output), so a plain ``loss.backward()`` loop trains DFA as ``rule.step`` does.

``bp_layers=("last",)`` (Xiao et al.'s switch) keeps the output layer as a plain layer: its weight gradient is the
true one either way, but its input h_{L−1} then receives the true gradient eW_L instead of B_L e, so the layer below
the output trains exactly as under backprop. Under FA the switch changes the same thing (W_L instead of B_L carries
the error down), so the two rules' switched curves compare alike.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..layers import DirectError, DirectFeedback, FeedbackMode
from ..layers.modes import direct_feedback_shape, uniform_feedback
from ..layers.swap import Trace
from ..registry import RULES
from .fa import FeedbackConfig, FeedbackRule


@dataclass
class DFAConfig(FeedbackConfig):
    dfa_feedback: str = option(
        "dense",
        "shape of each convolution's B: dense (n_e × C·H·W) or kernel (n_e × C × k × k, memory-light)",
        choices=("dense", "kernel"),
    )


@RULES.register("dfa")
class DirectFeedbackAlignment(FeedbackRule):
    """Direct feedback alignment: each layer gets the output error through its own fixed random matrix."""

    name = "dfa"
    Config = DFAConfig
    probes = ()  # B maps from the output: no angle to W

    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        self.error = DirectError()
        model = super().prepare(model, example_input)
        self.error.attach(model)
        return model

    def mode(self, name: str, layer: nn.Module) -> FeedbackMode:
        shape = self.config.dfa_feedback if isinstance(layer, nn.Conv2d) else "dense"
        return DirectFeedback(self.error, shape)

    def init_feedback(self, found: Trace | None) -> None:
        """B (n_e, inputs) ~ U(−k, k) · scale, k = 1/√inputs, per layer in the order the layers run."""
        if found is None:
            found = self.trace_without_example()
        n_e = math.prod(found.output_shape)
        for name in found.order:
            if name not in self.layers:
                continue
            layer = self.layers[name]
            shape = direct_feedback_shape(layer, n_e, found.input_shapes[name], layer.feedback_mode.shape)
            k = self.config.feedback_scale / math.sqrt(math.prod(shape[1:]))
            layer.register_buffer("feedback", uniform_feedback(shape, k, layer.weight))
        unseen = [n for n in self.layers if n not in found.order]
        for name in unseen:  # never ran on the example: B of an unused layer is never read
            self.layers[name].register_buffer("feedback", self.layers[name].weight.new_empty(0))

    def trace_without_example(self) -> Trace:
        """Without an example input, only dense layers have known input sizes: module order, n_e from the last."""
        layers = list(self.layers.items())
        if not layers or any(not isinstance(layer, nn.Linear) for _, layer in layers):
            raise ConfigError(
                "dfa sizes B from the layers' inputs: pass an example input, convert(model, 'dfa', example_input=x[:1])"
            )
        warnings.warn(
            f"dfa without an example input takes the last registered layer ({layers[-1][0]!r}, "
            f"{layers[-1][1].out_features} outputs) as the output layer and the registration order as the order "
            "the layers run; pass example_input=x[:1] to convert so that both are traced",
            UserWarning,
            stacklevel=4,
        )
        return Trace(
            order=[n for n, _ in layers],
            input_shapes={n: (layer.in_features,) for n, layer in layers},
            output_shape=(layers[-1][1].out_features,),
        )
