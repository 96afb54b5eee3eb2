"""The settling health of an equilibrium-propagation step: what it measures, and the warnings it gives.

The EP update is the loss gradient only between equilibria, and only while the nudging can move the network. Each
step measures, on the device, and reads to the host in one transfer (each read is a synchronisation, which a GPU
pays at every batch; under data parallelism the maxima over all processes, so every process judges as one process
on the whole batch would):

- the last max |Δs| of the free phase and of each nudged phase (``settle_residual``, ``nudged_residual``; with a
  tolerance, a phase that ran to its cap above it counts in ``free_unsettled`` / ``nudged_unsettled``);
- ``nudged_shift``: the largest |s_β − s_free| over the network's layers (a linear readout's ŷ included, the
  nudging force it stores beside ŷ not; the output left out under ``nudge_after_step``, which sets it).

A dead network is one the nudging no longer reaches: every unit it would move is clipped at 0 or 1, so the nudged
phases move nothing (beyond float rounding, or drift below the settling tolerance) and the update of the layers is
zero for good, typically after too large a step. Conv EP on CIFAR-10 showed both kinds: every output unit at 0 for
every image (the output inside the energy), and convolutions whose states still depend on the image but which the
nudging no longer moves, where only a linear readout learns (one-sided nudging with the softmax readout). Judged on
``nudged_shift`` ≤ max(``STALLED_SHIFT``, 2 × tolerance) over ``DEAD_BATCHES`` batches in a row, and at least
``DEAD_EXAMPLES`` examples, among batches with an example the free phase gets wrong (a batch the net gets all right
may be fitted to the bounds, with nothing the nudging can move, under MSE and cross-entropy alike) and a phase
nudged by +β (random-sign's lone −β phase pushes outputs clipped at 0 further down, which moves nothing in a live
net: on Gammell's 784-500×3-10 recipe 12 of the first 100 batches stalled, every one a −β batch, while every +β
batch moved the net). With β so small that the nudge moves units less than that floor, the update is lost under
the settling error all the same: a separate warning, judged on every batch, names β (and a truncated Euler nudged
phase's steps and ε) when the nudge is no larger than the settling error (twice the largest of 1e-5, the tolerance
and the free phase's last distance to its fixed point); the update is then that error divided by β, not zero, and a
net so nudged is never called dead.

Warnings (each kind once per rule): a blown-up free phase (non-finite or huge residual); a free phase that
ran to its cap above the tolerance, or, with tolerance 0, that is still far from an equilibrium after its steps (a
distance to the fixed point ≥ ``FAR_FROM_EQUILIBRIUM``, the last max |Δs| over ε for Euler steps: the states
oscillate, as a synchronous conv settling does once its couplings grow); a nudged phase at its cap; a nudge too
weak for the settling error; a dead network.
Each names what to change, among the options the model has.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

#: A free phase at tolerance 0 whose last step still moved a unit this much is reported as far from equilibrium.
FAR_FROM_EQUILIBRIUM = 0.1
#: Batches in a row (and examples in them) whose nudged phases moved nothing before a network is called dead.
DEAD_BATCHES = 10
DEAD_EXAMPLES = 200
#: A nudged shift at most this (or twice the settling tolerance) counts as no move: float rounding of unreached
#: units is ~1e-7 in float32.
STALLED_SHIFT = 1e-5


@dataclass
class Reading:
    """One step's health on the host."""

    free_residual: float
    nudged_residuals: list[float]
    shift: float
    wrong: float  # examples of the batch the free phase gets wrong
    examples: int


def stopped(settling, last: float) -> bool:
    """Whether a settling ran to its cap with its last residual (already on the host) not below its tolerance."""
    tolerance = getattr(settling, "tolerance", 0.0)
    return tolerance > 0 and not last < tolerance


