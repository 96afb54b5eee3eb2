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

Persistent states (``persistent``, Gammell et al.): the free phase of a training example starts from the free
equilibrium it reached the last time it was seen, instead of from zeros (or a feed-forward pass, ``warm_start``).
The weights moved by one epoch since; once they move little (skip nets on MNIST after a few epochs) that state is
near the new equilibrium and settling to the tolerance takes fewer steps (523 → 217 per batch over 10 epochs at
p = 0.04); a layered deep net keeps needing about as many. The engine passes each batch's dataset indices
(``per_example_state``); the memory (N_train × H) is part of the rule's state_dict, so checkpoints and resume keep it.

Persistent evaluation (``persistent_eval``, Gammell et al.'s ``calculate_test_error``): the test set's free phases
start from where the previous evaluation left each test example (zeros the first time), in states kept per split
(test, validation, and the mid-epoch ``--eval-steps`` evaluations, which so leave the epochs' evaluations as they
would be without them) apart from the training ones and saved with them; a split whose size changed (another test
set on resume) starts again from zeros, with a warning. A net with several equilibria per input is
then read on the branch it has tracked across epochs; settled from zeros each time, its test error can jump
between epochs (784-500×3-10 layered, epochs 13–30: 4.7–17.0 % from zeros while its training error fell smoothly).

Settling health (``ep_health``): the EP update is the loss gradient only at equilibria, and only while the nudging
reaches the network. ``step`` returns, besides loss and accuracy, ``free_steps`` / ``nudged_steps`` (steps or block
sweeps used), ``settle_residual`` / ``nudged_residual`` (last max |Δs|), ``free_unsettled`` / ``nudged_unsettled``
(phases at their cap above the tolerance) and ``nudged_shift`` (the largest |s_β − s_free|, which stays near 0 in a
dead network); a blown-up, capped or (at tolerance 0) far-from-settled phase and a dead network raise a
``RuntimeWarning`` that says what to change (once per rule). A measured case: 100 Euler steps (the old default cap)
on 20-16-16-5 nets, 32 random inputs, left residuals of 1.3–3.0e-2 (three seeds), silently; block settling reaches
1e-4 there in 32–37 sweeps. (Comparing EP with the gradient needs β small against the distance of every unit's drive
from a kink of ρ: on one of those nets a unit's drive lies 3.5e-4 from 1, and symmetric EP has cosines 0.55 / 0.74 /
0.93 per weight matrix with the gradient at β = 1e-3, 1.0000 at β ≤ 1e-4, at the same equilibrium.)

Nudging and settled nudged phases: with the MSE cost the output's part of F = E + βC has curvature 1 + β, so at
β ≤ −1 there is no nudged equilibrium (the outputs run to 0 or 1) and at β = −½ the output moves as far as the
error itself (β / (1 + β)). The published recipes (Scellier & Bengio: 4 nudged steps; Gammell: 12) truncate the
nudged phase, which keeps random-sign β = 1 working; settled nudged phases do not (MNIST, 784-100×5-10 skip
p = 0.04, 5,000 images, lr 0.015, persistent states: random-sign β = 1 reached 40.0 % after 3 epochs with an
Euler free phase and 12 Euler nudged steps, 39.5 % with a block free phase and 12 Euler nudged steps, 23.8 % /
14.2 % with 12 block sweeps / block sweeps to the tolerance, and 9.9 % after 2 epochs with a block free phase and
up to 200 Euler nudged steps to the tolerance; one-sided β = 1 with settled nudged phases (block free phase)
reached 57.9 % (block nudged) and 56.5 % (Euler nudged) after 2 epochs, against 32.4 % / 36.0 % for random sign
with 12 Euler nudged steps after an Euler / a block free phase). So the default nudging is one-sided, and
``prepare`` warns about two-signed nudging with β ≥ 1 under MSE when the model settles its nudged phases by
blocks. (Single runs at a small budget: indications, not a study.)

The nudging force is a ``Nudge``: callable on the output state like before, and it tells block settling the
curvature of βC so that the output's step in a nudged sweep is exact for MSE (see the energy net's
``_output_step``).

