"""A convolutional energy network for equilibrium propagation (Ernoult et al. 2019, "Updates of equilibrium prop
match gradients of backprop through time in an RNN with static input"; Laborieux et al. 2021, "Scaling equilibrium
propagation to deep ConvNets by drastically reducing its gradient estimator bias").

Layers s_0 = x (clamped image, C×H×W), convolutional layers s_1 … s_K (C_l × H_l × W_l, after 2×2 pooling P),
fully connected layers s_{K+1} … s_L. The primitive function

    Φ(x, s) = Σ_{l ≤ K} s_l · P(conv_l(s_{l−1}) + b_l)  +  Σ_{l > K} s_l · (W_l s_{l−1} + b_l)

with max pooling (``pooling``) is linear in the upper layer of each term and piecewise linear in the lower one, and
the states follow the fixed-point iteration (ε = 1, Laborieux's code)

    s_l ← σ(∂Φ/∂s_l) = σ(P(conv_l(s_{l−1}) + b_l) + conv_{l+1}ᵀ(P⁻¹(s_{l+1})))        (convolutional l < K)

where P⁻¹ routes each pooled unit back to the position that won the max (max unpooling) and convᵀ is the transposed
convolution with the same W: the feedback is the exact derivative of the bottom-up term, so the connections are
symmetric by construction. σ is a hard sigmoid: ``hard-sigmoid`` clamp(u, 0, 1) (Ernoult et al.) or
``half-hard-sigmoid`` clamp(u/2, 0, 1) (Laborieux et al.'s CIFAR-10 runs, their ``my_hard_sig``). A fixed point
s = σ(∂Φ/∂s) is a stationary point of the energy E(s) = Σ G(s) − Φ(x, s) on [0, 1] with G' = σ⁻¹ (G(s) = ½s²
for clamp(u, 0, 1), s² for clamp(u/2, 0, 1)), and the nudged phase adds −β ∂C/∂s to the drive: s = σ(∂Φ/∂s −
β ∂C/∂s), a stationary point of E + βC. So (∂E/∂θ(s^β) − ∂E/∂θ(s⁰))/β = −(∂Φ/∂θ(s^β) − ∂Φ/∂θ(s⁰))/β, the EP rule's
estimate, approaches the gradient of C at the free fixed point (Scellier & Bengio 2017; Ernoult et al. 2019).

Max pooling makes Φ piecewise linear in the lower layer: where a pooling window's two largest inputs lie within
O(β) of each other, the switch may differ between the free and a nudged state, ∂Φ/∂W then jumps by O(1) and the
estimate (divided by β) with it. Such windows get rarer as β → 0 and the jumps average out over a batch, but on one
small batch they appear from β ≈ 0.01; ``avg`` pooling has no switches.

Readouts (``readout``):
- ``energy``: the last layer s_L is the output layer, one more fully connected layer of the energy (Laborieux's
  MSE variant; use the ep rule's ``--cost mse``).
- ``linear``: ŷ = W_out s_L + b_out outside the energy (Laborieux's "CE" variant with ``--cost ce``: the cost is the
  cross-entropy of softmax(ŷ)); the nudged phase drives s_L with −β W_outᵀ ∂C/∂ŷ. W_out's gradient is that of βC
  (the readout is not in E): the nudging force g = −β ∂C/∂ŷ at the final state is kept in the state next to ŷ, and
  ``energy`` adds −g·(W_out s_L + b_out), whose parameter gradient equals that of βC there. Its contrast is then
  ½(∂C/∂W_out(s^β) + ∂C/∂W_out(s^−β)) for symmetric nudging and ∂C/∂W_out(s^β) for one-sided nudging, exactly the
  W_out update of Laborieux's code; for a free state g = 0 and the energy is E itself.

The state is one flat tensor (N, H) so that the ep rule's slicing and persistent memory (N_train, H) work: the
layers s_1 … s_L, flattened, then (linear readout) g (N, classes) and ŷ (N, classes), which is layer L + 1 for
``layer_slice``. ``num_layers`` counts s_1 … s_L plus the readout, one per weight tensor, so per-layer learning rates
(``layer_lr_scale``) line up with Laborieux's five rates for four convolutions and a readout.

Settling order (``settle_order``): ``synchronous`` updates every layer from the previous state (Laborieux's code);
``alternating`` updates the odd layers, then the even ones from the new odd ones. In a layered net each layer only
sees its neighbours, so a half sweep is exact and the alternating order is a red-black Gauss-Seidel sweep: same
fixed points, same cost per sweep (each convolution and each transposed convolution is computed once per sweep; the
pooling switches of conv_{l+1}(s_l) that the feedback into s_l needs are those of the bottom-up drive of s_{l+1},
computed after s_l last changed), usually fewer sweeps to the tolerance. Settling stops once the largest state change
of a sweep is below ``tolerance``, or after the cap. With autograd on it is differentiable (backprop through time);
under ``torch.no_grad`` (the ep rule, evaluation) it runs without building a graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..distributed import settled
from ..errors import ConfigError
from ..registry import ARCHS
from .base import Architecture, arch_options
from .energy import Settling

POOLINGS = ("max", "avg", "none")
READOUTS = ("linear", "energy")
ORDERS = ("synchronous", "alternating")


class Activation(NamedTuple):
    """σ, and the primitive G of σ⁻¹ that makes s = σ(∂Φ/∂s) a stationary point of E = Σ G(s) − Φ."""

    sigma: Callable[[torch.Tensor], torch.Tensor]
    primitive: Callable[[torch.Tensor], torch.Tensor]


ACTIVATIONS = {
    "hard-sigmoid": Activation(lambda u: u.clamp(0, 1), lambda s: 0.5 * s * s),
    "half-hard-sigmoid": Activation(lambda u: (0.5 * u).clamp(0, 1), lambda s: s * s),
}


@dataclass
class ConvEnergyNetConfig:
    conv_channels: tuple[int, ...] = option((32, 64), "feature maps of each convolutional layer, e.g. 32,64", min=1)
    kernel_sizes: tuple[int, ...] = option((5,), "kernel size of each convolution (one value: all of them)", min=1)
    paddings: tuple[int, ...] = option((0,), "zero padding of each convolution (one value: all of them)", min=0)
    pooling: str = option("max", "2×2 pooling after each convolution, inside Φ", POOLINGS)
    hidden_sizes: tuple[int, ...] = option(
        (), "sizes of the fully connected hidden layers (conv-energy-net: after the convolutions, may be none)", min=1
    )
    readout: str = option(
        "linear",
        "linear: ŷ = W_out s_L outside the energy, nudging s_L through W_out (with --cost ce: Laborieux's softmax "
        "readout); energy: the output layer is the last layer of the energy (Laborieux's MSE variant)",
        READOUTS,
    )
    activation: str = option(
        "hard-sigmoid",
        "hidden nonlinearity (conv-energy-net: hard-sigmoid clamp(u, 0, 1) or half-hard-sigmoid clamp(u/2, 0, 1), "
        "Laborieux's CIFAR runs)",
        tuple(ACTIVATIONS),
    )
    settle_order: str = option(
        "alternating", "synchronous (all layers at once) or alternating (odd layers, then even ones)", ORDERS
    )
    free_steps: int = option(100, "most settling steps of the free phase", min=1)
    nudged_steps: int = option(20, "most settling steps of each nudged phase", min=1, nudged=True)
    tolerance: float = option(
        1e-3, "settling stops once the largest state change of a step is below this (0: never)", min=0
    )
    input_rho: bool = option(False, "feed the input through ρ = clamp(x, 0, 1) instead of as given")
    input_scale: float = option(
        1.0, "multiply the input by this (1/3: Laborieux et al.'s CIFAR-10 normalisation, by 3× the pixel std)", above=0
    )

    def validate(self) -> None:
        n = len(self.conv_channels)
        if n < 1:
            raise ConfigError("conv_channels needs at least one convolutional layer")
        for name in ("kernel_sizes", "paddings"):
            if len(getattr(self, name)) not in (1, n):
                raise ConfigError(f"{name} needs 1 or {n} values (got {getattr(self, name)})")


def pool(a: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """P(a) for (N, C, H, W) → (N, C, H//2, W//2), and the max-pooling switches (None for avg and none)."""
    if kind == "max":
        return F.max_pool2d(a, 2, return_indices=True)
    if kind == "avg":
        return F.avg_pool2d(a, 2), None
    return a, None


def unpool(g: torch.Tensor, switches: torch.Tensor | None, kind: str, size: tuple[int, int]) -> torch.Tensor:
    """Pᵀ g: (N, C, h, w) back to (N, C, *size), the derivative of s·P(a) with respect to a."""
    if kind == "max":
        return F.max_unpool2d(g, switches, 2, output_size=size)
    if kind == "avg":
        up = F.interpolate(g, scale_factor=2.0, mode="nearest") * 0.25
        return F.pad(up, (0, size[1] - up.shape[-1], 0, size[0] - up.shape[-2]))  # an odd last row/column: 0
    return g


def uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """U(−1/√fan_in, 1/√fan_in): PyTorch's default for Conv2d and Linear, which Laborieux et al. keep."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


class ConvConnection(nn.Module):
    """W (C_out, C_in, k, k) and b (C_out) from a layer to the pooled convolutional layer above, used both ways.

    Not an ``nn.Conv2d``: layer-swapping rules (FA, DFA, …) must find nothing to swap in an energy network."""

    def __init__(self, lower: int, upper: int, c_in: int, c_out: int, kernel: int, padding: int, pooling: str):
        super().__init__()
        self.lower, self.upper, self.padding, self.pooling = lower, upper, padding, pooling
        fan_in = c_in * kernel * kernel
        self.weight = nn.Parameter(uniform_(torch.empty(c_out, c_in, kernel, kernel), fan_in))
        self.bias = nn.Parameter(uniform_(torch.empty(c_out), fan_in))

    def bottom_up(self, s: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """P(conv(s) + b) (N, C_out, h, w), and what ``top_down`` needs: the switches and the pre-pool size."""
        a = F.conv2d(s, self.weight, self.bias, padding=self.padding)  # (N, C_out, H', W')
        p, switches = pool(a, self.pooling)
        return p, (switches, a.shape[-2:])

    def top_down(self, s_upper: torch.Tensor, cache: tuple) -> torch.Tensor:
        """∂(s_upper · P(conv(s) + b))/∂s = convᵀ(Pᵀ s_upper) (N, C_in, H, W)."""
        switches, size = cache
        w = self.weight.contiguous(memory_format=torch.channels_last)  # matches the states' layout (see settle)
        return F.conv_transpose2d(unpool(s_upper, switches, self.pooling, size), w, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{self.lower}-{self.upper}, weight={tuple(self.weight.shape)}, padding={self.padding}, {self.pooling}"


class DenseConnection(nn.Module):
    """W (n_out, n_in) and b (n_out) from a layer (flattened) to the fully connected layer above, used both ways."""

    def __init__(self, lower: int, upper: int, n_in: int, n_out: int):
        super().__init__()
        self.lower, self.upper = lower, upper
        self.weight = nn.Parameter(uniform_(torch.empty(n_out, n_in), n_in))
        self.bias = nn.Parameter(uniform_(torch.empty(n_out), n_in))

    def bottom_up(self, s: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.linear(s.flatten(1), self.weight, self.bias), None  # (N, n_out)

    def top_down(self, s_upper: torch.Tensor, cache: None = None) -> torch.Tensor:
        """∂(s_upper · (W s + b))/∂s = Wᵀ s_upper, (N, n_in), flat."""
        return s_upper @ self.weight

    def extra_repr(self) -> str:
        return f"{self.lower}-{self.upper}, weight={tuple(self.weight.shape)}"


def conv_output(size: int, kernel: int, padding: int) -> int:
    return size + 2 * padding - kernel + 1


@ARCHS.register("conv-energy-net")
class ConvEnergyNet(Architecture):
    """Convolutional energy network (Laborieux et al. 2021); ``forward`` settles the free phase and returns ŷ."""

    Config = ConvEnergyNetConfig
    provides = ("energy",)
    full_precision = True  # settles in the parameters' dtype: bf16 cannot resolve the tolerance (see forward)

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, config: ConvEnergyNetConfig | None = None, **options
    ):
        super().__init__()
        config = arch_options(type(self), config, options)
        readout, settle_order = config.readout, config.settle_order
        self.config, self.settle_order = config, settle_order
        self.readout, self.free_steps, self.nudged_steps = config.readout, config.free_steps, config.nudged_steps
        self.tolerance, self.input_rho, self.input_scale = config.tolerance, config.input_rho, config.input_scale
        self.sigma, self.primitive = ACTIVATIONS[config.activation]
        self.connections = nn.ModuleDict()
        self.shapes = self._build(tuple(input_shape), num_classes)  # shape of each layer s_1 … s_L
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.num_classes = num_classes
        self.offsets = [0]  # layer l occupies columns offsets[l-1]:offsets[l]; then g and ŷ (linear readout)
        for n in self.sizes + ([num_classes] if readout == "linear" else []):
            self.offsets.append(self.offsets[-1] + n)
        width = self.offsets[-1] + (num_classes if readout == "linear" else 0)
        self.state_width = width
        # The half sweeps: all layers at once, or odd layers (1, 3, …) then even ones (0-based indices here).
        layers = range(len(self.shapes))
        self.groups = [list(layers)] if settle_order == "synchronous" else [list(layers[0::2]), list(layers[1::2])]

    def _build(self, input_shape: tuple[int, ...], num_classes: int) -> list[tuple[int, ...]]:
        """Create the connections; return the shape of each layer (without the batch dimension)."""
        if len(input_shape) != 3:
            raise ConfigError(f"conv-energy-net needs an image input (C, H, W), got input shape {input_shape}")
        c, h, w = input_shape
        config, n = self.config, len(self.config.conv_channels)
        kernels = config.kernel_sizes * n if len(config.kernel_sizes) == 1 else config.kernel_sizes
        paddings = config.paddings * n if len(config.paddings) == 1 else config.paddings
        shapes: list[tuple[int, ...]] = []
        for l, (channels, k, p) in enumerate(zip(config.conv_channels, kernels, paddings), start=1):
            h, w = conv_output(h, k, p), conv_output(w, k, p)
            if config.pooling != "none":
                h, w = h // 2, w // 2
            if min(h, w) < 1:
                raise ConfigError(
                    f"conv-energy-net: convolution {l} (kernel {k}, padding {p}) leaves no output on a "
                    f"{input_shape[1]}×{input_shape[2]} input; use fewer layers, smaller kernels or more padding"
                )
            self.connections[f"{l - 1}-{l}"] = ConvConnection(l - 1, l, c, channels, k, p, config.pooling)
            c = channels
            shapes.append((c, h, w))
        fully_connected = list(config.hidden_sizes) + ([num_classes] if config.readout == "energy" else [])
        for n_out in fully_connected:
            l = len(shapes) + 1
            self.connections[f"{l - 1}-{l}"] = DenseConnection(l - 1, l, math.prod(shapes[-1]), n_out)
            shapes.append((n_out,))
        if config.readout == "linear":
            l = len(shapes) + 1
            self.connections[f"{l - 1}-{l}"] = DenseConnection(l - 1, l, math.prod(shapes[-1]), num_classes)
        return shapes

    # The energy-network protocol the ep rule uses.

    @property
    def num_layers(self) -> int:
        """Layers with weights into them: s_1 … s_L, plus the readout ŷ when it is outside the energy."""
        return len(self.connections)

    def layer_slice(self, layer: int) -> slice:
        """Columns of the state (N, H) holding layer ``layer`` (1 … num_layers; the last is the output ŷ or s_L)."""
        if self.readout == "linear" and layer == self.num_layers:
            return slice(self.state_width - self.num_classes, self.state_width)
        return slice(self.offsets[layer - 1], self.offsets[layer])

    def parameter_layers(self) -> dict[str, int]:
        """The layer each parameter feeds (for per-layer learning rates): its connection's upper layer."""
        return {f"connections.{k}.{p}": c.upper for k, c in self.connections.items() for p in ("weight", "bias")}

    def _layer_connections(self) -> tuple[list[nn.Module], nn.Module | None]:
        """The connection into each layer s_1 … s_L, and the readout (None when the output is in the energy)."""
        connections = list(self.connections.values())
        if self.readout == "linear":
            return connections[:-1], connections[-1]
        return connections, None

    def split(self, state: torch.Tensor) -> list[torch.Tensor]:
        """(N, H) → views of s_1 … s_L in their shapes [(N, C, h, w) or (N, n)]."""
        return [state[:, self.offsets[l] : self.offsets[l + 1]].view(-1, *shape) for l, shape in enumerate(self.shapes)]

    def input_state(self, x: torch.Tensor) -> torch.Tensor:
        """s_0 = input_scale · x (N, C, H, W), clamped to [0, 1] with ``input_rho``; in the parameters' dtype."""
        x = x.to(self.connections["0-1"].weight.dtype)
        x = x * self.input_scale if self.input_scale != 1.0 else x
        return x.clamp(0, 1) if self.input_rho else x

    def join(self, layers: list[torch.Tensor], force: Callable | None = None) -> torch.Tensor:
        """s_1 … s_L → the flat state (N, H); with a linear readout, then g = force(ŷ) (0 when free) and ŷ."""
        flat = [s.flatten(1) for s in layers]
        _, readout = self._layer_connections()
        if readout is not None:
            out = readout.bottom_up(layers[-1])[0]  # ŷ (N, classes)
            flat += [torch.zeros_like(out) if force is None else force(out), out]
        return torch.cat(flat, 1)

    def phi(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Φ(x, s) per sample (N,): Σ_l s_l · P(conv_l(s_{l−1}) + b_l), and s_l · (W_l s_{l−1} + b_l) for dense l."""
        layers, (connections, _) = self.split(state), self._layer_connections()
        lower, phi = self.input_state(x), 0.0
        for s, c in zip(layers, connections):
            phi = phi + (s * c.bottom_up(lower)[0]).flatten(1).sum(1)
            lower = s
        return phi

    def energy(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """E(s) = Σ G(s) − Φ(x, s) per sample (N,), minus g·ŷ for a linear readout (see the module docstring);
        differentiable in the parameters and in ``state``."""
        layers = self.split(state)
        e = sum(self.primitive(s).flatten(1).sum(1) for s in layers) - self.phi(state, x)
        _, readout = self._layer_connections()
        if readout is not None:
            g = state[:, self.offsets[-2] : self.offsets[-1]]  # the nudging force stored by settle (N, classes)
            e = e - (g * readout.bottom_up(layers[-1])[0]).sum(1)
        return e

    def feedforward_state(self, x: torch.Tensor) -> torch.Tensor:
        """A bottom-up pass through the same weights (each layer driven by the one below only): a warm start."""
        connections, _ = self._layer_connections()
        lower, layers = self.input_state(x), []
        for c in connections:
            lower = self.sigma(c.bottom_up(lower)[0])
            layers.append(lower)
        return self.join(layers)

    def settle(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        steps: int | None = None,
        force: Callable[[torch.Tensor], torch.Tensor] | None = None,
        tolerance: float | None = None,
    ) -> Settling:
        """Iterate s ← σ(∂Φ/∂s) (+ the nudging force) from ``state`` (zeros if None) for at most ``steps`` sweeps.

        Args:
            x: the clamped input (N, C, H, W).
            state: the starting state (N, H); only s_1 … s_L are read (g and ŷ follow from them).
            steps: the cap (default: free_steps).
            force: −β ∂C/∂ŷ as a function of the output (N, classes): ŷ for a linear readout, s_L otherwise;
                None: free phase.
            tolerance: stop once max |Δs| of a sweep < tolerance (default: the network's; 0 runs every step).

        Returns:
            Settling(state (N, H), sweeps used, max |Δs| of each sweep).

        Differentiable when autograd is on and the parameters require grad (backprop through time); otherwise
        run without a graph.
        """
        steps = self.free_steps if steps is None else steps
        tolerance = self.tolerance if tolerance is None else tolerance
        needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        # in the parameters' dtype under autocast too: a bf16 state could not resolve the tolerance
        with torch.set_grad_enabled(needs_graph), torch.autocast(x.device.type, enabled=False):
            layers, residuals = self._sweeps(x, state, steps, force, tolerance)
            return Settling(self.join(layers, force), len(residuals), torch.stack(residuals), tolerance)

    def _sweeps(self, x, state, steps, force, tolerance) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        connections, readout = self._layer_connections()
        # Channels-last images: oneDNN's convolutions run 1.3-1.7× faster on them and max pooling with switches
        # ~25× faster (32-64 5×5 net, batch 100, one thread).
        x0 = self.input_state(x).contiguous(memory_format=torch.channels_last)
        if state is None:
            layers = [x0.new_zeros(len(x0), *shape) for shape in self.shapes]
        else:
            layers = [s.to(x0.dtype) for s in self.split(state)]
        layers = [s.contiguous(memory_format=torch.channels_last) if s.dim() == 4 else s for s in layers]
        # bottom[l]: the drive of s_l from below, and the cache (pooling switches) of that convolution, which the
        # feedback into s_{l−1} needs; bottom[0] is the clamped input's drive, constant while settling.
        bottom = [c.bottom_up(lower) for c, lower in zip(connections, [x0, *layers[:-1]])]
        last = len(layers) - 1
        residuals = []
        for _ in range(steps):
            change = x0.new_zeros(())
            for group in self.groups:
                new = {}
                for l in group:
                    u = bottom[l][0]
                    if l < last:
                        u = u + connections[l + 1].top_down(layers[l + 1], bottom[l + 1][1]).view_as(u)
                    elif force is not None:
                        out = layers[l] if readout is None else readout.bottom_up(layers[l])[0]
                        push = force(out)  # −β ∂C/∂ŷ (N, classes)
                        u = u + (push if readout is None else readout.top_down(push).view_as(u))
                    new[l] = self.sigma(u)
                    if new[l].dim() == 4:  # a sum's layout follows its first term, which may not be channels-last
                        new[l] = new[l].contiguous(memory_format=torch.channels_last)
                for l, s in new.items():
                    change = torch.maximum(change, (s - layers[l]).detach().abs().amax())
                    layers[l] = s
                for l in group:
                    if l < last:  # s_l changed: the drive of s_{l+1} and its switches follow
                        bottom[l + 1] = connections[l + 1].bottom_up(layers[l])
            residuals.append(change)
            if settled(change, tolerance):
                break
        return layers, residuals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The output (N, classes) at the free fixed point, settled from zero: ŷ, or s_L for the energy readout."""
        return self.settle(x).state[:, self.layer_slice(self.num_layers)]
