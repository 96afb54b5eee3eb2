"""Equilibrium propagation (Scellier & Bengio 2017, "Equilibrium Propagation: Bridging the Gap between
Energy-Based Models and Backpropagation"), with symmetric nudging (Laborieux et al. 2021) and Gammell et al.'s
(2020) per-layer learning rates.

An energy network (``energy-net``) settles to a minimum s⁰ of its energy E(θ, s) with the input clamped (free
phase). The nudged phase then minimises F = E + β C from s⁰, where C is the output cost (MSE ½‖s_L − y‖² or
cross-entropy of softmax(s_L)), reaching s^β. The update contrasts the two equilibria:

    ∂L/∂θ ≈ (∂E/∂θ(s^β) − ∂E/∂θ(s⁰)) / β                      one-sided: O(β) bias
    ∂L/∂θ ≈ (∂E/∂θ(s^β) − ∂E/∂θ(s^−β)) / (2β)                 symmetric: O(β²) bias
    ΔW_ij ∝ −∂L/∂W_ij = (ρ(s_i^β) ρ(s_j^β)ᵀ − ρ(s_i⁰) ρ(s_j⁰)ᵀ) / β   (the local, Hebbian contrast)

``random-sign`` draws the sign of β per batch (one-sided, Gammell et al.), which cancels the O(β) bias on
average. The contrast is written as the gradient of one scalar, E(s^a) − E(s^b) averaged over the batch and
divided by the β difference, evaluated with autograd at the detached equilibria; it lands in ``.grad``, so any
optimizer applies it (the papers use plain SGD). As β → 0 it approaches the gradient of C at the free fixed
point, i.e. what backprop through time of the settling dynamics computes.

Per-layer learning rates: ``layer_lr_scale`` holds one multiplier per non-input layer (= per adjacent layer pair
of a layered net); it scales the gradient of that layer's bias and of every weight matrix into it from below. With
SGD at lr the effective rate of layer l is lr · scale_l; Gammell's 0.128, 0.032, 0.008, 0.002 are lr = 0.128 with
scales (1, 1/4, 1/16, 1/64).

The rule works on any model with the energy-network protocol (``settle``, ``energy``, ``connections``,
``parameter_layers``, ``layer_slice``, ``num_layers``, ``nudged_steps``); it imports no architecture.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import ConfigError, IncompatibleError
from ..registry import RULES
from .base import Rule

NUDGINGS = ("one-sided", "symmetric", "random-sign")
COSTS = ("mse", "ce")
PROTOCOL = ("settle", "energy", "connections", "parameter_layers", "layer_slice", "num_layers")


@dataclass
class EPConfig:
    beta: float = option(1.0, "nudging strength β (> 0)")
    nudging: str = option("random-sign", "one-sided (+β), symmetric (±β) or random-sign (±β drawn per batch)", NUDGINGS)
    cost: str = option("mse", "output cost C: ½‖s_L − onehot‖² or cross-entropy of softmax(s_L)", COSTS)
    layer_lr_scale: tuple[float, ...] = option((), "gradient multiplier per non-input layer (empty: all 1)")
    warm_start: bool = option(False, "start the free phase from a feed-forward pass instead of zeros")

    def validate(self) -> None:
        self.layer_lr_scale = tuple(float(v) for v in self.layer_lr_scale)
        if not self.beta > 0:
            raise ConfigError(f"beta must be > 0 (got {self.beta})")
        if self.nudging not in NUDGINGS:
            raise ConfigError(f"nudging must be one of {', '.join(NUDGINGS)} (got {self.nudging!r})")
        if self.cost not in COSTS:
            raise ConfigError(f"cost must be one of {', '.join(COSTS)} (got {self.cost!r})")
        if any(not v >= 0 for v in self.layer_lr_scale):
            raise ConfigError(f"layer_lr_scale entries must be >= 0 (got {self.layer_lr_scale})")


def cost_value(cost: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """C per batch (mean over samples) at the output state (N, C) for one-hot targets (N, C)."""
    if cost == "mse":
        return 0.5 * (out - target).pow(2).sum(1).mean()
    return -(target * out.log_softmax(1)).sum(1).mean()


def nudge_force(cost: str, beta: float, target: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """−β ∂C/∂s_L per sample (N, C), the extra drive on the output units in a nudged phase."""
    error = out - target if cost == "mse" else out.softmax(1) - target
    return -beta * error


@RULES.register("ep")
class EquilibriumPropagation(Rule):
    """Equilibrium propagation: contrast of a free and a nudged equilibrium of an energy network."""

    name = "ep"
    Config = EPConfig

    def prepare(self, model: nn.Module) -> nn.Module:
        missing = [name for name in PROTOCOL if not hasattr(model, name)]
        if missing:
            raise IncompatibleError(
                f"EP needs a symmetric energy network (such as energy-net); {type(model).__name__} is feed-forward "
                f"(it has no {', '.join(missing)})"
            )
        scales = self.config.layer_lr_scale
        if scales and len(scales) != model.num_layers:
            raise ConfigError(
                f"layer_lr_scale needs one multiplier per non-input layer ({model.num_layers}); got {len(scales)}"
            )
        return model

    def betas(self) -> list[float]:
        """The β of each nudged phase for this batch."""
        beta = self.config.beta
        if self.config.nudging == "symmetric":
            return [beta, -beta]
        if self.config.nudging == "random-sign" and torch.randint(2, ()).item():
            return [-beta]
        return [beta]

    @torch.no_grad()
    def equilibria(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        """Free equilibrium, then one nudged equilibrium per β, each settled from the free one."""
        init = model.feedforward_state(x) if self.config.warm_start else None
        free = model.settle(x, state=init)
        out = model.layer_slice(model.num_layers)
        target = F.one_hot(y, free.state.shape[1] - out.start).to(free.state.dtype)
        nudged = {}
        for beta in self.betas():
            force = functools.partial(nudge_force, self.config.cost, beta, target)
            nudged[beta] = model.settle(x, state=free.state, steps=model.nudged_steps, force=force)
        return free, nudged, target

    def estimate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        """The EP gradient of every parameter (scaled per layer) and the settlings it came from."""
        free, nudged, target = self.equilibria(model, x, y)
        (b_a, s_a), *rest = nudged.items()
        b_b, s_b = rest[0] if rest else (0.0, free)
        surrogate = (model.energy(s_a.state, x).mean() - model.energy(s_b.state, x).mean()) / (b_a - b_b)
        names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        grads = torch.autograd.grad(surrogate, params, allow_unused=True)
        layers, scales = model.parameter_layers(), self.config.layer_lr_scale
        result = {}
        for name, p, g in zip(names, params, grads):
            g = torch.zeros_like(p) if g is None else g
            result[name] = g * scales[layers[name] - 1] if scales and name in layers else g
        return result, free, nudged, target

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        grads, free, nudged, target = self.estimate(model, x, y)
        for name, p in model.named_parameters():
            if name in grads:
                p.grad = grads[name] if p.grad is None else p.grad + grads[name]
        out = free.state[:, model.layer_slice(model.num_layers)]
        loss = cost_value(self.config.cost, out, target)
        nudged_steps = sum(s.steps for s in nudged.values()) / len(nudged)
        return {
            "loss": loss.detach(),
            "accuracy": (out.argmax(1) == y).float().mean(),
            "free_steps": torch.tensor(float(free.steps)),
            "nudged_steps": torch.tensor(float(nudged_steps)),
        }

    def probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """‖ΔW‖ per connected layer pair (the vanishing-signal curves), free-phase steps and last residual."""
        grads, free, _, _ = self.estimate(model, x, y)
        metrics = {
            f"probe/ep_update_norm/{key}": grads[f"connections.{key}.weight"].norm().item() for key in model.connections
        }
        metrics["probe/ep_free_steps"] = float(free.steps)
        metrics["probe/ep_residual_last"] = free.residuals[-1].item()
        return metrics
