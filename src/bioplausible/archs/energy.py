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
0 geometrically, which is where denormal floats come from; settling flushes them, inside the settling only). ε is
bounded: measured on digits 64-4-10, 64-32-32-10 and MNIST 784-100×5-10 nets, with clipping every ε ≤ 1 settles
and every ε > 1 makes units flip between 0 and 1 forever (residual 1); without clipping units with a drive beyond
0 or 1 chatter around the kink of ρ (residual ≈ ε·drive, 0.7–3.7 after 3,000 steps at ε = 0.5–1, never settled),
at ε = 1 a unit with a negative drive jumps between 0 and its drive, and beyond ε = 2 the states explode (the
factor 1 − ε of a saturated unit exceeds 1 in size). So ε ∈ (0, 1] with clipping, (0, 1) without.

Block settling (``settle="block"``, the default) solves each layer exactly instead. With its neighbours held
fixed, E is separable in the units of layer l: ½ s² − s·g per unit, g = b_l + Σ_j W ρ(s_j) (ρ(s_j) = s_j in
[0, 1]), so the minimiser over [0, 1] is clip(g, 0, 1) (also without ``clip_states``: a unit outside [0, 1] only
adds ½ s², so the minimiser over ℝ is the same). Layers that are not joined can be set together; a sweep goes
through classes of mutually unjoined layers (``colour_classes``): on layered nets all odd layers from the even
ones, then all even ones; on skip or dense nets, where layers of one parity are joined, one layer after another
(Gauss–Seidel). Each is over-relaxed by ω (projected SOR): s_l ← clip((1 − ω) s_l + ω g, 0, 1). Per unit this
moves along a parabola symmetric about g, so any ω ∈ (0, 2) lowers E at every class update and the sweeps
descend E like the Euler steps do, with the same fixed points: s = clip(g(s)) ⇔ s = clip((1 − ε) s + ε g(s)).
The variant clip((1 − ω) s + ω clip(g)) is identical for ω ≥ 1 (an overshoot past 0 or 1 is clipped back either
way) and only slower below 1, so the simpler form is used. The measured ω: see ``OMEGA``; on 784-100×5-10
layered nets at initialisation (4 seeds, 2 batches of 20 MNIST images each), from zero to 1e-4: Euler ε = 0.5
1,052–2,327 steps (one batch per seed), block ω = 1 median 380 / most 593 sweeps, ω = 1.7 median 77 / most 160.
A "step" of block settling is one full sweep: every layer updated once, each connected pair multiplied once per
direction, the products of one Euler step. In a nudged phase the output's part of F = E + βC is not a linear drive
(for MSE: ½(1 + β)‖s_L‖² − …; cross-entropy has no closed form), so the output takes projected-gradient steps on it
with step ω / (1 + κ), κ a bound on β ∂²C/∂s_L² the force supplies (``_output_step``): for MSE that is exactly the
over-relaxed minimiser clip(s + ω((g + βy)/(1 + β) − s)). ``nudged_settle`` picks the nudged phases' method apart
from the free phase's (``euler`` with a few steps is the published truncated nudged phase, see the ``ep`` rule).
``nudge_after_step`` steps such Euler nudged phases as Gammell et al.'s code does (jgammell/equilibrium_propagation,
``framework/eqp.py``, ``step_weakly_clamped``): the free step s + ε(g − s), then the output moved by 2ε F(s_L) at
that point, F the nudging force −β ∂C/∂s_L, then one projection onto [0, 1]. At ε = 0.5 and β = 1 under MSE the +β
phase sets the outputs to the target whatever drives them, where a force inside the step cannot unclip an output
driven far beyond 0 or 1 (the 784-500×3-10 net died so at their rate, results/mnist-ep-gammell-500x3). At small β
the nudge acts as a force of about 2β (2β / (1 − 2εβ) at the fixed point) and leaves pinned outputs pinned, so EP
with this step estimates twice the loss gradient (the update divides by β, tests/test_ep.py); projecting before
the nudge instead would lift pinned outputs by 2εβ, a bias that does not vanish as β → 0.
The starting state is projected onto [0, 1] first (every equilibrium lies there). Energy functions with several
minima may settle elsewhere than under Euler dynamics from the same start; the EP update needs only that the
nudged phase starts from the free equilibrium found, and both methods' equilibria are fixed points of both maps.

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
the arithmetic, which outweighs the saved per-operation overhead.) A block sweep does the same products; its state
is held with the layers reordered class by class so that a class is relaxed by one ``lerp_`` and one ``clamp_``,
and the skip links into a class are gathered and scattered when that class is updated (so a skip net, one layer
per class, pays the index operations once per layer where Euler pays them once per step).

Host synchronisations: each tolerance test reads the residual on the host, which on a GPU stalls a launch-bound
loop (at batch 20 a sweep is some 30 kernels of a few microseconds). ``check_every`` = K tests it every K steps or
sweeps only; the free phase's block sweeps then run K at a time from buffers kept between settlings
(``_KeptSweeps``, one set per batch size and structure), which on CUDA are captured once as a CUDA graph and
replayed. The arithmetic is that of the eager sweeps (bit for bit on the CPU); a settling stops at a multiple of K.

