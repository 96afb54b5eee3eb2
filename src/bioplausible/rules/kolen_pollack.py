"""Kolen-Pollack learning (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019).

Feedback alignment whose feedback matrix learns: B receives the same update as Wᵀ (stored as B with W's shape,
the same update as W), and both decay by the same weight decay λ:

    ΔW = −η (∂W + λ W),    ΔB = −η (∂W + λ B)      ⇒    W − B  ←  (1 − ηλ)(W − B)

so with plain SGD the difference between W and B shrinks geometrically and B converges to W: the rule becomes
backprop without ever copying W into the feedback path. B is a Parameter whose gradient the layer's backward sets
to W's plus the decay terms (:class:`~bioplausible.layers.modes.LearnedFeedback`), so the optimizer applies both
updates, in ``rule.step`` or a plain training loop; with adaptive optimizers (Adam) the two updates are equal up
to the decay terms and the convergence is approximate. B must be in the optimizer: a training step in which W
moved and B did not raises (an optimizer built before ``convert`` would silently turn kp into fa).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..config import option
from ..layers import FeedbackMode, LearnedFeedback
from ..layers.swap import Trace
from ..registry import RULES
from .fa import FeedbackRule, LayerFeedbackConfig


@dataclass
class KolenPollackConfig(LayerFeedbackConfig):
    kp_decay: float = option(1e-3, "weight decay λ applied to both W and B (the decay that aligns them)", above=0)


@RULES.register("kp")
class KolenPollack(FeedbackRule):
    """Kolen-Pollack: B gets W's update plus the same weight decay, so it converges to W."""

    name = "kp"
    Config = KolenPollackConfig

    def mode(self, name: str, layer: nn.Module) -> FeedbackMode:
        return LearnedFeedback(self.config.kp_decay)

    def init_feedback(self, found: Trace | None) -> None:
        super().init_feedback(found)
        for layer in self.layers.values():
            B = layer._buffers.pop("feedback")
            layer.feedback = nn.Parameter(B)  # trained by the optimizer, with the gradient set in the backward
