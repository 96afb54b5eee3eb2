"""What a rule may require of a model, and what an architecture (or any user model) may offer: checked, not assumed.

A rule declares ``requires = (LAYERED,)``; ``Rule.prepare`` checks each requirement on the model it is given and
refuses with the requirement's reason (``ep needs a symmetric energy network; resnet18 is feed-forward``). An
architecture declares ``provides = ("layered",)``, which the CLI's listing and the rule × architecture test matrix
read (a test checks the declaration against the check on a built model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Protocol:
    """A capability a model may have, with a check and the sentence that says what it means."""

    name: str
    check: Callable[[nn.Module], bool]
    needs: str  # completes "rule X needs ..."
    explain: Callable[[nn.Module], str] | None = None  # why a model does not qualify, when there is more to say

    def __call__(self, model: nn.Module) -> bool:
        return self.check(model)

    def why_not(self, model: nn.Module) -> str:
        """The reason ``model`` does not offer the protocol (the generic one when none is known)."""
        reason = self.explain(model) if self.explain else ""
        return reason or f"{type(model).__name__} is not one"


def _layered(model: nn.Module) -> bool:
    from .layered import layered_view

    return layered_view(model, explain=False) is not None


def _why_not_layered(model: nn.Module) -> str:
    from .errors import IncompatibleError
    from .layered import layered_view

    try:
        layered_view(model)
    except IncompatibleError as err:
        return str(err)
    return ""


def _trainable_layers(model: nn.Module) -> bool:
    from .layers import swappable_layers

    return bool(swappable_layers(model))


ENERGY_PROTOCOL = ("settle", "energy", "connections", "parameter_layers", "layer_slice", "num_layers")

LAYERED = Protocol(
    "layered",
    _layered,
    "a layered network, one whose layers it can take one by one (layers_spec(), as mlp, dense-mlp, convnet, "
    "dense-convnet and lc-net give, or an nn.Sequential of Linear / Conv2d / locally connected layers, activations "
    "and Flatten)",
    _why_not_layered,
)
ENERGY = Protocol(
    "energy", lambda m: all(hasattr(m, a) for a in ENERGY_PROTOCOL), "a symmetric energy network (such as energy-net)"
)
TRAINABLE_LAYERS = Protocol("layers", _trainable_layers, "Linear, Conv2d or locally connected layers to train")
PROTOCOLS = {p.name: p for p in (LAYERED, ENERGY, TRAINABLE_LAYERS)}
