"""Sign symmetry (Liao, Leibo & Poggio 2016; Xiao, Chen, Liao & Poggio 2018).

The feedback shares only the sign of the forward weights, taken from the current W in every backward pass:

    B = sign(W) ⊙ M,      δ_l = (B_{l+1} δ_{l+1}) ⊙ f'(a_l)

Variants differ in the magnitudes M:
    usf   uniform: M = s, one scalar per layer (s = feedback_scale · k/√3, the std of W's init U(−k, k) under
          feedback_init: PyTorch's default, k = 1/√fan_in, unless set; BioTorch draws it with --init's scheme,
          which --feedback-init xavier reproduces; a run whose --init differs warns)
    frsf  fixed random magnitudes: M ~ U(0, k·feedback_scale), drawn once
    brsf  batchwise random magnitudes: M ~ U(0, k·feedback_scale), redrawn by every training forward

Both the sign and the redraw happen inside the layers (:class:`~bioplausible.layers.modes.SignFeedback`), so a
plain ``loss.backward()`` training loop gets exactly what ``rule.step`` gets: no stale signs, no frozen M.
"""

from __future__ import annotations

from torch import nn

from ..layers import FeedbackMode, SignFeedback
from ..layers.swap import Trace
from ..registry import RULES
from .fa import FeedbackRule


class SignSymmetry(FeedbackRule):
    """B = sign(W) ⊙ M, from the current W in every backward."""

    magnitudes = "uniform"  # uniform | fixed | batch

    def mode(self, name: str, layer: nn.Module) -> FeedbackMode:
        return SignFeedback(self.magnitudes, self.feedback_bound(layer), self.clock)

    def init_feedback(self, found: Trace | None) -> None:
        for layer in self.layers.values():
            layer.feedback_mode.install(layer)


@RULES.register("usf")
class UniformSignSymmetry(SignSymmetry):
    """Sign symmetry with uniform magnitude: B = sign(W) · s."""

    name = "usf"
    magnitudes = "uniform"


@RULES.register("frsf")
class FixedRandomSignSymmetry(SignSymmetry):
    """Sign symmetry with fixed random magnitudes: B = sign(W) ⊙ M, M drawn once."""

    name = "frsf"
    magnitudes = "fixed"


@RULES.register("brsf")
class BatchRandomSignSymmetry(SignSymmetry):
    """Sign symmetry with batchwise random magnitudes: B = sign(W) ⊙ M, M redrawn every batch."""

    name = "brsf"
    magnitudes = "batch"
    stochastic = True
