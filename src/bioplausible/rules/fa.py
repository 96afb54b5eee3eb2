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

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import IncompatibleError
from ..layers import INIT_SCHEMES, FeedbackLayer, FeedbackMode, FixedFeedback, init_bound, swap_layers
from ..layers.modes import BatchClock, uniform_feedback
from ..layers.swap import Trace, kept_label
from ..registry import RULES
from .base import OUTPUT_NOT_A_TENSOR, ProbeSpec, Rule

FEEDBACK_ANGLE = ProbeSpec(  # a fixed B in a layer fed by the data is left out: it carries no error
    "feedback_angle", "angle between B and Wᵀ", "°", title="Feedback alignment: angle between B and Wᵀ per layer"
)


@dataclass
class FeedbackConfig:
    feedback_scale: float = option(
        1.0,
        "factor on the feedback's drawn scale (B, or the sign magnitudes): see feedback_init, and DFA's own",
        above=0,
    )
    bp_layers: tuple[str, ...] = option(
        (),
        "layers, or modules with all their layers (a block), trained by backprop instead ('last' = the layer whose "
        "output is the model's output)",
    )


@dataclass
class LayerFeedbackConfig(FeedbackConfig):
    """Options of the rules that draw B (or sign magnitudes) with each layer's own W shape: fa, the sign-symmetry
    family, kp and wm."""

    feedback_init: str = option(
        "default",
        "initialisation scheme whose scale B is drawn on (B ~ U(−k, k), k the bound with that scheme's std; sign "
        "magnitudes likewise): default = PyTorch's, 1/√fan_in. Set it to --init's to draw B like W, as BioTorch "
        "does; it matters under SGD (Adam rescales each layer's update), where fa, usf, frsf, brsf and kp warn "
        "if --init differs",
        choices=INIT_SCHEMES,
    )


class FeedbackRule(Rule):
    """Base of the feedback-alignment family: swaps layers with the rule's feedback mode, then draws B."""

    Config = LayerFeedbackConfig
    probes = (FEEDBACK_ANGLE,)

    @classmethod
    def describe(cls, options: dict) -> str:
        """The rule's name, and "(last layer bp)" when layers are kept on backprop (Xiao et al.'s switch)."""
        kept = list(options.get("bp_layers") or ())
        return f"{cls.name} ({kept_label(kept)})" if kept else cls.name

    # True where B's first draw is soon forgotten (weight mirrors pull B to a multiple of W within ~100 batches)
    initial_feedback_fades = False

    def check_init(self, init: str, optimizer: str) -> None:
        """Warn when ``--init`` drew W on another scale than B is drawn on (``feedback_init``) and the optimizer is
        SGD: B's scale then sets how strongly the error reaches each layer, i.e. each layer's effective learning
        rate (on ResNet-20 and CIFAR-10, usf ended 9 points worse with B on PyTorch's scale under Xavier's W than
        with both on Xavier's). Adam divides each parameter's update by its own gradient scale, so a per-layer
        factor in B hardly changes its training: no warning there. DFA has no ``feedback_init`` (its B is one
        matrix from the output to each layer, not a chain through depth), and wm pulls B to W within ~100 batches.
        """
        scheme = getattr(self.config, "feedback_init", None)
        if scheme is None or scheme == init or optimizer != "sgd" or self.initial_feedback_fades:
            return
        warnings.warn(
            f"--init {init} draws W on another scale than rule {self.name!r} draws its feedback on (--feedback-init "
            f"{scheme}); under SGD that scale sets each layer's effective learning rate: set --feedback-init {init} "
            f"(or --init {scheme}) to draw them alike (BioTorch draws both with Xavier's)",
            UserWarning,
            stacklevel=2,
        )

    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        self.check_requirements(model)
        self.clock = BatchClock()  # per-batch work of the modes (brsf's redraw, weight mirrors) once per forward
        swap = swap_layers(model, self.mode, keep=self.config.bp_layers, example_input=example_input)
        if not swap.converted and swap.kept_layers:  # the whole model on backprop under the rule's name
            every = ", ".join(sorted(n or "the model itself" for n in swap.kept_layers))
            raise IncompatibleError(
                f"rule {self.name!r} would train no layer: bp_layers keeps every one ({every}) on backprop; keep "
                "fewer, or train the model with backprop itself"
            )
        if not swap.converted:
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

    def feedback_bound(self, layer: nn.Module) -> float:
        """k of B ~ U(−k, k) for one layer: the bound of ``feedback_init``'s scale, times ``feedback_scale``."""
        return init_bound(layer, self.config.feedback_init) * self.config.feedback_scale

    def init_feedback(self, found: Trace | None) -> None:
        """Draw B ~ U(−k, k) with W's shape for each layer in module order (k: :meth:`feedback_bound`; by default
        1/√fan_in, the bound of PyTorch's default init of W)."""
        for layer in self.layers.values():
            k = self.feedback_bound(layer)
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


__all__ = [
    "FEEDBACK_ANGLE",
    "FeedbackAlignment",
    "FeedbackConfig",
    "FeedbackLayer",
    "FeedbackRule",
    "LayerFeedbackConfig",
]
