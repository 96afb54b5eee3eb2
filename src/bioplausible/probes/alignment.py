"""Alignment and learning-signal probes: pure functions, tensors in, ``{name: float}`` out.

* ``feedback_angles``: angle between each feedback matrix B and the forward W it stands in for (B is stored with
  W's shape, so this is the angle between B and Wᵀ of the papers). Feedback alignment works when it is < 90°. The
  probes leave out a fixed B (FA's) in a layer fed by the data (``layers_fed_by_data``): it carries no error.
* ``gradient_angles``: angle between the rule's weight gradient and the true backprop gradient on the same batch.
* ``gradient_norms``: per-layer norm of the learning signal; a norm that fades with depth is a vanishing signal.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import torch
from torch import nn

from ..layers import exact_gradients, feedback_layers


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between two tensors seen as flat vectors (NaN if either is zero)."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    norm = a.norm() * b.norm()
    if norm == 0:
        return math.nan
    cos = torch.clamp(a @ b / norm, -1.0, 1.0)
    return math.degrees(math.acos(cos.item()))


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that own a weight matrix or kernel (Linear, Conv, locally connected), by qualified name."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }


def weight_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of each weight layer's current ``weight.grad``."""
    return {
        name: m.weight.grad.detach().clone() for name, m in weight_layers(model).items() if m.weight.grad is not None
    }


def feedback_angles(model: nn.Module) -> dict[str, float]:
    """∠(B, W) per feedback layer whose B has W's shape (DFA's B maps from the output and is skipped)."""
    angles = {}
    for name, layer in feedback_layers(model).items():
        B = layer.feedback_mode.matrix(layer)
        if B is not None and B.shape == layer.weight.shape:
            angles[name] = angle_deg(B, layer.weight)
    return angles


@contextmanager
def layers_fed_by_data(model: nn.Module):
    """Yields a set that, on exit, holds the feedback layers whose input never required grad in the block (the
    layers reading the data, such as the first layer or a ResNet's stem): their B would carry the error to the
    input, which nothing uses, so W never aligns with a fixed B there and their angle says nothing of the rule (FA's
    stays near 90° for that reason alone). A B that follows W (sign symmetry) or learns it (KP, weight mirrors)
    still shows whether the rule does that, so only fixed ones are left out."""
    seen, carried, fed = set(), set(), set()

    def watch(name):
        def record(module, args):
            if args and isinstance(args[0], torch.Tensor):
                seen.add(name)
                if args[0].requires_grad:
                    carried.add(name)

        return record

    handles = [m.register_forward_pre_hook(watch(n)) for n, m in feedback_layers(model).items()]
    try:
        yield fed
    finally:
        for handle in handles:
            handle.remove()
        fed.update(seen - carried)


def gradient_angles(rule_grads: dict[str, torch.Tensor], bp_grads: dict[str, torch.Tensor]) -> dict[str, float]:
    """∠(rule's gradient, backprop's gradient) per layer present in both."""
    return {name: angle_deg(g, bp_grads[name]) for name, g in rule_grads.items() if name in bp_grads}


def gradient_norms(grads: dict[str, torch.Tensor]) -> dict[str, float]:
    """‖∂W_l‖ per layer."""
    return {name: g.norm().item() for name, g in grads.items()}


def backprop_grads(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The true gradient of every weight layer on (x, y), with feedback layers switched to exact backprop."""
    model.zero_grad(set_to_none=True)
    with exact_gradients(model):
        loss_fn(model(x), y).backward()
    grads = weight_grads(model)
    model.zero_grad(set_to_none=True)
    return grads


@contextmanager
def same_random_streams(model: nn.Module):
    """Run the block on forked random streams (the CPU's and those of the model's GPUs): whatever it draws, the
    streams continue afterwards as if it had not run."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        yield


@contextmanager
def leaves_no_trace(model: nn.Module, rule):
    """Restore the model's parameters and buffers, the rule's state and every random stream on exit.

    A probe runs ``rule.step``, which may change state besides ``.grad``: weight mirrors update B, target propagation
    trains its inverses, brsf redraws its magnitudes, a train-mode forward moves batch-norm statistics, and
    stochastic rules draw random numbers. Measuring must not train, nor shift the random numbers the run draws next.
    """
    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rule_state = copy.deepcopy(rule.state_dict())
    probing, rule.probing = getattr(rule, "probing", False), True  # a rule's step may skip its bookkeeping then
    try:
        with same_random_streams(model):
            yield
    finally:
        rule.probing = probing
        model.load_state_dict(model_state)
        rule.load_state_dict(rule_state)
        model.zero_grad(set_to_none=True)


def alignment_probes(model: nn.Module, rule, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """All probes on one batch, as namespaced metrics ``probe/<kind>/<layer>``.

    Runs one ``rule.step`` to get the rule's gradient, so the rule is measured exactly as it trains; the model and
    the rule are left exactly as they were (no gradients, no optimizer step, no side effect of the step).
    """
    with leaves_no_trace(model, rule):
        model.zero_grad(set_to_none=True)
        with layers_fed_by_data(model) as fed_by_data:
            rule.step(model, x, y)
        rule_grads = weight_grads(model)
        angles = feedback_angles(model)  # B as the step used it (after brsf's redraw, wm's mirror step)
        layers = feedback_layers(model)  # a fixed B fed by the data neither carries an error nor changes
        angles = {n: a for n, a in angles.items() if not (n in fed_by_data and layers[n].feedback_mode.fixed)}
        bp_grads = backprop_grads(model, rule.loss_fn, x, y)
    metrics = {}
    for kind, values in (
        ("feedback_angle", angles),
        ("grad_angle", gradient_angles(rule_grads, bp_grads)),
        ("grad_norm", gradient_norms(rule_grads)),
    ):
        metrics.update({f"probe/{kind}/{name}": v for name, v in values.items()})
    return metrics