``remove_skip_connections`` zeroes and freezes every layer-skipping pair (Gammell et al.'s open question: are the
skip connections needed once trained?); the ``ep`` rule's ``remove_skip_after`` calls it after a number of epochs.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..config import Unread, option
from ..distributed import settled
from ..errors import ConfigError
from ..registry import ARCHS
from .base import Architecture, arch_options

TOPOLOGIES = ("layered", "skip", "dense")
SETTLINGS = ("block", "euler")
# ω measured (free phase from zero plus nudged phases to 1e-4): 1.7–1.8 best on 784-100×5-10 layered and skip
# nets, 1.5–1.7 on small digits nets (where 1.8 takes 1.5× the sweeps of 1.7); 1.7 is within 10 % of the best on all.
OMEGA = 1.7
EPSILON = 0.5  # Scellier & Bengio's and Gammell's Euler step
# Block settling gathers and scatters a class's sparse links when that class is updated. On 784-100×5-10 skip nets
# (CPU, batch 20, ms per sweep, links / masked matrices) that wins at p = 0.004 (≈ 9 links per hidden pair, 0.09 %
# of it: 0.23 / 0.29) and loses at p = 0.04 (0.8 %: 0.33 / 0.28) and p = 0.1 (2 %: 0.60 / 0.45). Pairs denser than
# this are multiplied as masked matrices.
BLOCK_SPARSE_DENSITY = 0.003
_REFRESHES = itertools.count()  # a new number per Connection.refresh: what a settling read of the masks is current


@dataclass
class EnergyNetConfig:
    hidden_sizes: tuple[int, ...] = option((500,), "sizes of the hidden layers, e.g. 500,500,500", min=1)
    topology: str = option("layered", "which layer pairs are connected", choices=TOPOLOGIES)
    p: float = option(
        0.1, "skip topology: probability of rewiring each connection into a layer-skipping one", min=0, max=1
    )
    a: float = option(0.0, "skip topology: new connections ~ U[-a, a] (0: the Glorot bound of their layer pair)", min=0)
    epsilon: float = option(
        EPSILON,
        "Euler settling: step size ε, in (0, 1] (block settling does not use it)",
        above=0,
        max=1,
        why="larger Euler steps oscillate and never settle",
    )
    free_steps: int = option(500, "most settling steps (block: sweeps) of the free phase", min=1)
    nudged_steps: int = option(100, "most settling steps (block: sweeps) of each nudged phase", min=1, nudged=True)
    tolerance: float = option(
        1e-4, "settling stops once the largest state change of a step is below this (0: never)", min=0
    )
    settle: str = option(
        "block", "settling: block (each layer set to its exact minimiser, ω-relaxed) or euler (steps of ε)", SETTLINGS
    )
    omega: float = option(
        OMEGA,
        "block settling: over-relaxation ω in (0, 2) (1: plain block Gauss-Seidel)",
        above=0,
        below=2,
        why="beyond 2 block settling diverges",
    )
    nudged_settle: str = option(
        "same",
        "settling method of the nudged phases: same (as settle), block or euler",
        ("same", *SETTLINGS),
        nudged=True,
    )
    check_every: int = option(
        1,
        "test the tolerance every this many steps or sweeps (1: every one); above 1 the free phase's block sweeps "
        "run from buffers kept between settlings, replayed as one captured CUDA graph on a GPU (which is why it "
        "is read with --tolerance 0 too: the residual is then measured every K-th step only)",
        min=1,
    )
    clip_states: bool = option(True, "project the states onto [0, 1] after each step (Scellier & Bengio's code)")
    nudge_after_step: bool = option(
        False,
        "Euler nudged phases as Gammell et al.'s code steps them: the free step, then the output moved by 2ε times "
        "the nudging force there, then one projection onto [0, 1] (with ε = 0.5 and β = 1 under MSE, +β sets the "
        "outputs to the target past any drive)",
        nudged=True,
    )
    rewire_seed: int = option(0, "seed of the skip rewiring (the run's --seed draws the weights)")
    input_rho: bool = option(True, "feed the input through ρ (clamp to [0, 1]) as in Scellier & Bengio's energy")

    def validate(self) -> None:
        if self.tolerance > 0 and self.check_every > self.free_steps:
            raise ConfigError(
                f"check_every ({self.check_every}) exceeds free_steps ({self.free_steps}): the free phase would "
                "never test its tolerance; lower --check-every"
            )
        nudged_method = self.settle if self.nudged_settle == "same" else self.nudged_settle
        if self.nudge_after_step and (nudged_method != "euler" or not self.clip_states):
            got = [f"nudged phases by {nudged_method}"] if nudged_method != "euler" else []
            got += [] if self.clip_states else ["states not clipped"]
            raise ConfigError(
                f"nudge_after_step applies to projected Euler nudged phases (got {' and '.join(got)}): use "
                "--nudged-settle euler with --clip-states, or drop --nudge-after-step"
            )
        if not self.clip_states and self.epsilon >= 1:
            raise ConfigError(
                f"epsilon must be < 1 without clip_states (got {self.epsilon}): larger Euler steps oscillate and "
                "never settle"
            )

    def unread(self) -> dict[str, Unread]:
        """Options given a value that the chosen settling methods do not read (refused: ``build_options``)."""
        methods = (self.settle, self.settle if self.nudged_settle == "same" else self.nudged_settle)
        phases = f"settle {methods[0]}, nudged phases {methods[1]}"
        unread = {}
        if self.omega != OMEGA and "block" not in methods:
            unread["omega"] = Unread(
                f"omega relaxes block settling, which neither phase uses ({phases})",
                "drop --omega, or use --settle block",
            )
        if self.epsilon != EPSILON and "euler" not in methods:
            unread["epsilon"] = Unread(
                f"epsilon is the Euler step, which neither phase uses ({phases})",
                "drop --epsilon, or use --settle euler (or, for EP, --nudged-settle euler)",
            )
        return unread