def layer_columns(model: nn.Module) -> list[slice]:
    """The state's columns that hold the layers 1 … num_layers, adjacent layers merged (one slice for the energy
    net; two with a linear readout, whose stored nudging force lies between s_L and ŷ): fewer passes a step. With
    ``nudge_after_step`` the output is left out (the nudge sets it whatever the net does: a net dead below it would
    look alive), unless it is the only layer."""
    merged: list[slice] = []
    last = model.num_layers - 1 if getattr(model, "nudge_after_step", False) and model.num_layers > 1 else None
    for l in range(1, (last or model.num_layers) + 1):
        c = model.layer_slice(l)
        if merged and merged[-1].stop == c.start:
            merged[-1] = slice(merged[-1].start, c.stop)
        else:
            merged.append(c)
    return merged


def listed(remedies: list[str]) -> str:
    return ", ".join(remedies[:-1]) + (" or " if len(remedies) > 1 else "") + remedies[-1]


class SettlingHealth:
    """Measures a step's settlings and warns once per kind; one per ``ep`` rule instance. Only the main process
    warns (every process reads the same maxima)."""

    def __init__(self):
        self.warned: set[str] = set()
        self.stalled_batches = 0  # batches in a row whose nudged phases moved nothing
        self.stalled_examples = 0

    def measure(self, model: nn.Module, free, nudged: dict, wrong, dist) -> tuple[dict[str, torch.Tensor], Reading]:
        """The step's health metrics (tensors) and their host reading (one transfer; the maxima over the
        processes of ``dist``). ``nudged``: the nudged settlings by β; ``wrong``: the free phase's errors."""
        phases = list(nudged.values())
        columns = layer_columns(model)
        shift = torch.stack([(s.state[:, c] - free.state[:, c]).abs().amax() for s in phases for c in columns]).amax()
        lasts = [free.residuals[-1], *(s.residuals[-1] for s in phases)]
        values = torch.stack([t.detach().double() for t in (*lasts, shift, wrong)])
        values = dist.maximum(values).tolist()
        reading = Reading(values[0], values[1 : len(lasts)], values[-2], values[-1], len(free.state))
        metrics = {
            "settle_residual": free.residuals[-1].detach(),
            "nudged_residual": torch.stack([s.residuals[-1] for s in phases]).amax().detach(),
            "free_unsettled": torch.tensor(float(stopped(free, reading.free_residual))),
            "nudged_unsettled": torch.tensor(
                sum(stopped(s, r) for s, r in zip(phases, reading.nudged_residuals)) / len(phases)
            ),
            "nudged_shift": shift.detach(),
        }
        return metrics, reading

    def warn(self, model: nn.Module, config, free, nudged: dict, reading: Reading, main: bool = True) -> None:
        """Every warning this step calls for (each kind once per rule; said by the main process only)."""
        say = self._once if main else (lambda kind, message: self.warned.add(kind))
        if not reading.free_residual < 1e3:  # also nan and inf; the caps below would then say nothing useful
            say("diverged", self._diverged(model, reading.free_residual))
            return
        distance, unsettled = self._settling(model, config, free, nudged, reading, say)
        self._nudging(model, config, free, nudged, reading, say, distance, unsettled)

    def _settling(self, model, config, free, nudged, reading, say) -> tuple[float, bool]:
        """The cap and far-from-equilibrium warnings; the free phase's distance to its fixed point, and whether it
        was warned about (capped, or far from an equilibrium)."""
        distance = fixed_point_distance(model, reading.free_residual)
        capped = stopped(free, reading.free_residual)
        far = not capped and free.tolerance <= 0 and distance >= FAR_FROM_EQUILIBRIUM
        if capped:
            say("free", self._free_capped(model, config, free, reading.free_residual))
        elif far:
            say("far", self._far(model, free, reading.free_residual))
        for (beta, phase), residual in zip(nudged.items(), reading.nudged_residuals):
            if stopped(phase, residual):
                say("nudged", self._nudged_capped(model, config, beta, phase, residual))
        return distance, capped or far

    def _nudging(self, model, config, free, nudged, reading, say, distance: float, unsettled: bool) -> None:
        """The weak-nudge and dead-network warnings."""
        floor = max(STALLED_SHIFT, 2 * free.tolerance)
        noise = 2 * max(STALLED_SHIFT, free.tolerance, distance)
        reach = nudge_reach(model, config)
        if reach <= noise and not unsettled:  # lost in the settling error: the update is that error over β
            say("weak", self._weak(model, config, noise))
        # Skipped, neither counted nor resetting the count: a batch the net gets all right (it may have nothing to
        # nudge), and random-sign's lone −β phase (it pushes outputs clipped at 0 further down, which moves nothing
        # in a live net: 12 of the first 100 batches of Gammell's 784-500×3-10 recipe)
        if reading.wrong > 0 and any(beta > 0 for beta in nudged):
            stalled = reading.shift <= floor
            self.stalled_batches = self.stalled_batches + 1 if stalled else 0
            self.stalled_examples = self.stalled_examples + reading.examples if stalled else 0
        dead = self.stalled_batches >= DEAD_BATCHES and self.stalled_examples >= DEAD_EXAMPLES
        if dead and reach > floor:  # a nudge below the floor stalls any net: the weak warning's case, not death
            say("dead", self._dead(model, floor, reading.shift))

    def _once(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=5)  # past _settling/_nudging, warn and the rule's step

    @staticmethod
    def _diverged(model: nn.Module, residual: float) -> str:
        what = "produced non-finite states" if not math.isfinite(residual) else "blew up"
        euler = getattr(model, "method", None) == "euler"
        remedies = ["use --settle block", "a smaller --epsilon"] if euler else []
        remedies += ["use --clip-states"] if euler and getattr(model, "clip_states", True) is False else []
        remedies += ["use a smaller learning rate and check the inputs for nan or inf"]
        return f"EP: the free phase's settling {what} (last max |Δs| = {residual:.3g}): {listed(remedies)}"

    @staticmethod
    def _order_remedies(model: nn.Module) -> list[str]:
        """Settling changes that damp an oscillation, among the options this model has and does not already use."""
        remedies = ["use --settle block"] if getattr(model, "method", None) == "euler" else []
        remedies += ["use --clip-states"] if getattr(model, "clip_states", True) is False else []
        remedies += ["use --settle-order alternating"] if getattr(model, "settle_order", None) == "synchronous" else []
        return remedies

    def _free_capped(self, model: nn.Module, config, free, residual: float) -> str:
        remedies = ["raise --free-steps", *self._order_remedies(model)]
        remedies += [] if config.persistent else ["start from the last states (--persistent)"]
        return (
            f"EP: a free phase stopped at its cap of {free.steps} {_unit(getattr(model, 'method', None))} with max "
            f"|Δs| = {residual:.2g}, not below the tolerance {free.tolerance:g}; the EP update is then not the loss "
            f"gradient: {listed(remedies)} (metric train/free_unsettled counts such phases; warned once)"
        )

    def _far(self, model: nn.Module, free, residual: float) -> str:
        euler = getattr(model, "method", None) == "euler"
        steps = "raise --free-steps or --epsilon (their product is how far the states can travel)" if euler else ""
        remedies = [*self._order_remedies(model), steps or "raise --free-steps", "use a smaller learning rate"]
        moved = f"{residual:.2g}"
        if euler:  # an Euler step moves ε of the way to the drive
            distance = fixed_point_distance(model, residual)
            moved += f" (about {distance:.2g} from the fixed point: Δs / ε, ε = {model.epsilon:g})"
        return (
            f"EP: after its {free.steps} free {_unit(getattr(model, 'method', None))} (tolerance 0: a fixed number) "
            f"the states still moved by {moved} in the last one: far from an equilibrium (they oscillate or "
            f"drift), so the update is not the contrast of two equilibria: {listed(remedies)} (metric "
            "train/settle_residual; warned once)"
        )

    @staticmethod
    def _nudged_capped(model: nn.Module, config, beta: float, phase, residual: float) -> str:
        method = getattr(model, "nudged_method", None)
        stop = (
            f"EP: a nudged phase (β = {beta:g}) stopped at its cap of {phase.steps} {_unit(method)} with max |Δs| = "
            f"{residual:.2g}, not below the tolerance {phase.tolerance:g}; the update is then the "
            "truncated-nudged-phase estimate (as with Scellier & Bengio's 4 and Gammell's 12 steps), not the contrast "
            "of two equilibria"
        )
        truncated = config.cost == "mse" and config.nudging != "one-sided" and config.beta >= 1
        if truncated and method is not None:  # Gammell's recipe on the energy net (its output inside the energy)
            advice = (
                "expected with this recipe: with the MSE cost at β <= -1 the outputs run to 0 or 1 instead of "
                "settling, and Gammell's truncated phases are what learns (block-settled nudged phases measured "
                "worse, see the ep rule's docs)"
            )
        else:
            advice = "to settle it raise --nudged-steps"
            block = method == "euler" and not getattr(model, "nudge_after_step", False)  # which needs Euler
            advice += " or use --nudged-settle block" if block else ""
        return f"{stop}: {advice} (metric train/nudged_unsettled counts such phases; warned once)"

    @staticmethod
    def _weak(model: nn.Module, config, noise: float) -> str:
        euler = getattr(model, "nudged_method", None) == "euler"
        knobs = f"β = {config.beta:g}"
        knobs += f" over {model.nudged_steps} nudged steps of ε = {model.epsilon:g}" if euler else ""
        remedies = ["raise --beta"] + (["raise --nudged-steps"] if euler else [])
        remedies += ["settle the free phase further (a lower --tolerance or more --free-steps)"]
        return (
            f"EP: {knobs} moves a unit by about {nudge_reach(model, config):.1g}, no more than the settling error "
            f"(~{noise / 2:.1g}: the tolerance, or the free phase's last move), so the update is mostly that error "
            f"divided by β, not the loss gradient: {listed(remedies)} (metric train/nudged_shift; warned once)"
        )

    @staticmethod
    def _dead(model: nn.Module, floor: float, shift: float) -> str:
        readout = " (only the linear readout still learns)" if getattr(model, "readout", None) == "linear" else ""
        return (
            f"EP: for {DEAD_BATCHES} batches in a row with errors to correct the nudged phases moved no unit by more "
            f"than {floor:.0e} (max |s_β − s_free| = {shift:.2g}), so the layers' update is zero{readout}: every "
            "unit the nudging would move sits where ρ is flat (at or beyond 0 or 1), a dead network, typically after "
            "too large a step: lower --lr and start again. Metric train/nudged_shift; warned once"
        )


