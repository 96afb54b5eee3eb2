"""Weight mirrors (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, "Deep learning without weight transport").

Feedback alignment whose feedback matrix learns from noise. Each layer is driven by noise ξ ~ N(0, σ²I) on its
input; its (bias-free) output a = W ξ is correlated with the noise by a local, Hebbian-like update:

    B ← (1 − η λ) B + η · mean_n(a ξᵀ),      E[a ξᵀ] = σ² W      ⇒  B → (σ²/λ) W

With the defaults σ = 1, λ = 1, B tracks W itself. The mirror update is the rule's own (B is a buffer); the
forward weights are trained through feedback alignment by the optimizer, as for ``fa``.
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
class WeightMirrorConfig(FeedbackConfig):
    mirror_lr: float = option(0.05, "learning rate η of the mirror update of B")
    mirror_decay: float = option(1.0, "decay λ of B; B approaches (noise_std² / mirror_decay) · W")
    noise_std: float = option(1.0, "standard deviation σ of the noise driving each layer")
    mirror_samples: int = option(64, "noise samples per mirror update")

    def validate(self) -> None:
        super().validate()
        for name in ("mirror_lr", "mirror_decay", "noise_std"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.mirror_lr * self.mirror_decay >= 1:
            raise ConfigError("mirror_lr · mirror_decay must be < 1, or B's decay overshoots")
        if self.mirror_samples < 1:
            raise ConfigError(f"mirror_samples must be >= 1 (got {self.mirror_samples})")


@RULES.register("wm")
class WeightMirror(FeedbackRule):
    """Weight mirrors: B learns W from the correlation of injected noise with each layer's response."""

    name = "wm"
    Config = WeightMirrorConfig

    @torch.enable_grad()
    def mirror(self, layer: FeedbackLayer) -> None:
        c = self.config
        ξ = c.noise_std * torch.randn(c.mirror_samples, *layer.mirror_input_shape(), device=layer.weight.device)
        W = layer.weight.detach().requires_grad_()
        a = layer.mirror_forward(ξ, W)
        # ∂/∂W of ½‖W ξ‖² is a ξᵀ: autograd forms the correlation for every layer type alike
        (correlation,) = torch.autograd.grad(0.5 * a.pow(2).sum() / c.mirror_samples, W)
        with torch.no_grad():
            layer.feedback.mul_(1 - c.mirror_lr * c.mirror_decay).add_(correlation, alpha=c.mirror_lr)

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        for layer in self.layers.values():
            self.mirror(layer)
        return super().step(model, x, y)
