"""Direct feedback alignment (Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks").

Every hidden layer receives the output error e = ∂L/∂ŷ directly through its own fixed random matrix:

    δ_l  = (B_l e) ⊙ f'(a_l)
    ΔW_l ∝ −δ_l h_{l−1}ᵀ

Implementation: each layer's backward returns e B as the gradient of its *input* h_{l−1} (instead of g W), and
autograd's activation backward multiplies by f'(a_{l−1}). So the matrix that carries e to h_l is stored on the
layer that reads h_l, with shape (n_e, in_features). The output layer's own weight gradient uses the true e.
On dense nets, where h_l is read by several layers, h_l receives the sum of their projections: still one fixed
random projection of e. No layer backpropagates through W, so a step costs less than backprop's.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import DirectError, FeedbackLayer
from ..layers.convert import swappable_layers
from ..registry import RULES
from .base import batch_metrics
from .fa import FeedbackRule


def output_size(layer: nn.Module) -> int:
    return getattr(layer, "out_features", None) or layer.out_channels


@RULES.register("dfa")
class DirectFeedbackAlignment(FeedbackRule):
    """Direct feedback alignment: each layer gets the output error through its own fixed random matrix."""

    name = "dfa"

    def prepare(self, model: nn.Module) -> nn.Module:
        names = swappable_layers(model)
        n_e = output_size(model.get_submodule(names[-1])) if names else 0
        self.direct = DirectError(n_e, scale=self.config.feedback_scale)
        return super().prepare(model)

    def init_feedback(self, layer: FeedbackLayer) -> None:
        # B (n_e, inputs) is drawn by DirectError when the layer first sees its input (a convolution's input
        # size is unknown before); the engine runs one forward pass right after prepare().
        layer.feedback = layer.feedback.new_empty(0)
        layer.direct = self.direct

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(x)
        loss = self.loss_fn(out, y)
        (self.direct.e,) = torch.autograd.grad(loss, out, retain_graph=True)  # e = ∂L/∂ŷ, (N, n_e)
        try:
            out.backward(self.direct.e)
        finally:
            self.direct.e = None
        return batch_metrics(out, y, loss)