def fixed_point_distance(model: nn.Module, residual: float) -> float:
    """About how far the states are from the settling's fixed point, given its last max |Δs|: a sweep moves them
    all the way; an Euler step ε of the way to the drive g (Δs = ε (g − s) inside the bounds), so Δs / ε, at most
    1 since the states lie in [0, 1]. (An estimate: a unit whose drive lies beyond a bound is nearer its fixed point
    at that bound than Δs / ε says.)"""
    return min(residual / model.epsilon, 1.0) if getattr(model, "method", None) == "euler" else residual


def nudge_reach(model: nn.Module, config) -> float:
    """About how far a nudged phase moves an output unit from the free state: β |∂C/∂ŷ|, with |∂C/∂ŷ| ≲ 1 for the
    MSE and cross-entropy costs, and an Euler phase of n steps goes 1 − (1 − ε)^n of that way (an order of
    magnitude, not a bound: the couplings may carry a unit further)."""
    if getattr(model, "nudged_method", None) == "euler":
        after = 2 if getattr(model, "nudge_after_step", False) else 1  # moved by 2ε F a step
        return after * config.beta * (1 - (1 - model.epsilon) ** model.nudged_steps)
    return config.beta


def _unit(method: str | None) -> str:
    return "steps" if method == "euler" else "sweeps"
