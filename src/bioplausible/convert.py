"""``convert(model, rule)``: make any PyTorch model trainable by a learning rule, keeping its weights."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from .rules import Rule, create_rule

log = logging.getLogger(__name__)


def convert(model: nn.Module, rule: str | Rule, loss: str = "ce", **options: Any) -> tuple[nn.Module, Rule]:
    """Swap the supported layers of ``model`` (Linear, Conv2d, LocallyConnected2d — anywhere, residual blocks
    included) for the rule's versions, in place and keeping their weights.

    Batch norm, pooling and every other module keep their true gradient. The layers left unchanged are logged
    and listed in ``rule.unchanged`` (the swapped ones in ``rule.layers``).

    Args:
        model: any ``nn.Module``.
        rule: a registered rule name (``bioplausible list rules``) or a Rule instance.
        loss: ``ce`` or ``mse``, the loss ``rule.step`` trains with.
        **options: the rule's options, e.g. ``feedback_scale=0.5, bp_layers=("fc",)``; unknown ones are listed.

    Returns:
        (model, rule): train with ``rule.step(model, x, y)`` then any ``optimizer.step()``.

    Raises:
        IncompatibleError: the model has no layer the rule can train.
        ConfigError: an option the rule does not have, or out of range.
    """
    if isinstance(rule, str):
        rule = create_rule(rule, loss=loss, **options)
    elif options:
        raise TypeError("pass options when giving a rule name; a Rule instance already has its config")
    rule.prepare(model)
    unchanged = getattr(rule, "unchanged", [])
    if unchanged:
        log.info("convert(%s): kept the true gradient of %s", rule.name, ", ".join(unchanged))
    return model, rule