class Settling(NamedTuple):
    """The result of one settling: states (N, H) of the non-input units, steps used (Euler steps or block sweeps),
    max |Δs| per step, and the tolerance it ran to (0: a fixed number of steps). Without autograd and with
    ``check_every`` = K > 1 only the steps whose residual is tested (every K-th) and the last are measured; the
    others hold NaN, since measuring costs a sweep as much as a quarter of its elementwise passes."""

    state: torch.Tensor
    steps: int
    residuals: torch.Tensor
    tolerance: float = 0.0

    @property
    def unsettled(self) -> bool:
        """True when the phase ran to its cap with its last residual not below the tolerance (or non-finite);
        False for a fixed number of steps (tolerance 0), where no equilibrium was asked for."""
        return self.tolerance > 0 and not bool(self.residuals[-1] < self.tolerance)


_SMALLEST_DENORMAL = torch.tensor([1], dtype=torch.int32).view(torch.float32)  # 2^-149, made from its bits


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero now. torch has no getter for the mode, so this probes
    it: 2 × the smallest float32 denormal is a denormal, and 0 when denormals are flushed (FTZ / DAZ)."""
    return torch.mul(_SMALLEST_DENORMAL, 2.0).item() == 0.0


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormals to zero inside the block only, then restore the mode found on entry.

    States decaying toward 0 geometrically (Euler dynamics without clipping) turn denormal and make a step ≈ 50×
    slower; ``torch.set_flush_denormal`` is process-wide (per thread), so it is scoped to the settling here
    rather than left on for the user's other computations."""
    was = flushing_denormals()
    if not was:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was:
            torch.set_flush_denormal(False)


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
        self.register_buffer("where", None, persistent=False)
        self.removed = False  # removed by remove_skip_connections (for mask-less pairs, whose state cannot say)
        self.refresh()

    def refresh(self) -> None:
        """Recompute what settling reads from the mask: ``where`` (sparse pairs) and ``active`` (any connection
        present; an inactive pair is left out of settling). Called after the mask changes or is loaded."""
        if self.sparse:
            self.where = self.mask.nonzero().t().contiguous()
        self.density = 1.0 if self.mask is None else self.mask.mean().item()
        self.active = not self.removed and self.density > 0
        self.version = next(_REFRESHES)  # kept settling buffers hold the positions read here (_KeptSweeps)

    @torch.no_grad()
    def remove(self) -> None:
        """Remove every connection of the pair: zero weights and mask, no gradient, left out of settling."""
        self.weight.zero_()
        self.weight.requires_grad_(False)
        if self.mask is not None:
            self.mask.zero_()
        self.removed = True
        self.refresh()

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


def _refresh_connections(module: EnergyNet, incompatible_keys) -> None:
    """After a state dict is loaded: settling reads the loaded masks, not the ones the net was built with."""
    for c in module.connections.values():
        c.refresh()


