"""Kolen-Pollack learning (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019).

Feedback alignment whose feedback matrix learns: B receives the same update as Wᵀ (stored as B with W's shape,
the same update as W), and both decay by the same weight decay λ:

    ΔW = −η (∂W + λ W),    ΔB = −η (∂W + λ B)      ⇒    W − B  ←  (1 − ηλ)(W − B)

so with plain SGD the difference between W and B shrinks geometrically and B converges to W: the rule becomes
backprop without ever copying W into the feedback path. B is a Parameter whose gradient the rule sets to W's
(plus the decay terms), so the optimizer applies both updates; with adaptive optimizers (Adam) the two updates
are equal up to the decay terms and the convergence is approximate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..layers import FeedbackLayer
from ..registry import RULES
from .fa import FeedbackConfig, FeedbackRule


@dataclass
class KolenPollackConfig(FeedbackConfig):
    kp_decay: float = option(1e-3, "weight decay λ applied to both W and B (the decay that aligns them; > 0)")

    def validate(self) -> None:
        super().validate()
        if not self.kp_decay > 0:
            raise ConfigError(f"kp_decay must be > 0: without decay B never approaches W (got {self.kp_decay})")


@RULES.register("kp")
class KolenPollack(FeedbackRule):
    """Kolen-Pollack: B gets W's update plus the same weight decay, so it converges to W."""

    name = "kp"
    Config = KolenPollackConfig

    def init_feedback(self, layer: FeedbackLayer) -> None:
        super().init_feedback(layer)
        B = layer._buffers.pop("feedback")
        layer.feedback = nn.Parameter(B)  # trained by the optimizer, with the gradient set in step()

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        metrics = super().step(model, x, y)
        λ = self.config.kp_decay
        with torch.no_grad():
            for layer in self.layers.values():
                W, B = layer.weight, layer.feedback
                B.grad = W.grad + λ * B
                W.grad.add_(W, alpha=λ)
        return metrics
