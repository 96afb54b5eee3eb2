"""Backpropagation: autograd, unchanged. The reference every other rule is compared with."""

from ..registry import RULES
from .base import Rule


@RULES.register("bp")
class Backprop(Rule):
    """Backpropagation (autograd): the exact gradient of the loss."""

    name = "bp"