@ARCHS.register("energy-net")
class EnergyNet(Architecture):
    """Layered (optionally skip- or densely connected) Hopfield-like network; ``forward`` settles the free phase."""

    Config = EnergyNetConfig
    provides = ("energy",)
    full_precision = True  # settles in the parameters' dtype: bf16 cannot resolve the tolerance (see forward)
    from .energy_figures import FIGURES as figures  # report figure: test error against p

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, config: EnergyNetConfig | None = None, **options
    ):
        super().__init__()
        config = arch_options(type(self), config, options)
        c = config
        topology, p, a, rewire_seed = c.topology, c.p, c.a, c.rewire_seed
        epsilon, tolerance, clip_states, settle, omega = c.epsilon, c.tolerance, c.clip_states, c.settle, c.omega
        nudged_settle, input_rho, free_steps, nudged_steps = c.nudged_settle, c.input_rho, c.free_steps, c.nudged_steps
        self.sizes = [math.prod(input_shape), *config.hidden_sizes, num_classes]
        self.epsilon, self.tolerance, self.clip_states = epsilon, tolerance, clip_states
        self.method, self.omega = settle, omega  # ``settle`` is the method that settles
        self.nudged_method = settle if nudged_settle == "same" else nudged_settle
        self.input_rho = input_rho
        self.free_steps, self.nudged_steps = free_steps, nudged_steps
        self.nudge_after_step = c.nudge_after_step
        self.check_every = c.check_every
        self._kept = _KeptCache()  # see _kept_sweeps
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
        self.register_load_state_dict_post_hook(_refresh_connections)

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

    @property
    def state_width(self) -> int:
        """Columns of a settling state (N, H): every non-input unit."""
        return self.offsets[-1]

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
        self, sparse: bool = False, density: float = 1.0
    ) -> tuple[list[list[torch.Tensor]], list[list[tuple[int, torch.Tensor]]], tuple | None]:
        """Per non-input layer l (index l − 1): the input's matrices into it, and [(k, W (n_k, n_l))] for each
        connected non-input layer k (W or Wᵀ views of the masked pair matrices, built once per settling).

        With ``sparse``, the sparse (layer-skipping) pairs are left out of those lists and returned as one list of
        single connections over the concatenated state, both directions: (source columns, target columns,
        weights), so that a step adds Σ w·ρ(s_source) to each target unit at a cost of one multiply-add per
        connection; None when there are none. Only pairs with at most ``density`` of their entries present go to
        that list (block settling gathers and scatters per class, so denser pairs are cheaper as matrices)."""
        inputs: list[list[torch.Tensor]] = [[] for _ in self.sizes[1:]]
        neighbours: list[list[tuple[int, torch.Tensor]]] = [[] for _ in self.sizes[1:]]
        sources, targets, weights = [], [], []
        for c in self.connections.values():
            if not c.active:
                continue
            if sparse and c.sparse and c.density <= density:
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
        method: str | None = None,
    ) -> Settling:
        """Settle from ``state`` (zeros if None) for at most ``steps`` (default: free_steps) steps or sweeps.

        Args:
            x: the clamped input (N, …).
            force: the nudging term −β ∂C/∂s_L as a function of the output state (N, n_L); None: free phase.
                Block settling reads two optional attributes of it: ``curvature`` (an upper bound on the largest
                eigenvalue of β ∂²C/∂s_L², default 0) and ``inner_steps`` (default 1); see ``_sweeps``.
            tolerance: stop once max |Δs| < tolerance (default: the network's; 0 runs every step).
            method: ``euler`` or ``block`` (default: the network's ``settle`` option, ``nudged_settle`` when a
                force is given).

        Differentiable when autograd is on (backprop through time); the engine evaluates under no_grad.
        """
        if method is None:
            method = self.method if force is None else self.nudged_method
        steps = self.free_steps if steps is None else steps
        tolerance = self.tolerance if tolerance is None else tolerance
        fast = not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))
        # states decaying toward 0 would otherwise turn denormal and slow 50×; a bf16 state could not resolve the
        # tolerance, so the settling runs in the parameters' dtype under autocast too
        with flush_denormal(), torch.autocast(x.device.type, enabled=False):
            if method == "euler":
                inputs, neighbours, links = self.couplings(sparse=True)
                drive = self.input_drive(x, inputs)  # [(N, n_l)]
                s = drive[0].new_zeros(len(drive[0]), self.offsets[-1]) if state is None else state  # (N, H)
                run = self._steps_in_place if fast and self.clip_states else self._steps
                s, residuals = run(drive, neighbours, links, s, steps, force, tolerance)
            elif method == "block":
                inputs, neighbours, links = self.couplings(sparse=fast, density=BLOCK_SPARSE_DENSITY)
                drive = self.input_drive(x, inputs)
                s = drive[0].new_zeros(len(drive[0]), self.offsets[-1]) if state is None else state
                run = self._sweeps_in_place if fast else self._sweeps
                s, residuals = run(drive, neighbours, links, s, steps, force, tolerance)
            else:
                raise ConfigError(f"settling method must be one of {', '.join(SETTLINGS)} (got {method!r})")
        return Settling(s, len(residuals), torch.stack(residuals), tolerance)

    def _steps(self, drive, neighbours, links, s, steps, force, tolerance) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The dynamics, out of place (differentiable: backprop through time works through it)."""
        out, last, eps = self.layer_slice(self.num_layers), self.num_layers - 1, self.epsilon
        after, force = (force, None) if self.nudge_after_step else (None, force)  # Gammell's order: see below
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
            if after is not None:  # Gammell's order: the free step, the output moved by 2ε F(s_L) there, one clip
                new = torch.lerp(s, g, eps)
                y = new[:, out] + 2 * eps * after(new[:, out])
                new = torch.cat([new[:, : out.start], y, new[:, out.stop :]], 1).clamp(0, 1)
            elif self.clip_states:
                new = torch.lerp(s, g, eps).clamp(0, 1)  # (1 − ε) s + ε g, projected onto [0, 1]
            else:
                new = (1 - eps) * s + eps * ((s >= 0) & (s <= 1)) * g
            residual = (new - s).detach().abs().amax()
            residuals.append(residual)
            s = new
            if self._checks(len(residuals)) and settled(residual, tolerance):
                break
        return s, residuals

    @torch.no_grad()
    def _steps_in_place(
        self, drive, neighbours, links, s, steps, force, tolerance
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The same projected dynamics without autograd, in preallocated buffers: per-operation overhead dominates
        small batches, so each step is the pair products (accumulated in place into views of one buffer) plus two
        elementwise operations, and three more for max |Δs| on a step whose residual is measured (``Settling``)."""
        drive = torch.cat(drive, 1).detach()  # (N, H)
        s, new, g, diff = s.detach().clone(), torch.empty_like(drive), torch.empty_like(drive), torch.empty_like(drive)
        out, eps = self.layer_slice(self.num_layers), self.epsilon
        after, force = (force, None) if self.nudge_after_step else (None, force)
        # the products as a flat list of calls prepared once, for either buffer (the two swap roles every step)
        products = {id(t): self._euler_products(t, g, drive, neighbours, links) for t in (s, new)}
        residuals, unmeasured = [], drive.new_full((), float("nan"))
        for done in range(1, steps + 1):
            for operation in products[id(s)]:  # at batch 20 the Python between the kernels is part of the cost
                operation()
            if force is not None:
                g[:, out].add_(force(s[:, out]))
            torch.lerp(s, g, eps, out=new)  # (1 − ε) s + ε g
            if after is not None:  # Gammell's order: the output moved by 2ε F(s_L) before the clip
                new[:, out].add_(after(new[:, out]), alpha=2 * eps)
            new.clamp_(0, 1)  # projected onto [0, 1]
            measured = self._checks(done) or done == steps
            residuals.append(torch.sub(new, s, out=diff).abs_().amax() if measured else unmeasured)
            s, new = new, s
            if self._checks(done) and settled(residuals[-1], tolerance):
                break
        return s, residuals

    def _euler_products(self, s, g, drive, neighbours, links) -> list[Callable[[], object]]:
        """The calls that set g = drive + Σ_j W ρ(s_j) in place from the state buffer ``s`` (ρ(s) = s: the states
        stay in [0, 1]): per layer one ``addmm`` into its columns of g and one ``addmm_`` per further neighbour,
        then one gather / multiply / scatter-add over the sparse links."""
        cols = [self.layer_slice(l) for l in range(1, len(self.sizes))]
        ops: list[Callable[[], object]] = []
        for c, terms in zip(cols, neighbours):
            g_l, d_l = g[:, c], drive[:, c]
            if not terms:
                ops.append(functools.partial(g_l.copy_, d_l))
                continue
            (k, w), *rest = terms
            ops.append(functools.partial(torch.addmm, d_l, s[:, cols[k - 1]], w.detach(), out=g_l))
            ops += [functools.partial(g_l.addmm_, s[:, cols[k - 1]], w.detach()) for k, w in rest]
        if links is not None:
            source, target, link_w = (t.detach() for t in links)
            picked = drive.new_empty(len(drive), len(link_w))  # ρ of each connection's source unit, then times w
            ops.append(functools.partial(torch.index_select, s, 1, source, out=picked))
            ops.append(functools.partial(picked.mul_, link_w))
            ops.append(functools.partial(g.index_add_, 1, target, picked))
        return ops

    def _checks(self, done: int) -> bool:
        """Whether the tolerance is tested after ``done`` steps or sweeps: every ``check_every``-th one (each test
        is a host synchronisation, which a GPU pays for at every step of a small batch)."""
        return done % self.check_every == 0

    # Block settling ---------------------------------------------------------------------------------------------

    def colour_classes(self) -> list[list[int]]:
        """The non-input layers split into classes of layers no two of which are joined by a connection present
        (a greedy colouring of the layer graph, layers in order); a sweep updates one class after the other.
        Layered nets give [odd layers, even layers]; dense nets one layer per class (Gauss–Seidel layer by layer);
        the output layer, the highest, is the last of its class."""
        joined: dict[int, set[int]] = {l: set() for l in range(1, len(self.sizes))}
        for c in self.connections.values():
            if c.lower > 0 and c.active:
                joined[c.lower].add(c.upper)
                joined[c.upper].add(c.lower)
        colour: dict[int, int] = {}
        for l, others in joined.items():
            used = {colour[k] for k in others if k in colour}
            colour[l] = next(i for i in itertools.count() if i not in used)
        return [[l for l in joined if colour[l] == i] for i in range(max(colour.values()) + 1)]

    def _output_step(self, force) -> tuple[float, int]:
        """The output layer's step in a nudged sweep, t = ω / (1 + κ⁺), and its number of inner steps.

        The output's part of F = E + βC with its neighbours fixed is ½‖s_L‖² − s_Lᵀ g_L + β C(s_L); a projected
        gradient step s_L ← clip(s_L + t (g_L + f(s_L) − s_L)), f = −β ∂C/∂s_L, has curvature 1 + β∂²C ≤ 1 + κ,
        so it descends for t < 2 / (1 + κ), i.e. ω < 2. For the MSE cost f is linear (κ = β): t = ω / (1 + β)
        is ω times the exact minimiser's step, the same over-relaxed block update as every other layer. For
        cross-entropy (κ = β/2, softmax's Hessian ≤ ½) the minimiser has no closed form; ``inner_steps`` such
        steps per sweep approach it. Where βC is concave (β < 0) κ⁺ = 0."""
        curvature = max(float(getattr(force, "curvature", 0.0)), 0.0)
        return self.omega / (1.0 + curvature), int(getattr(force, "inner_steps", 1))

    def _sweeps(self, drive, neighbours, links, s, steps, force, tolerance) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Block settling, out of place (differentiable): per sweep, each colour class in turn is set to
        clip((1 − ω) s_l + ω (b_l + Σ_j W ρ(s_j))), its neighbours' newest states in the drive (Gauss–Seidel).

        ``neighbours`` must hold every connection (``couplings(sparse=False)``): masked matrices, so autograd
        differentiates the same products as the in-place path does connection by connection."""
        assert links is None, "the differentiable block path multiplies the masked matrices"
        out, (t, inner) = self.num_layers, self._output_step(force)
        layers = list(s.clamp(0, 1).split(self.sizes[1:], 1))  # [(N, n_l)], in [0, 1]: ρ(s) = s throughout
        classes = self.colour_classes()
        residuals = []
        for _ in range(steps):
            before = list(layers)
            for cls in classes:
                for l in cls:  # no two layers of a class are joined: updating one by one = all at once
                    g = drive[l - 1]
                    for k, w in neighbours[l - 1]:
                        g = torch.addmm(g, layers[k - 1], w)
                    new = layers[l - 1]
                    if force is not None and l == out:
                        for _ in range(inner):
                            new = torch.lerp(new, g + force(new), t).clamp(0, 1)
                    else:
                        new = torch.lerp(new, g, self.omega).clamp(0, 1)
                    layers[l - 1] = new
            residual = torch.stack([(a - b).detach().abs().amax() for a, b in zip(layers, before)]).amax()
            residuals.append(residual)
            if self._checks(len(residuals)) and settled(residual, tolerance):
                break
        return torch.cat(layers, 1), residuals

    @torch.no_grad()
    def _sweeps_in_place(
        self, drive, neighbours, links, s, steps, force, tolerance
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Block settling without autograd, in preallocated buffers.

        The state is held with the layers reordered class by class (each class one contiguous block, see
        ``_BlockPlan``), so a class is relaxed by one ``lerp_`` and one ``clamp_``; a sweep does the products of
        one Euler step (each pair once per direction) and 2 elementwise operations per class, prepared once per
        settling as a list of calls (``_BlockPlan.operations``); a sweep whose residual is measured (``Settling``)
        adds a copy and three passes for max |Δs|."""
        if force is None and self.check_every > 1:
            return self._kept_sweeps(drive, neighbours, links, s, steps, tolerance)
        plan = _BlockPlan(self, drive, neighbours, links, s)
        s, prev = plan.state, torch.empty_like(plan.state)
        sweep = plan.operations(force, self.omega, *self._output_step(force))
        plan.prepare()
        residuals, unmeasured = [], s.new_full((), float("nan"))
        for done in range(1, steps + 1):
            measured = self._checks(done) or done == steps
            if measured:
                prev.copy_(s)
            for operation in sweep:  # a flat list: at batch 20 the Python between the kernels is part of the cost
                operation()
            residuals.append(prev.sub_(s).abs_().amax() if measured else unmeasured)
            if self._checks(done) and settled(residuals[-1], tolerance):
                break
        return plan.standard(s), residuals

    def _kept_sweeps(self, drive, neighbours, links, s, steps, tolerance) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The free phase's block sweeps, ``check_every`` at a time, from buffers kept between settlings of the
        same batch size and structure (``_KeptSweeps``): on CUDA each chunk of sweeps replays as one captured
        graph, since at batch 20 a sweep is some 30 kernels of a few microseconds each. The same arithmetic as
        ``_sweeps_in_place`` with the same ``check_every``; at most 4 batch sizes are kept, and a new set is made
        whenever a connection's mask was re-read (``Connection.refresh``: a load, a removal)."""
        chunk = min(self.check_every, steps)
        key = (
            len(s), s.dtype, s.device, chunk, self.omega,
            tuple((c.lower, c.upper, c.active, c.sparse, c.version) for c in self.connections.values()),
        )  # fmt: skip
        # one settling at a time per network (the buffers are shared); buffers made under inference mode could not
        # be updated outside it later, so they are made and used as ordinary tensors
        with self._kept.lock, torch.inference_mode(False), torch.no_grad():
            kept = self._kept.pop(key, None) or _KeptSweeps(self, drive, neighbours, links, s, chunk)
            self._kept[key] = kept
            while len(self._kept) > 4:
                self._kept.popitem(last=False)
            kept.load(drive, neighbours, links, s)
            residuals: list[torch.Tensor] = []
            while len(residuals) < steps:
                residuals += kept.run(min(chunk, steps - len(residuals)))
                if settled(residuals[-1], tolerance):
                    break
            return kept.plan.standard(kept.plan.state), residuals  # a new tensor: the buffers are kept

    def _apply(self, fn, *args, **kwargs):
        """``to``, ``cuda``, ``double``, …: the kept settling buffers belong to the old device and dtype."""
        self._kept.clear()
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def skip_connection_count(self) -> int:
        """Layer-skipping connections present (pairs of layers at least two apart, not removed)."""
        return sum(c.count() for c in self.connections.values() if c.upper - c.lower >= 2 and not c.removed)

    def remove_skip_connections(self) -> int:
        """Remove every layer-skipping connection (pairs of layers at least two apart): their weights and masks
        are zeroed, they get no gradient and settling leaves them out. Returns how many connections went.

        Idempotent, and it must be called again after loading a state saved once they were removed: the saved
        mask (all zero) makes the pair inactive, but whether its weight is frozen is not part of the state."""
        removed = 0
        for c in self.connections.values():
            if c.upper - c.lower >= 2 and not c.removed:
                removed += c.count()
                c.remove()
        return removed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's state (N, classes) at the free fixed point, settled from zero (in the parameters'
        dtype even under autocast: a bf16 state cannot resolve a settling tolerance of 1e-4)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.settle(x).state[:, self.layer_slice(len(self.sizes) - 1)]


