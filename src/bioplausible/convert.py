"""``convert(model, rule)``: make any PyTorch model trainable by a learning rule, keeping its weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .layers.swap import run_once
from .rules import Rule, create_rule


def convert(
    model: nn.Module,
    rule: str | Rule,
    example_input: torch.Tensor | None = None,
    loss: str = "ce",
    **options: Any,
) -> tuple[nn.Module, Rule]:
    """Swap the supported layers of ``model`` (Linear, Conv2d, locally connected — anywhere, residual blocks
    included) for the rule's versions, in place and keeping their weights, and build the rule's state.

    Batch norm, pooling and every other module keep their true gradient; the layers left unchanged are listed in
    ``rule.unchanged`` (the swapped ones in ``rule.layers``), and modules with weights that the rule cannot train
    (e.g. ``nn.MultiheadAttention``) are named in a ``KeptOnBackpropWarning``.

    Args:
        model: any ``nn.Module`` (a bare layer too: use the returned model).
        rule: a registered rule name (``bioplausible list rules``) or a Rule instance.
        example_input: a batch of inputs (``x[:1]`` suffices). Needed by rules with shape-dependent state (dfa on
            convolutions, target propagation), to find the output layer (``bp_layers=("last",)``) and to find
            layers that never run (their weights used through ``F.linear`` or the like: without it they are
            swapped, and keep their true gradient unnoticed); the model runs on it once in eval mode, leaving
            every random stream as it was.
        loss: ``ce`` or ``mse``, the loss ``rule.step`` trains with.
        **options: the rule's options, e.g. ``feedback_scale=0.5, bp_layers=("fc",)``; unknown ones are listed.

    Returns:
        (model, rule): train with ``rule.step(model, x, y)`` then any ``optimizer.step()``, or with a plain
        ``loss.backward()`` (the feedback rules do their per-batch work inside the layers).

    Raises:
        IncompatibleError: the model has no layer the rule can train, or not the structure the rule needs; a
            layer with a reparametrized weight (weight_norm, spectral_norm, orthogonal).
        ConfigError: an option the rule does not have, or out of range; a missing example input the rule needs,
            or one without a batch dimension.
    """
    if isinstance(rule, str):
        rule = create_rule(rule, loss=loss, **options)
    elif options:
        raise TypeError("pass options when giving a rule name; a Rule instance already has its config")
    if example_input is not None and example_input.dim() < 2:
        raise ConfigError(
            f"example_input must be a batch, shaped (N, ...): got shape {tuple(example_input.shape)}; pass x[:1] "
            "rather than x[0]"
        )
    if example_input is not None:
        example_input = example_input.to(next(model.parameters(), example_input).device)
        _refuse_unbatched_convolutions(model, example_input)
    rule.check_requirements(model)  # declared requirements are checked here, whatever prepare does
    model = rule.prepare(model, example_input)
    rule.mark_prepared(model)
    return model, rule


@torch.no_grad()
def _refuse_unbatched_convolutions(model: nn.Module, example_input: torch.Tensor) -> None:
    """Raise ConfigError if a convolution receives an unbatched input on ``example_input`` (e.g. (C, H, W) for a
    Conv2d, which PyTorch accepts as one sample): every batch-dependent shape the rule then builds would be wrong.

    The rank alone cannot tell: a model may take (N, H, W) and add the channel axis itself, so the model runs once
    (eval mode, random streams untouched) with a hook on each convolution."""
    convolutions = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convolutions:
        return
    unbatched: list[tuple[str, tuple[int, ...]]] = []

    def watch(name):
        def check(module, args):
            if not unbatched and args and args[0].dim() == len(module.kernel_size) + 1:
                unbatched.append((name, tuple(args[0].shape)))

        return check

    handles = [m.register_forward_pre_hook(watch(n)) for n, m in convolutions]
    try:
        run_once(model, example_input)
    except Exception:  # an unbatched input often fails further on; else the rule's own pass reports the error
        if not unbatched:
            return
    finally:
        for handle in handles:
            handle.remove()
    if unbatched:
        name, shape = unbatched[0]
        raise ConfigError(
            f"example_input must be a batch: convolution {name!r} received an unbatched input of shape {shape} "
            f"(example_input {tuple(example_input.shape)}); pass x[:1] rather than x[0]"
        )
