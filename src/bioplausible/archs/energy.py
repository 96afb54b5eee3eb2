"""A layered Hopfield-like energy network for equilibrium propagation (Scellier & Bengio 2017; Gammell et al. 2020).

Layers s_0 = x (clamped input), s_1 … s_{L−1} (hidden), s_L (output); ρ(s) = clamp(s, 0, 1) (hard sigmoid).
Every connected layer pair (i < j) has one weight matrix W_ij (n_i, n_j), used in both directions (symmetric
weights), and every non-input layer a bias b_l:

    E(s) = ½ Σ_l ‖s_l‖² − Σ_{(i,j)} ρ(s_i)ᵀ W_ij ρ(s_j) − Σ_l b_lᵀ ρ(s_l)

The input enters through ρ too (s_0 = ρ(x), as in Scellier & Bengio's energy; ``input_rho``). This matters for
standardised datasets: MNIST standardised to mean 0 / std 1 has E[x²] = 1 instead of ≈ 0.11 for raw [0, 1]
pixels, so with Glorot weights the input drive of the hidden layer is 3× larger (18 % of hidden units pinned at 1
at initialisation instead of 0.6 %) and the input layer's effective learning rate (ΔW_01 ∝ x, its effect on the
drive ∝ x again) ≈ 9× larger; at Scellier's 784-500-10 settings that stalled training near 86 % test accuracy
(≈ 74.6 % vs 94 % after one epoch). ρ(x) maps any input back onto [0, 1]; ``--no-input-rho`` feeds x as given.
The free dynamics are gradient descent on E with step ε, inputs clamped:

    s ← s − ε ∂E/∂s = (1 − ε) s + ε ρ'(s) ⊙ (Σ_j W ρ(s_j) + b)      (+ ε·(−β ∂C/∂s_L) on the output when nudged)

With ``clip_states`` (the default, as in Scellier & Bengio's code) the states are projected back onto [0, 1] after
each step, so ρ(s) = s and ρ'(s) = 1 on the states: projected gradient descent, which cannot leave a unit stuck
below zero. Without it, the equation above is iterated as written (units with a negative drive then decay toward
0 geometrically, which is where denormal floats come from; settling flushes them; and at ε = 1 a unit with a
negative drive jumps between 0 and its drive forever, so keep ε < 1 there).

Topologies: ``layered`` (adjacent layers only), ``dense`` (every pair of layers), ``skip`` (Gammell et al.:
start layered, then rewire each connection with probability p into a random layer-skipping connection between
two neurons whose layers are at least two apart; the connection count is kept, new weights ~ U[−a, a]). A pair's
missing connections are zeros of a fixed binary mask.

Cost: the input's drive x·W_0l + b_l is constant while x is clamped and is computed once per settling; a step
then does one ``addmm`` per connected non-input pair and direction, accumulated per layer, plus a few elementwise
operations on the concatenated state (N, H). The rewired layer-skipping pairs between hidden layers hold a few
percent of their matrix's entries, so they are not multiplied as matrices: their connections, both directions,
form one list (source unit, target unit, w), and a step gathers ρ of the sources, multiplies by w and scatter-adds
into the targets (``index_select``, ``mul_``, ``index_add_``): one multiply-add per connection present. So the
cost grows with the adjacent pairs and the skip connections present, never with a dense N × N matrix. (One fused
product with a block matrix over all non-input units was measured slower: at 784-100×5-10, batch 20, it does 3×
the arithmetic, which outweighs the saved per-operation overhead.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import option
from ..errors import ConfigError
from ..registry import ARCHS

TOPOLOGIES = ("layered", "skip", "dense")


@dataclass
class EnergyNetConfig:
    hidden_sizes: tuple[int, ...] = option((500,), "sizes of the hidden layers, e.g. 500,500,500")
    topology: str = option("layered", "which layer pairs are connected", choices=TOPOLOGIES)
    p: float = option(0.1, "skip topology: probability of rewiring each connection into a layer-skipping one")
    a: float = option(0.0, "skip topology: new connections ~ U[-a, a] (0: the Glorot bound of their layer pair)")
    epsilon: float = option(0.5, "step size ε of the settling dynamics")
    free_steps: int = option(100, "most settling steps of the free phase")
    nudged_steps: int = option(20, "most settling steps of each nudged phase")
    tolerance: float = option(1e-4, "settling stops once the largest state change of a step is below this (0: never)")
    clip_states: bool = option(True, "project the states onto [0, 1] after each step (Scellier & Bengio's code)")
    rewire_seed: int = option(0, "seed of the skip rewiring (the run's --seed draws the weights)")
    input_rho: bool = option(True, "feed the input through ρ (clamp to [0, 1]) as in Scellier & Bengio's energy")

    def validate(self) -> None:
        h = self.hidden_sizes
        self.hidden_sizes = (h,) if isinstance(h, int) else tuple(int(n) for n in h)
        checks = [
            (
                len(self.hidden_sizes) >= 1 and all(n >= 1 for n in self.hidden_sizes),
                f"hidden_sizes must be >= 1 (got {self.hidden_sizes})",
            ),
            (self.topology in TOPOLOGIES, f"topology must be one of {', '.join(TOPOLOGIES)} (got {self.topology!r})"),
            (0.0 <= self.p <= 1.0, f"p must be in [0, 1] (got {self.p})"),
            (self.a >= 0.0, f"a must be >= 0 (got {self.a})"),
            (self.epsilon > 0.0, f"epsilon must be > 0 (got {self.epsilon})"),
            (self.free_steps >= 1 and self.nudged_steps >= 1, "free_steps and nudged_steps must be >= 1"),
            (self.tolerance >= 0.0, f"tolerance must be >= 0 (got {self.tolerance})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


class Settling(NamedTuple):
    """The result of one settling: states (N, H) of the non-input units, steps used, max |Δs| per step."""

    state: torch.Tensor
    steps: int
    residuals: torch.Tensor


class Connection(nn.Module):
    """Symmetric weights W (n_lower, n_upper) between two layers; ``mask`` marks the connections that exist.

    ``sparse``: the few connections of a rewired layer-skipping pair; settling then touches only those (their
    (row, column) positions are kept in ``where``) instead of multiplying by the mostly-zero matrix."""

    def __init__(
        self, lower: int, upper: int, weight: torch.Tensor, mask: torch.Tensor | None = None, sparse: bool = False
    ):
        super().__init__()
        self.lower, self.upper = lower, upper
        self.weight = nn.Parameter(weight if mask is None else weight * mask)
        self.register_buffer("mask", mask)
        self.sparse = sparse and mask is not None
        self.register_buffer("where", mask.nonzero().t().contiguous() if self.sparse else None, persistent=False)

    def effective(self) -> torch.Tensor:
        """W with the missing connections zeroed (their gradient is then zero too)."""
        return self.weight if self.mask is None else self.weight * self.mask

    def count(self) -> int:
        """Number of connections present."""
        return self.weight.numel() if self.mask is None else int(self.mask.sum().item())

    def extra_repr(self) -> str:
        return f"{self.lower}-{self.upper}, {tuple(self.weight.shape)}, connections={self.count()}"


def glorot_bound(n_i: int, n_j: int) -> float:
    return math.sqrt(6.0 / (n_i + n_j))


def rewire(sizes: list[int], p: float, generator: torch.Generator) -> dict[tuple[int, int], torch.Tensor]:
    """Gammell et al.'s small-world rewiring: masks per layer pair, same total connection count as layered.

    Each adjacent-layer connection is removed with probability p; as many new connections are drawn uniformly,
    without repetition, among all neuron pairs whose layers are at least two apart.
    """
    masks = {}
    removed = 0
    for i in range(len(sizes) - 1):
        keep = torch.rand(sizes[i], sizes[i + 1], generator=generator) >= p
        masks[(i, i + 1)] = keep.float()
        removed += keep.numel() - int(keep.sum())
    skip_pairs = [(i, j) for i in range(len(sizes)) for j in range(i + 2, len(sizes))]
    capacity = [sizes[i] * sizes[j] for i, j in skip_pairs]
    if removed > sum(capacity):
        raise ConfigError(f"p={p} rewires {removed} connections but only {sum(capacity)} layer-skipping ones exist")
    chosen = torch.randperm(sum(capacity), generator=generator)[:removed]
    start = 0
    for (i, j), cap in zip(skip_pairs, capacity):
        picked = chosen[(chosen >= start) & (chosen < start + cap)] - start
        start += cap
        if len(picked):
            mask = torch.zeros(sizes[i] * sizes[j])
            mask[picked] = 1.0
            masks[(i, j)] = mask.view(sizes[i], sizes[j])
    return masks


@ARCHS.register("energy-net")
class EnergyNet(nn.Module):
    """Layered (optionally skip- or densely connected) Hopfield-like network; ``forward`` settles the free phase."""

    Config = EnergyNetConfig
    provides = ("energy",)
    from .energy_figures import FIGURES as figures  # report figure: test error against p

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden_sizes: tuple[int, ...] = (500,),
        topology: str = "layered",
        p: float = 0.1,
        a: float = 0.0,
        epsilon: float = 0.5,
        free_steps: int = 100,
        nudged_steps: int = 20,
        tolerance: float = 1e-4,
        clip_states: bool = True,
        rewire_seed: int = 0,
        input_rho: bool = True,
    ):
        super().__init__()
        config = EnergyNetConfig(hidden_sizes, topology, p, a, epsilon, free_steps, nudged_steps, tolerance)
        config.validate()
        self.sizes = [math.prod(input_shape), *config.hidden_sizes, num_classes]
        self.epsilon, self.tolerance, self.clip_states = epsilon, tolerance, clip_states
        self.input_rho = input_rho
        self.free_steps, self.nudged_steps = free_steps, nudged_steps
        self.offsets = [0]  # non-input layer l occupies columns offsets[l-1]:offsets[l] of the state
        for n in self.sizes[1:]:
            self.offsets.append(self.offsets[-1] + n)
        self.connections = nn.ModuleDict()
        for (i, j), mask in self._masks(topology, p, rewire_seed).items():
            n_i, n_j = self.sizes[i], self.sizes[j]
            bound = glorot_bound(n_i, n_j) if j == i + 1 or topology == "dense" or not a else a
            weight = torch.empty(n_i, n_j).uniform_(-bound, bound)
            sparse = topology == "skip" and j >= i + 2 and i > 0  # the input's drive is computed once anyway
            self.connections[f"{i}-{j}"] = Connection(i, j, weight, mask, sparse)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in self.sizes[1:])

    def _masks(self, topology: str, p: float, seed: int) -> dict[tuple[int, int], torch.Tensor | None]:
        layers = range(len(self.sizes))
        if topology == "dense":
            return {(i, j): None for i in layers for j in layers if j > i}
        if topology == "layered" or p == 0:
            return {(i, i + 1): None for i in layers[:-1]}
        # Not manual_seed(seed) itself: with rewire_seed == --seed (both 0 by default) the mask generator would
        # replay the weights' own random stream, so the removed connections would be exactly the most negative
        # weights (u < p ⇔ w < −(1 − 2p)·bound): every kept pair matrix then has a positive mean and the net
        # settles into all units on. A seed sequence keyed to the rewiring makes the two streams independent.
        mixed = int(np.random.SeedSequence([seed, 0x726577]).generate_state(1)[0])
        return rewire(self.sizes, p, torch.Generator().manual_seed(mixed))

    @property
    def num_layers(self) -> int:
        """Number of non-input layers (hidden + output)."""
        return len(self.sizes) - 1

    def layer_slice(self, layer: int) -> slice:
        """Columns of the state (N, H) that hold non-input layer ``layer`` (1 … L)."""
        return slice(self.offsets[layer - 1], self.offsets[layer])

    def parameter_layers(self) -> dict[str, int]:
        """The layer each parameter belongs to, for per-layer learning rates: a pair's upper layer, a bias's own."""
        layers = {f"connections.{k}.weight": c.upper for k, c in self.connections.items()}
        layers.update({f"biases.{l - 1}": l for l in range(1, len(self.sizes))})
        return layers

    def connection_count(self) -> int:
        return sum(c.count() for c in self.connections.values())

    def couplings(
        self, sparse: bool = False
    ) -> tuple[list[list[torch.Tensor]], list[list[tuple[int, torch.Tensor]]], tuple | None]:
        """Per non-input layer l (index l − 1): the input's matrices into it, and [(k, W (n_k, n_l))] for each
        connected non-input layer k (W or Wᵀ views of the masked pair matrices, built once per settling).

        With ``sparse``, the sparse (layer-skipping) pairs are left out of those lists and returned as one list of
        single connections over the concatenated state, both directions: (source columns, target columns,
        weights), so that a step adds Σ w·ρ(s_source) to each target unit at a cost of one multiply-add per
        connection; None when there are none."""
        inputs: list[list[torch.Tensor]] = [[] for _ in self.sizes[1:]]
        neighbours: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.sizes[1:]]
        sources, targets, weights = [], [], []
        for c in self.connections.values():
            if sparse and c.sparse:
                rows, cols = c.where
                lower = rows + self.offsets[c.lower - 1]
                upper = cols + self.offsets[c.upper - 1]
                w = c.weight[rows, cols]
                sources += [lower, upper]
                targets += [upper, lower]
                weights += [w, w]
                continue
            w = c.effective()  # (n_lower, n_upper)
            if c.lower == 0:
                inputs[c.upper - 1].append(w)
            else:
                neighbours[c.upper - 1].append((c.lower, w))
                neighbours[c.lower - 1].append((c.upper, w.t()))
        links = (torch.cat(sources), torch.cat(targets), torch.cat(weights)) if weights else None
        return inputs, neighbours, links

    def input_state(self, x: torch.Tensor) -> torch.Tensor:
        """s_0 = ρ(x) flattened (N, n_0); x as given without ``input_rho``."""
        x = x.flatten(1)
        return x.clamp(0, 1) if self.input_rho else x

    def input_drive(self, x: torch.Tensor, inputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """b_l + Σ x W_0l per non-input layer [(N, n_l)]: constant while the input is clamped."""
        x = self.input_state(x).to(self.biases[0].dtype)
        drive = []
        for b, ws in zip(self.biases, inputs):
            d = b.expand(len(x), -1)
            for w in ws:
                d = torch.addmm(d, x, w)
            drive.append(d)
        return drive

    def split(self, state: torch.Tensor) -> list[torch.Tensor]:
        """(N, H) → the non-input layers' states [(N, n_1), …, (N, n_L)]."""
        return [state[:, self.layer_slice(l)] for l in range(1, len(self.sizes))]

    def energy(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """E(s) per sample (N,), with s_0 = x; differentiable in the parameters (and in ``state``)."""
        rho = [self.input_state(x), *(s.clamp(0, 1) for s in self.split(state))]
        e = 0.5 * state.pow(2).sum(1)
        for l, b in enumerate(self.biases, start=1):
            e = e - rho[l] @ b
        for c in self.connections.values():
            e = e - ((rho[c.lower] @ c.effective()) * rho[c.upper]).sum(1)
        return e

    def feedforward_state(self, x: torch.Tensor) -> torch.Tensor:
        """A bottom-up pass through the same weights (each layer driven by the layers below only): a warm start."""
        inputs, neighbours, _ = self.couplings()
        layers = []
        for d, terms in zip(self.input_drive(x, inputs), neighbours):
            for k, w in terms:
                if k <= len(layers):
                    d = torch.addmm(d, layers[k - 1], w)
            layers.append(d.clamp(0, 1))
        return torch.cat(layers, 1)

    def settle(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        steps: int | None = None,
        force: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tolerance: float | None = None,
    ) -> Settling:
        """Run the dynamics from ``state`` (zeros if None) for at most ``steps`` (default: free_steps) steps.

        Args:
            x: the clamped input (N, …).
            force: the nudging term −β ∂C/∂s_L as a function of the output state (N, n_L); None: free phase.
            tolerance: stop once max |Δs| < tolerance (default: the network's; 0 runs every step).

        Differentiable when autograd is on (backprop through time); the engine evaluates under no_grad.
        """
        torch.set_flush_denormal(True)  # states decaying toward 0 would otherwise turn denormal and slow 50×
        inputs, neighbours, links = self.couplings(sparse=True)
        drive = self.input_drive(x, inputs)  # [(N, n_l)]
        s = drive[0].new_zeros(len(drive[0]), self.offsets[-1]) if state is None else state  # (N, H)
        steps = self.free_steps if steps is None else steps
        tolerance = self.tolerance if tolerance is None else tolerance
        fast = self.clip_states and not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))
        run = self._steps_in_place if fast else self._steps
        s, residuals = run(drive, neighbours, links, s, steps, force, tolerance)
        return Settling(s, len(residuals), torch.stack(residuals))

    def _steps(self, drive, neighbours, links, s, steps, force, tolerance) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The dynamics, out of place (differentiable: backprop through time works through it)."""
        out, last, eps = self.layer_slice(self.num_layers), self.num_layers - 1, self.epsilon
        residuals = []
        for _ in range(steps):
            rho_all = s if self.clip_states else s.clamp(0, 1)
            rho = rho_all.split(self.sizes[1:], 1)
            g = []  # Σ_j W ρ(s_j) + b per layer: a chain of addmm, one per connected pair and direction
            for l, (d, terms) in enumerate(zip(drive, neighbours)):
                for k, w in terms:
                    d = torch.addmm(d, rho[k - 1], w)
                if force is not None and l == last:
                    d = d + force(s[:, out])
                g.append(d)
            g = torch.cat(g, 1)  # (N, H)
            if links is not None:
                source, target, w = links
                g = g.index_add(1, target, rho_all[:, source] * w)
            if self.clip_states:
                new = torch.lerp(s, g, eps).clamp(0, 1)  # (1 − ε) s + ε g, projected onto [0, 1]
            else:
                new = (1 - eps) * s + eps * ((s >= 0) & (s <= 1)) * g
            residual = (new - s).detach().abs().amax()
            residuals.append(residual)
            s = new
            if tolerance > 0 and residual.item() < tolerance:
                break
        return s, residuals

    @torch.no_grad()
    def _steps_in_place(
        self, drive, neighbours, links, s, steps, force, tolerance
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The same projected dynamics without autograd, in preallocated buffers: per-operation overhead dominates
        small batches, so each step is the pair products (accumulated in place into views of one buffer) plus four
        elementwise operations."""
        drive = torch.cat(drive, 1).detach()  # (N, H)
        neighbours = [[(k, w.detach()) for k, w in terms] for terms in neighbours]
        s, new, g, diff = s.detach().clone(), torch.empty_like(drive), torch.empty_like(drive), torch.empty_like(drive)
        cols = [self.layer_slice(l) for l in range(1, len(self.sizes))]
        views = {id(t): [t[:, c] for c in cols] for t in (s, new, drive, g)}
        out, eps = cols[-1], self.epsilon
        if links is not None:
            source, target, link_w = (t.detach() for t in links)
            picked = drive.new_empty(len(drive), len(link_w))  # ρ of each connection's source unit, then times w
        residuals = []
        for _ in range(steps):
            rho = views[id(s)]  # ρ(s) = s: the states stay in [0, 1]
            for l, terms in enumerate(neighbours):
                g_l = views[id(g)][l]
                if terms:
                    (k, w), *rest = terms
                    torch.addmm(views[id(drive)][l], rho[k - 1], w, out=g_l)
                    for k, w in rest:
                        g_l.addmm_(rho[k - 1], w)
                else:
                    g_l.copy_(views[id(drive)][l])
            if links is not None:
                torch.index_select(s, 1, source, out=picked).mul_(link_w)
                g.index_add_(1, target, picked)
            if force is not None:
                views[id(g)][-1].add_(force(s[:, out]))
            torch.lerp(s, g, eps, out=new).clamp_(0, 1)  # (1 − ε) s + ε g, projected onto [0, 1]
            residual = torch.sub(new, s, out=diff).abs_().amax()
            residuals.append(residual)
            s, new = new, s
            if tolerance > 0 and residual.item() < tolerance:
                break
        return s, residuals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's state (N, classes) at the free fixed point, settled from zero (in the parameters'
        dtype even under autocast: a bf16 state cannot resolve a settling tolerance of 1e-4)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.settle(x).state[:, self.layer_slice(len(self.sizes) - 1)]