def _relax(s: torch.Tensor, g: torch.Tensor, omega: float) -> list[Callable[[], object]]:
    """The calls that set s ← clip((1 − ω) s + ω g, 0, 1) in place: the exact layer minimiser clip(g) at ω = 1,
    over-relaxed above."""
    if omega == 1.0:
        return [functools.partial(torch.clamp, g, 0, 1, out=s)]
    return [functools.partial(s.lerp_, g, omega), functools.partial(s.clamp_, 0, 1)]


class _BlockPlan:
    """The buffers and views of an in-place block settling, the layers ordered class by class.

    Each buffer (state, drive, g) is one flat tensor of N·H numbers. Without sparse links it is laid out layer by
    layer: each layer's (N, n_l) block is contiguous, and so is each class and the whole state, so a class is
    relaxed, and max |Δs| measured, by operations on contiguous memory (at batch 20 an elementwise call or an
    ``addmm`` into a strided column block of an (N, H) state costs more: ``benchmarks/ep_settling.py --parts b``).
    The sparse links gather and scatter state columns, so with them the buffer is an (N, H) matrix, each class a
    block of columns."""

    def __init__(self, net: EnergyNet, drive: list[torch.Tensor], neighbours, links, s: torch.Tensor):
        self.classes, self.neighbours, self.output = net.colour_classes(), neighbours, net.num_layers
        self.order = [l for cls in self.classes for l in cls]
        self.at, start = {}, 0  # each layer's columns in class order
        for l in self.order:
            self.at[l] = slice(start, start + net.sizes[l])
            start += net.sizes[l]
        self.batch, self.width, self.layer_major = len(s), start, links is None
        self.source = {l: net.layer_slice(l) for l in self.order}  # its columns in the layer order
        self.perm = torch.cat([torch.arange(net.offsets[l - 1], net.offsets[l]) for l in self.order]).to(s.device)
        self.state = s.new_empty(self.batch * self.width)
        self.drive, self.g = torch.empty_like(self.state), torch.empty_like(self.state)
        self.links = self._reindex(links)
        self._prepare: list[Callable[[], object]] = []  # once per settling, before the sweeps (``prepare``)
        self.load(drive, s)

    def layer(self, buffer: torch.Tensor, l: int) -> torch.Tensor:
        """Layer l's (N, n_l) view of a flat buffer."""
        return self.columns(buffer, self.at[l].start, self.at[l].stop).view(self.batch, -1)

    def columns(self, buffer: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The view of columns [start, stop) (class order) of a flat buffer: flat and contiguous layer by layer,
        an (N, stop − start) block of the (N, H) matrix with sparse links."""
        if self.layer_major:
            return buffer[self.batch * start : self.batch * stop]
        return self.matrix(buffer)[:, start:stop]

    def matrix(self, buffer: torch.Tensor) -> torch.Tensor:
        """The (N, H) matrix view of a flat buffer in the column layout (sparse links only)."""
        return buffer.view(self.batch, self.width)

    def prepare(self) -> None:
        """Run what the sweeps read but need only once per settling (the sparse links' weights, by class)."""
        for operation in self._prepare:
            operation()

    def load(self, drive: list[torch.Tensor], s: torch.Tensor) -> None:
        """Copy a settling's input drive and starting state (N, H in layer order) into the plan's buffers (class
        order, the state clipped to [0, 1])."""
        s = s.detach()
        for l in self.order:
            self.layer(self.drive, l).copy_(drive[l - 1].detach())
            self.layer(self.state, l).copy_(s[:, self.source[l]])
        self.state.clamp_(0, 1)

    def standard(self, buffer: torch.Tensor) -> torch.Tensor:
        """A new (N, H) tensor: a flat buffer's states in the layer order of ``layer_slice``."""
        return torch.cat([self.layer(buffer, l) for l in sorted(self.order)], 1)

    def operations(self, force, omega: float, t: float, inner: int) -> list[Callable[[], object]]:
        """The calls of one sweep, in order: per class, g_l = drive_l + Σ s_k W_kl for its layers (and the sparse
        links into it), then the class relaxed toward g (in a nudged phase the output takes ``inner`` steps of t
        on its own part of F, see ``EnergyNet._output_step``)."""
        s, g, at, ops = self.state, self.g, self.at, []
        for cls in self.classes:
            for l in cls:
                terms = [(self.layer(s, k), w.detach()) for k, w in self.neighbours[l - 1]]
                g_l, d_l = self.layer(g, l), self.layer(self.drive, l)
                if not terms:
                    ops.append(functools.partial(g_l.copy_, d_l))
                    continue
                (v, w), *rest = terms
                ops.append(functools.partial(torch.addmm, d_l, v, w, out=g_l))
                ops += [functools.partial(g_l.addmm_, v, w) for v, w in rest]
            start, stop = at[cls[0]].start, at[cls[-1]].stop
            ops += self._links_into(slice(start, stop))
            if force is None or cls[-1] != self.output:
                ops += _relax(self.columns(s, start, stop), self.columns(g, start, stop), omega)
                continue
            stop = at[self.output].start  # the class's other layers, then the output's own steps
            ops += _relax(self.columns(s, start, stop), self.columns(g, start, stop), omega) if stop > start else []
            s_out, g_out = self.layer(s, self.output), self.layer(g, self.output)
            ops += [lambda s_out=s_out, g_out=g_out: s_out.lerp_(g_out + force(s_out), t).clamp_(0, 1)] * inner
        return ops

    def _reindex(self, links) -> tuple[torch.Tensor, ...] | None:
        """The sparse links (source, target, w) with their columns in class order."""
        if links is None:
            return None
        source, target, w = (t.detach() for t in links)
        inverse = torch.empty_like(self.perm)
        inverse[self.perm] = torch.arange(len(self.perm), device=self.perm.device)
        return inverse[source], inverse[target], w

    def _links_into(self, block: slice) -> list[Callable[[], object]]:
        """The calls that add the sparse links whose target lies in ``block`` to g: gather ρ of their sources
        (the newest states), multiply by w, scatter-add into the block."""
        if self.links is None:
            return []
        source, target, w = self.links
        keep = ((target >= block.start) & (target < block.stop)).nonzero().squeeze(1)
        if not len(keep):
            return []
        source, target, w_all = source[keep], target[keep] - block.start, w
        w = w_all.new_empty(len(keep))  # the weights of these links, gathered once per settling
        self._prepare.append(functools.partial(torch.index_select, w_all, 0, keep, out=w))
        picked = self.state.new_empty(self.batch, len(keep))
        return [
            functools.partial(torch.index_select, self.matrix(self.state), 1, source, out=picked),
            functools.partial(picked.mul_, w),
            functools.partial(self.matrix(self.g)[:, block].index_add_, 1, target, picked),
        ]


class _KeptCache(collections.OrderedDict):
    """The kept sweeps by (batch size, structure …), oldest first, and the lock that lets one settling at a time
    use them. A copy of the network starts without any: the buffers belong to one network, and a captured CUDA
    graph cannot be copied."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __deepcopy__(self, memo) -> _KeptCache:
        return type(self)()

    def __reduce__(self):
        return type(self), ()


class _KeptSweeps:
    """A free phase's block sweeps whose buffers outlive the settling: the plan's state, drive and g, copies of the
    coupling matrices and sparse links, and the calls of one sweep, plus those that measure the last sweep of a
    chunk (its residual, written to a buffer: the only one the tolerance test reads). ``load`` copies a new
    settling's inputs in; ``run`` does the sweeps. On CUDA the first full chunk
    runs eagerly on a side stream (the warm-up CUDA graph capture needs) and the next is captured as a graph that
    every later chunk replays: the graph reads these buffers, which is why they are kept."""

    def __init__(self, net: EnergyNet, drive, neighbours, links, s: torch.Tensor, chunk: int):
        # clone() keeps a transposed view's strides, so the products run with the layouts of the eager path
        self.weights = [[(k, w.detach().clone()) for k, w in terms] for terms in neighbours]
        self.links = None if links is None else tuple(t.detach().clone() for t in links)
        self.plan = _BlockPlan(net, drive, self.weights, self.links, s)
        self.prev = torch.empty_like(self.plan.state)
        self.residual = self.plan.state.new_empty(())
        self.unmeasured = self.plan.state.new_full((), float("nan"))
        self.chunk = chunk
        self.sweep = self.plan.operations(None, net.omega, *net._output_step(None))
        state, prev = self.plan.state, self.prev
        self.measured = [  # the chunk's last sweep: max |Δs| into ``residual``
            functools.partial(prev.copy_, state),
            *self.sweep,
            functools.partial(prev.sub_, state),
            prev.abs_,
            functools.partial(torch.amax, prev, 0, out=self.residual),  # the buffers are flat
        ]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = False

    def load(self, drive, neighbours, links, s: torch.Tensor) -> None:
        for kept, new in zip(self.weights, neighbours):
            for (_, w), (_, v) in zip(kept, new):
                w.copy_(v)
        if links is not None:  # the same structure (the cache key): only the weights change
            self.links[2].copy_(links[2])
        self.plan.load(drive, s)
        self.plan.prepare()

    def run(self, n: int) -> list[torch.Tensor]:
        """Do n sweeps (n ≤ the chunk); returns their residuals (0-d tensors, NaN but the last, which is measured;
        no host synchronisation)."""
        if n < self.chunk or not self.plan.state.is_cuda:
            self._eager(n)
        elif self.graph is not None:
            self.graph.replay()
        elif not self.warm:
            stream = torch.cuda.Stream(self.plan.state.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._eager(n)
            torch.cuda.current_stream().wait_stream(stream)
            self.warm = True
        else:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records the kernels without running them
                self._eager(n)
            self.graph.replay()
        return [self.unmeasured] * (n - 1) + [self.residual.clone()]

    def _eager(self, n: int) -> None:
        for _ in range(n - 1):
            for operation in self.sweep:
                operation()
        for operation in self.measured:
            operation()
