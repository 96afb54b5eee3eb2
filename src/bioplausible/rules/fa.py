"""Feedback alignment (Lillicrap et al. 2016, "Random synaptic feedback weights support error backpropagation").

Backprop sends the error back through the transposed forward weights, δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f'(a_l).
Feedback alignment replaces W_{l+1}ᵀ by a fixed random matrix B_{l+1}:

    δ_l  = (B_{l+1} δ_{l+1}) ⊙ f'(a_l)
    ΔW_l ∝ −δ_l h_{l−1}ᵀ                  (the local weight gradient is unchanged)

The forward weights come to align with B (the angle between W and B falls during training), which is why the
random feedback carries useful information. B is stored with W's shape, so B = W recovers backprop exactly.

This module also holds :class:`FeedbackRule`, the shared base of the family (fa, dfa, usf, frsf, brsf, ...):
it swaps every Linear (and, once registered, Conv) layer for a feedback layer, draws B, and can leave named
layers (``bp_layers=("last",)``, as Xiao et al. do) on their true gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError, IncompatibleError
from ..layers import FeedbackLayer, swap_layers
from ..layers.feedback import fan_in
from ..registry import RULES
from .base import Rule


@dataclass
class FeedbackConfig:
    feedback_scale: float = option(1.0, "scale of the feedback matrices B, relative to the forward weights' init")
    bp_layers: tuple[str, ...] = option((), "layers trained by backprop instead ('last' = the output layer)")

    def validate(self) -> None:
        if not self.feedback_scale > 0:
            raise ConfigError(f"feedback_scale must be > 0 (got {self.feedback_scale})")
        self.bp_layers = tuple(self.bp_layers)


def init_bound(layer: nn.Module) -> float:
    """PyTorch's default init bound for a layer's weights, 1/√fan_in; B is drawn on the same scale."""
    return 1.0 / math.sqrt(fan_in(layer))


class FeedbackRule(Rule):
    """Base of the feedback-alignment family: swaps layers, then lets each rule initialise B."""

    Config = FeedbackConfig

    def prepare(self, model: nn.Module) -> nn.Module:
        converted, self.unchanged = swap_layers(model, keep=self.config.bp_layers)
        if not converted and not self.config.bp_layers:
            raise IncompatibleError(
                f"rule {self.name!r} found no Linear or Conv layer to train in {type(model).__name__}"
            )
        self.layers: dict[str, FeedbackLayer] = {name: model.get_submodule(name) for name in converted}
        with torch.no_grad():
            for layer in self.layers.values():
                self.init_feedback(layer)
        return model

    def init_feedback(self, layer: FeedbackLayer) -> None:
        """Draw B ~ U(−k, k) · feedback_scale with W's shape, k = 1/√fan_in (the scale of W's own init)."""
        k = init_bound(layer) * self.config.feedback_scale
        layer.feedback.uniform_(-k, k)


@RULES.register("fa")
class FeedbackAlignment(FeedbackRule):
    """Feedback alignment: the error flows back through fixed random matrices B instead of Wᵀ."""

    name = "fa"
