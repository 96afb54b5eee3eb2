"""Feedback alignment (Lillicrap et al. 2016, "Random synaptic feedback weights support error backpropagation").

Backprop sends the error back through the transposed forward weights, δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f'(a_l).
Feedback alignment replaces W_{l+1}ᵀ by a fixed random matrix B_{l+1}:

    δ_l  = (B_{l+1} δ_{l+1}) ⊙ f'(a_l)
    ΔW_l ∝ −δ_l h_{l−1}ᵀ                  (the local weight gradient is unchanged)

The forward weights come to align with B (the angle between W and B falls during training), which is why the
random feedback carries useful information. B is stored with W's shape, so B = W recovers backprop exactly.

This module also holds :class:`FeedbackRule`, the shared base of the family (fa, dfa, usf, frsf, brsf, kp, wm):
it swaps every Linear, Conv2d and locally connected layer for a feedback layer with the rule's feedback mode
(:mod:`bioplausible.layers.modes`), draws B, and can leave named layers (``bp_layers=("last",)``, as Xiao et al.
do) on their true gradient.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import IncompatibleError
from ..layers import FeedbackLayer, FeedbackMode, FixedFeedback, fan_in, swap_layers
from ..layers.modes import BatchClock, uniform_feedback
from ..layers.swap import Trace
from ..registry import RULES
from .base import OUTPUT_NOT_A_TENSOR, ProbeSpec, Rule

FEEDBACK_ANGLE = ProbeSpec(
    "feedback_angle", "angle between B and Wᵀ", "°", title="Feedback alignment: angle between B and Wᵀ per layer"
)


@dataclass
class FeedbackConfig:
    feedback_scale: float = option(
        1.0, "scale of the feedback matrices B, relative to the forward weights' init", above=0
    )
    bp_layers: tuple[str, ...] = option(
        (), "layers trained by backprop instead ('last' = the layer whose output is the model's output)"
    )


def init_bound(layer: nn.Module) -> float:
    """PyTorch's default init bound for a layer's weights, 1/√fan_in; B is drawn on the same scale."""
    return 1.0 / math.sqrt(fan_in(layer))


class FeedbackRule(Rule):
    """Base of the feedback-alignment family: swaps layers with the rule's feedback mode, then draws B."""

    Config = FeedbackConfig
    probes = (FEEDBACK_ANGLE,)

    @classmethod
    def describe(cls, options: dict) -> str:
        """The rule's name, and "(last layer bp)" when layers are kept on backprop (Xiao et al.'s switch)."""
        return f"{cls.name} (last layer bp)" if options.get("bp_layers") else cls.name

    # B (or the sign magnitudes) is drawn on PyTorch's default scale, 1/√fan_in (init_bound); DFA sets False
    draws_on_default_scale = True

    def check_init(self, init: str) -> None:
        """Warn when ``--init`` drew W on another scale than B: the feedback is then weaker or stronger than W's
        init, which changes how far the error travels through depth (BioTorch draws both with Xavier's bound)."""
        if init != "default" and self.draws_on_default_scale:
            warnings.warn(
                f"--init {init} re-draws W, but rule {self.name!r} draws its feedback on PyTorch's default scale "
                f"(bound 1/√fan_in) whatever --init is; Xavier's bound is √3 times that on a square layer: set "
                f"--feedback-scale to match (1.7320508 for BioTorch's Xavier-drawn feedback)",
                UserWarning,
                stacklevel=2,
            )

    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        self.check_requirements(model)
        self.clock = BatchClock()  # per-batch work of the modes (brsf's redraw, weight mirrors) once per forward
        swap = swap_layers(model, self.mode, keep=self.config.bp_layers, example_input=example_input)
        if not swap.converted and not self.config.bp_layers:
            raise IncompatibleError(
                f"rule {self.name!r} found no Linear or Conv layer to train in {type(model).__name__}"
            )
        if swap.trace is not None and not swap.trace.output_is_tensor:
            raise IncompatibleError(OUTPUT_NOT_A_TENSOR.format(rule=self.name, model=type(model).__name__))
        model, self.unchanged = swap.model, swap.unchanged
        self.clock.attach(model)
        self.layers = {name: model.get_submodule(name) for name in swap.converted}
        with torch.no_grad():
            self.init_feedback(swap.trace)
        return model

    def mode(self, name: str, layer: nn.Module) -> FeedbackMode:
        """The feedback mode of one layer (called by the swap, in module order)."""
        return FixedFeedback()

    def init_feedback(self, found: Trace | None) -> None:
        """Draw B ~ U(−k, k) · feedback_scale with W's shape for each layer in module order, k = 1/√fan_in (the
        scale of PyTorch's default init of W; another --init warns, see :meth:`check_init`)."""
        for layer in self.layers.values():
            k = init_bound(layer) * self.config.feedback_scale
            layer.register_buffer("feedback", uniform_feedback(layer.weight.shape, k, layer.weight))

    def feedback_parameters(self) -> list[nn.Parameter]:
        """Feedback matrices the optimizer must train (learned feedback), else empty."""
        return [
            p for layer in self.layers.values() for n, p in layer.named_parameters(recurse=False) if n == "feedback"
        ]


@RULES.register("fa")
class FeedbackAlignment(FeedbackRule):
    """Feedback alignment: the error flows back through fixed random matrices B instead of Wᵀ."""

    name = "fa"


__all__ = ["FEEDBACK_ANGLE", "FeedbackAlignment", "FeedbackConfig", "FeedbackLayer", "FeedbackRule", "init_bound"]