``remove_skip_after`` (Gammell et al.'s open question, whether skip connections are needed once trained): from
that epoch on (``start_epoch``) the prepared model's layer-skipping connections are zeroed and frozen
(``remove_skip_connections``), so the rest of training is that of the layered net.

The rule works on any model with the energy-network protocol (``settle``, ``energy``, ``connections``,
``parameter_layers``, ``layer_slice``, ``num_layers``, ``nudged_steps``); it imports no architecture.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import ConfigError, IncompatibleError
from ..protocols import ENERGY
from ..registry import RULES
from .base import ProbeSpec, Rule
from .ep_health import SettlingHealth

NUDGINGS = ("one-sided", "symmetric", "random-sign")
COSTS = ("mse", "ce")


@dataclass
class EPConfig:
    beta: float = option(1.0, "nudging strength β", above=0)
    nudging: str = option("one-sided", "one-sided (+β), symmetric (±β) or random-sign (±β drawn per batch)", NUDGINGS)
    cost: str = option(
        "mse", "EP's output cost C, which it trains on: ½‖s_L − onehot‖² or cross-entropy of softmax(s_L)", COSTS
    )
    layer_lr_scale: tuple[float, ...] = option((), "gradient multiplier per non-input layer (empty: all 1)", min=0)
    warm_start: bool = option(False, "start the free phase from a feed-forward pass instead of zeros")
    persistent: bool = option(
        False, "start each training example's free phase from its own last free equilibrium (Gammell et al.)"
    )
    remove_skip_after: int = option(
        0, "remove the layer-skipping connections (zeroed, frozen) after this many epochs (0: never; Gammell)", min=0
    )
    persistent_eval: bool = option(
        False,
        "evaluate each test (and validation) example from its free equilibrium of the previous evaluation, kept apart "
        "from the training states, as Gammell et al.'s code does (off: settled from zeros every time)",
    )


def cost_value(cost: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """C per batch (mean over samples) at the output state (N, C) for one-hot targets (N, C)."""
    if cost == "mse":
        return 0.5 * (out - target).pow(2).sum(1).mean()
    return -(target * out.log_softmax(1)).sum(1).mean()


def nudge_force(cost: str, beta: float, target: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """−β ∂C/∂s_L per sample (N, C), the extra drive on the output units in a nudged phase."""
    error = out - target if cost == "mse" else out.softmax(1) - target
    return -beta * error


class Nudge:
    """The nudging force −β ∂C/∂s_L as a function of the output state (N, C), with what block settling needs to
    step the output exactly: ``curvature`` bounds the largest eigenvalue of β ∂²C/∂s_L² (MSE: β, exact, the force
    is linear; cross-entropy: β/2, since softmax's Jacobian diag(p) − ppᵀ has eigenvalues in [0, ½]) and
    ``inner_steps`` is how many projected-gradient steps the output takes per sweep (MSE: 1, which is exact)."""

    def __init__(self, cost: str, beta: float, target: torch.Tensor):
        self.cost, self.beta, self.target = cost, beta, target
        self.curvature = beta if cost == "mse" else beta / 2
        self.inner_steps = 1 if cost == "mse" else 3

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        return nudge_force(self.cost, self.beta, self.target, out)


NO_NEGATIVE_EQUILIBRIUM = (
    "EP: with the MSE cost, nudging at -β with β >= 1 has no nudged equilibrium (the output's part of "
    "F = E - βC is linear or concave: the outputs run to 0 or 1), and block settling gets there: measured on MNIST "
    "(784-100x5-10 skip p=0.04, 5,000 images, 3 epochs), random-sign β = 1 with block-settled nudged phases reached "
    "14-24 % test accuracy (10 % with 200 Euler nudged steps) where 12 Euler nudged steps reached 40 %. Use "
    "--nudging one-sided, or Gammell's truncated nudged phase: --nudged-settle euler --nudged-steps 12"
)


def unsettled(settling) -> bool:
    """Whether a settling ran to its cap with its last residual not below its tolerance (False for a fixed number
    of steps, tolerance 0, and for models whose settlings do not say)."""
    return bool(getattr(settling, "unsettled", False))


@RULES.register("ep")
class EquilibriumPropagation(Rule):
    """Equilibrium propagation: contrast of a free and a nudged equilibrium of an energy network."""

    name = "ep"
    Config = EPConfig
    requires = (ENERGY,)
    probes = (
        ProbeSpec(
            "ep_update_norm",
            "‖EP update‖ per connected layer pair",
            scale="log",
            title="EP weight-update magnitude per layer pair (vanishing learning signal?)",
        ),
        ProbeSpec("ep_free_steps", "free-phase steps", per_layer=False, title="EP: free-phase settling steps"),
        ProbeSpec(
            "ep_residual_last", "last settling residual", scale="log", per_layer=False, title="EP: residual at stop"
        ),
        ProbeSpec(
            "ep_free_unsettled", "free phase at its cap (1) or settled (0)", per_layer=False,
            title="EP: did the free phase settle?",
        ),
    )  # fmt: skip
    stochastic = True  # random-sign nudging draws a sign per batch
    nudges = True  # reads the energy net's nudged-phase options (nudged_steps, nudged_settle, nudge_after_step)
    full_precision = True  # settling and contrast in the parameters' dtype: see step
    loss_scaling = False  # its update is an energy contrast, not the gradient of a loss
    from .ep_figures import FIGURES as figures  # report figures: settling steps, update profile

    def __init__(self, loss: str = "ce", **options):
        super().__init__(loss=loss, **options)
        # Persistent states: the last free equilibrium of every training example (rows by dataset index) and
        # whether it has one yet. Grown on demand, kept in state_dict so a resumed run continues exactly.
        self.memory: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        self.eval_memory: dict[str, torch.Tensor] = {}  # persistent_eval: split -> (N_split, H) last free states
        # the model prepared, whose skip connections start_epoch may remove (in __dict__: not a submodule of the rule)
        self.__dict__["model"] = None
        self.health = SettlingHealth()  # the settling checks and the warnings they gave

    @property
    def per_example_state(self) -> bool:
        """The engine passes each batch's dataset indices to ``step`` when this is true."""
        return self.config.persistent

    @classmethod
    def describe(cls, options: dict) -> str:
        return f"{cls.name} (per-layer lr)" if options.get("layer_lr_scale") else cls.name

    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        self.check_requirements(model)
        scales = self.config.layer_lr_scale
        if scales and len(scales) != model.num_layers:
            raise ConfigError(
                f"layer_lr_scale needs one multiplier per non-input layer ({model.num_layers}); got {len(scales)}"
            )
        if self.config.remove_skip_after and not hasattr(model, "remove_skip_connections"):
            raise IncompatibleError(
                f"remove_skip_after: {type(model).__name__} has no layer-skipping connections to remove (only "
                "energy-net with --topology skip has them); leave remove_skip_after at 0"
            )
        if self.config.remove_skip_after and not model.skip_connection_count():
            raise ConfigError(
                "remove_skip_after: this net has no layer-skipping connections to remove (a layered net, or p = 0); "
                "use --topology skip with --p > 0, or leave remove_skip_after at 0"
            )
        config, block = self.config, getattr(model, "nudged_method", "euler") == "block"
        if config.cost == "mse" and config.nudging != "one-sided" and config.beta >= 1 and block:
            warnings.warn(NO_NEGATIVE_EQUILIBRIUM, RuntimeWarning, stacklevel=2)
        self.__dict__["model"] = model
        self.refuse_plain_backward(model)  # a backward through the settling would be BPTT, not EP
        return model

    def plan(self, epochs: int) -> None:
        after = self.config.remove_skip_after
        if after and after >= epochs:
            raise ConfigError(
                f"remove_skip_after {after}: the run has {epochs} epochs, so the skip connections would never be "
                f"removed; give more epochs than {after} or a smaller remove_skip_after"
            )

    def start_epoch(self, epoch: int) -> None:
        """From epoch ``remove_skip_after`` (0-based, i.e. after that many epochs) on, the prepared model trains
        without its layer-skipping connections. Idempotent, so a resumed run removes them again."""
        after = self.config.remove_skip_after
        if after and epoch >= after and self.model is not None:
            self.model.remove_skip_connections()

    def reference_loss(self, num_classes: int) -> float:
        """The chance-level value of EP's own cost (the loss it reports), not of the run's test loss."""
        zeros = torch.zeros(1, num_classes)
        return float(cost_value(self.config.cost, zeros, F.one_hot(torch.zeros(1, dtype=torch.long), num_classes)))

    def diverged(self, metrics: dict[str, float]) -> str | None:
        """The settling blew up: its last residual is not finite or above 1e3 (with clipped states it is at most 1
        by construction), so the update is meaningless whatever the loss says."""
        residual = metrics.get("settle_residual", 0.0)
        return None if residual < 1e3 else f"the free phase's settling blew up (last max |Δs| {residual:.3g})"

    def betas(self) -> list[float]:
        """The β of each nudged phase for this batch."""
        beta = self.config.beta
        if self.config.nudging == "symmetric":
            return [beta, -beta]
        if self.config.nudging == "random-sign" and torch.randint(2, ()).item():
            return [-beta]
        return [beta]

    @torch.no_grad()
    def initial_state(self, model: nn.Module, x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor | None:
        """Where the free phase starts: the example's stored equilibrium (persistent), else a feed-forward pass
        (warm_start), else zeros (None)."""
        stored = None
        if self.config.persistent and index is not None and self.memory is not None:
            index = index.to(self.memory.device)
            stored = torch.zeros_like(index, dtype=torch.bool)
            known = index < len(self.seen)  # the memory is as long as the largest index stored so far
            stored[known] = self.seen[index[known]]
        init = model.feedforward_state(x) if self.config.warm_start else None
        if stored is None or not stored.any():
            return init
        init = x.new_zeros(len(x), self.memory.shape[1]) if init is None else init
        init[stored.to(x.device)] = self.memory[index[stored]].to(x.device)
        return init

    @torch.no_grad()
    def remember(self, index: torch.Tensor, state: torch.Tensor) -> None:
        """Store the free equilibria of a batch under their dataset indices, growing the memory as needed.

        Under data parallelism every process stores the whole global batch's equilibria, so every copy of the
        memory is identical and an example starts from its state whichever process sees it next."""
        index, state = self.dist.gather(index), self.dist.gather(state)
        needed = int(index.max()) + 1
        if self.memory is None or needed > len(self.memory):
            memory = state.new_zeros(needed, state.shape[1])
            seen = torch.zeros(needed, dtype=torch.bool, device=state.device)
            if self.memory is not None:
                memory[: len(self.memory)], seen[: len(self.seen)] = self.memory, self.seen
            self.memory, self.seen = memory, seen
        index = index.to(self.memory.device)
        self.memory[index] = state.to(self.memory.device)
        self.seen[index] = True

    @torch.no_grad()
    def equilibria(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None):
        """Free equilibrium, then one nudged equilibrium per β, each settled from the free one."""
        with self.dist.stopping_together():  # data-parallel: every process stops where one on the whole batch does
            return self._equilibria(model, x, y, index)

    def _equilibria(self, model, x, y, index):
        free = model.settle(x, state=self.initial_state(model, x, index))
        if index is not None and self.config.persistent:
            self.remember(index, free.state)
        out = model.layer_slice(model.num_layers)
        target = F.one_hot(y, free.state.shape[1] - out.start).to(free.state.dtype)
        nudged = {}
        for beta in self.betas():
            force = Nudge(self.config.cost, beta, target)
            nudged[beta] = model.settle(x, state=free.state, steps=model.nudged_steps, force=force)
        return free, nudged, target

    def estimate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None):
        """The EP gradient of every parameter (scaled per layer) and the settlings it came from, in the
        parameters' dtype under autocast too (for the step and the probes alike)."""
        with torch.autocast(x.device.type, enabled=False):
            return self._estimate(model, x, y, index)

    def _estimate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None):
        free, nudged, target = self.equilibria(model, x, y, index)
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

    def step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``index``: the batch's dataset indices, which persistent states need (the engine passes them).

        Besides loss and accuracy, returns the settling's health: ``free_steps`` and ``nudged_steps`` (steps or
        sweeps used, the nudged mean over phases), ``settle_residual`` (the free phase's last max |Δs|: not finite
        or huge when the dynamics blew up), ``nudged_residual`` (the largest last residual of the nudged phases),
        ``free_unsettled`` (1 when the free phase ran to its cap above the tolerance) and ``nudged_unsettled``
        (the fraction of nudged phases that did). An unsettled phase is also warned about, once per rule.

        Under autocast the settling and the contrast run in the parameters' dtype: bf16 cannot resolve the
        settling tolerance, and the update is a small difference of two energies."""
        grads, free, nudged, target = self.estimate(model, x, y, index)
        for name, p in model.named_parameters():
            if name in grads:
                p.grad = grads[name] if p.grad is None else p.grad + grads[name]
        out = free.state[:, model.layer_slice(model.num_layers)]
        loss = cost_value(self.config.cost, out, target)
        phases = list(nudged.values())
        predicted = out.argmax(1)
        health, reading = self.health.measure(model, free, nudged, (predicted != y).sum(), self.dist)  # one host read
        if not self.probing:  # a probe's step measures the rule; it must not use up or feed the warnings
            self.health.warn(model, self.config, free, nudged, reading, main=self.dist.is_main)
        return {
            "loss": loss.detach(),
            "accuracy": (predicted == y).float().mean(),
            "free_steps": torch.tensor(float(free.steps)),
            "nudged_steps": torch.tensor(sum(s.steps for s in phases) / len(phases)),
            **health,
        }

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, split: str, offset: int, size: int | None = None):
        """The output (N, classes) at the free equilibrium of evaluation batch ``x`` (examples ``offset`` … of
        ``split``, a set of ``size`` examples): settled from zeros, or with ``persistent_eval`` from where the
        previous evaluation left them (Gammell et al.), in the parameters' dtype as the model's own forward settles.
        A split whose size changed since (another test set on resume) starts again from zeros, with a warning.

        Raises:
            ValueError: a negative ``offset``, or stored states of another width than ``model``'s (another model).
        """
        if not self.config.persistent_eval:
            return model(x)
        if offset < 0:
            raise ValueError(f"offset must be >= 0 (got {offset})")
        stored = self.eval_memory.get(split)
        if stored is not None and size is not None and len(stored) != size:
            warnings.warn(
                f"EP: persistent_eval holds {len(stored)} {split} states but the {split} set has {size} examples "
                "(another set than the one evaluated before): its evaluation starts again from zeros",
                RuntimeWarning, stacklevel=2,
            )  # fmt: skip
            stored = self.eval_memory[split] = None
        width = getattr(model, "state_width", None)
        if stored is not None and width is not None and stored.shape[1] != width:
            raise ValueError(
                f"persistent_eval holds {split} states of width {stored.shape[1]}, but this model's states have "
                f"{width} units: one rule evaluates one model"
            )
        end = offset + len(x)
        start = stored[offset:end].to(x.device) if stored is not None and len(stored) >= end else None
        with torch.autocast(x.device.type, enabled=False):
            state = model.settle(x, state=start).state
        if stored is None or len(stored) < end:  # the first evaluation: grow the split's memory
            grown = state.new_zeros(max(end, size or 0), state.shape[1])
            if stored is not None:
                grown[: len(stored)] = stored
            stored = self.eval_memory[split] = grown
        stored[offset:end] = state
        return state[:, model.layer_slice(model.num_layers)]

    def get_extra_state(self) -> dict:
        """The persistent states travel with ``state_dict()`` (their size grows with the indices seen), and the
        kinds of warning already given: "warned once" holds across a resume."""
        warned = sorted(self.health.warned)
        return {"memory": self.memory, "seen": self.seen, "eval_memory": self.eval_memory, "warned": warned}

    def set_extra_state(self, state: dict) -> None:
        self.memory, self.seen = state.get("memory"), state.get("seen")
        self.eval_memory = dict(state.get("eval_memory") or {})
        self.health.warned = set(state.get("warned", ()))

    def probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """‖ΔW‖ per connected layer pair (the vanishing-signal curves), free-phase steps and last residual."""
        grads, free, _, _ = self.estimate(model, x, y)
        metrics = {  # a removed (frozen) connection has no update: 0
            f"probe/ep_update_norm/{key}": grads[name].norm().item()
            if (name := f"connections.{key}.weight") in grads
            else 0.0
            for key in model.connections
        }
        metrics["probe/ep_free_steps"] = float(free.steps)
        metrics["probe/ep_residual_last"] = free.residuals[-1].item()
        metrics["probe/ep_free_unsettled"] = float(unsettled(free))
        return metrics
