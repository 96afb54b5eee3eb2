"""Weight mirrors (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, "Deep learning without weight transport").

Feedback alignment whose feedback matrix learns from noise. Each layer is driven by noise ξ ~ N(0, σ²I) on its
input; its (bias-free) output a = W ξ is correlated with the noise by a local, Hebbian-like update:

    B ← (1 − η λ) B + η · mean_n(a ξᵀ),      E[a ξᵀ] = σ² W      ⇒  B → (σ²/λ) W

With the defaults σ = 1, λ = 1, B tracks W itself. The mirror step runs in each layer's training forward, once per
batch (:class:`~bioplausible.layers.modes.MirrorFeedback`), so it happens in a plain training loop too; the
forward weights are trained through feedback alignment by the optimizer, as for ``fa``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..config import option
from ..errors import ConfigError
from ..layers import FeedbackMode, MirrorFeedback
from ..registry import RULES
from .fa import FeedbackRule, LayerFeedbackConfig


@dataclass
class WeightMirrorConfig(LayerFeedbackConfig):
    mirror_lr: float = option(0.05, "learning rate η of the mirror update of B", above=0)
    mirror_decay: float = option(1.0, "decay λ of B; B approaches (noise_std² / mirror_decay) · W", above=0)
    noise_std: float = option(1.0, "standard deviation σ of the noise driving each layer", above=0)
    mirror_samples: int = option(64, "noise samples per mirror update", min=1)

    def validate(self) -> None:
        if self.mirror_lr * self.mirror_decay >= 1:
            raise ConfigError("mirror_lr · mirror_decay must be < 1, or B's decay overshoots")


@RULES.register("wm")
class WeightMirror(FeedbackRule):
    """Weight mirrors: B learns W from the correlation of injected noise with each layer's response."""

    name = "wm"
    initial_feedback_fades = True  # B decays toward (σ²/λ)·W by mirror_lr·mirror_decay a batch
    Config = WeightMirrorConfig
    stochastic = True

    def mode(self, name: str, layer: nn.Module) -> FeedbackMode:
        c = self.config
        return MirrorFeedback(c.mirror_lr, c.mirror_decay, c.noise_std, c.mirror_samples, self.clock)
