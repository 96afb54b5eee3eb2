"""Target propagation: dtp, sdtp and aosdtp, one rule with three presets.

Papers:
    Lee, Zhang, Fischer & Bengio 2015, "Difference target propagation" (DTP).
    Bartunov, Santoro, Richards, Marris, Hinton & Lillicrap 2018, "Assessing the scalability of
    biologically-motivated deep learning algorithms and architectures" (SDTP, AO-SDTP; parallel and alternating).

Instead of errors, every layer receives a *target* ĥ_l for its output and learns locally to reach it. With the
forward layers h_l = f_l(h_{l−1}) = s_l(W_l h_{l−1} + b_l) and learned approximate inverses

    g_l(h_l) = s_{l−1}(V_l h_l + c_l) ≈ h_{l−1}          (for l ≥ 2: h_0 needs no target; dtp does not use g_L)

the targets travel down by the difference correction, which cancels the inverse's reconstruction error:

    ĥ_{l−1} = h_{l−1} + g_l(ĥ_l) − g_l(h_l)

and the top target is
    dtp:          ĥ_{L−1} = h_{L−1} − α ∂ℓ/∂h_{L−1}       (one gradient step; ℓ the loss of each example)
    sdtp, aosdtp: ĥ_L = argmin L = the one-hot label;  ĥ_{L−1} = h_{L−1} + g_L(ĥ_L) − g_L(h_L)
                  (no gradient anywhere). For cross-entropy, h_L is read in probability space, h_L = softmax(ŷ),
                  where the label is the minimiser; for mse, h_L = ŷ.
    aosdtp:       h_L = [h_L; z] with z = A h_{L−1}, A fixed random and untrained ("auxiliary outputs"), and
                  ĥ_L = [label; z]: the extra units carry no target of their own (their target is their value), but
                  they give g_L a higher-dimensional input, so the penultimate targets are not confined to the
                  ≤ n_classes-dimensional image of the label space (the motivation Bartunov et al. give: a narrow
                  output keeps too little information about h_{L−1} for its inverse). ``aux_outputs`` sets their
                  number; the default 32 is this library's choice, for MNIST-sized nets. Too few for a wide
                  penultimate layer make the targets' steps large: on CIFAR-10's 3×1024 tanh net 64 gave target
                  steps ‖ĥ − h‖ of 4–18 per example and 65.7 % test error after 40 epochs, 1024 gave steps of
                  0.4–1.0 and 56.4 % (``results/cifar10-fc-lr``, ``AUX=1024 RULE=aosdtp``).

Forward weights: layer l < L minimises ½‖h_l − ĥ_l‖² (summed over units, averaged over the batch) with its input
h_{l−1} detached, so no gradient crosses a layer. The output layer is trained on the task loss itself in every
variant (in sdtp the label is its target: the task loss is minimised there). With exact inverses on a linear net
of orthogonal W, dtp gives α times the backprop gradient in every hidden layer (the oracle test).

Inverses: trained on corrupted inputs h̃_{l−1} = h_{l−1} + ε, ε ~ N(0, σ²):
    noise-preserving (dtp, as in Lee et al.):       ½‖g_l(f_l(h̃_{l−1})) − h̃_{l−1}‖²
    de-noising       (sdtp, aosdtp):                ½‖g_l(f_l(h̃_{l−1})) − h_{l−1}‖²
This is the assignment the project's design gives the variants; ``inverse_loss`` selects either for any of them.
The inverses are not part of the model: the rule keeps them (and the auxiliary matrix A) in its own module and
trains them with its own optimizer (``inverse_optimizer``, ``inverse_lr``); they are in ``state_dict()``.
Schedules (Bartunov et al.): ``parallel`` updates inverses and forward weights on every batch; ``alternating``
spends one epoch on the inverses only (forward ``.grad`` stays None, so the optimizer leaves W alone), then one on
the forward weights only, and so on, starting with the inverses; each inverse epoch starts the inverses' optimizer
afresh (its state from two epochs back is stale: see ``start_epoch``).

Architectures: any model exposing the layered protocol (:mod:`bioplausible.archs.spec`), where layer l reads the
concatenation x_l of earlier features, each through a fixed map ``pre`` (flatten, max-pool, average pool):
    * the inverse of layer l maps h_l back to the hidden part of x_l (the input h_0 needs no target): a Linear for
      a dense layer, a ConvTranspose2d of the same geometry for a Conv2d, and for a LocallyConnected2d the
      transposed locally connected map (per-position matmuls scattered back with ``fold``);
    * a target difference for x_l is cut into the blocks of the features it read and mapped back through ``pre``
      by its pseudo-inverse (flatten: reshape; max-pool: to the arg-max position; average pool: spread evenly);
    * on dense nets a feature read by several layers receives a target from each reader and takes their mean:
      ĥ_i = h_i + mean_r [g_r(ĥ_r) − g_r(h_r)]_i (in dtp, the output layer's share is its gradient step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Unread, option
from ..errors import ConfigError, IncompatibleError
from ..layered import layered_view
from ..layers.types import layer_type
from ..optim import adam
from ..probes import angle_deg
from ..protocols import LAYERED
from ..registry import RULES
from .base import ProbeSpec, Rule, batch_metrics, rule_at_work

SCHEDULES = ("parallel", "alternating")
TOP_TARGETS = ("gradient", "label")
INVERSE_LOSSES = ("noise-preserving", "denoising")
INVERSE_OPTIMIZERS = ("adam", "sgd")


ALPHA_DEFAULT = 0.2  # DTPConfig.alpha's default: another value was asked for


@dataclass
class DTPConfig:
    alpha: float = option(
        ALPHA_DEFAULT,
        "top_target=gradient: penultimate target ĥ = h − α·∂L/∂h (per example), α in (0, 1]",
        above=0,
        max=1,
    )
    noise: float = option(0.2, "σ of the Gaussian noise on the inverses' training inputs", min=0)
    inverse_lr: float = option(1e-3, "learning rate of the inverses (their own optimizer, not the engine's)", above=0)
    inverse_optimizer: str = option("adam", "optimizer of the inverses", choices=INVERSE_OPTIMIZERS)
    schedule: str = option(
        "parallel",
        "parallel: inverses and forward weights every batch; alternating: one epoch each, inverses first",
        choices=SCHEDULES,
    )
    top_target: str = option(
        "gradient",
        "gradient: penultimate target by a gradient step (dtp); label: the label is the top target (sdtp)",
        choices=TOP_TARGETS,
    )
    inverse_loss: str = option(
        "noise-preserving", "inverse loss: reconstruct the noisy input, or de-noise it", choices=INVERSE_LOSSES
    )
    aux_outputs: int = option(
        0, "fixed random auxiliary output units feeding the output layer's inverse (aosdtp)", min=0
    )

    def validate(self) -> None:
        if self.aux_outputs and self.top_target != "label":
            raise ConfigError("aux_outputs feed the output layer's inverse, which only top_target='label' uses")

    def unread(self) -> dict[str, Unread]:
        """Options given a value this target mode does not read (refused by ``build.resolve_config``; a sweep
        drops the drawn ones)."""
        if self.top_target == "label" and self.alpha != ALPHA_DEFAULT:
            return {
                "alpha": Unread(
                    "alpha is the gradient step of top_target='gradient'; with the label as the top target (sdtp, "
                    "aosdtp) no gradient step is taken",
                    "drop --alpha, or use --top-target gradient",
                )
            }
        return {}


@dataclass
class SDTPConfig(DTPConfig):
    noise: float = option(0.1, "σ of the Gaussian noise on the inverses' training inputs", min=0)
    top_target: str = option(
        "label",
        "gradient: penultimate target by a gradient step (dtp); label: the label is the top target (sdtp)",
        choices=TOP_TARGETS,
    )
    inverse_loss: str = option(
        "denoising", "inverse loss: reconstruct the noisy input, or de-noise it", choices=INVERSE_LOSSES
    )


@dataclass
class AOSDTPConfig(SDTPConfig):
    aux_outputs: int = option(32, "fixed random auxiliary output units feeding the output layer's inverse (aosdtp)")


def transposed_op(module: nn.Module, channels_in: int, hidden: torch.Size) -> nn.Module:
    """The learnable map h ↦ V_l h + c_l of layer ``module``'s inverse: from the layer's output (``channels_in``
    features or channels) to the hidden part of its input, of shape ``hidden`` (N, C, …); from the layer table."""
    entry = layer_type(module)
    if entry is None or entry.transpose is None:
        raise IncompatibleError(
            "target propagation builds inverses for Linear, LocallyConnected2d and (ungrouped, numerically padded) "
            f"Conv2d layers, not for {module}"
        )
    return entry.transpose(module, channels_in, hidden)


class Inverse(nn.Module):
    """g_l(h) = s(V_l h + c_l): the transposed operation, then the activation of each feature it reconstructs."""

    def __init__(self, op: nn.Module, activations: list[nn.Module | None], sizes: list[int]):
        super().__init__()
        self.op = op
        self.sizes = sizes
        same = all(a is activations[0] for a in activations)
        self.activations = [activations[0]] if same else activations  # not submodules: shared with the model

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = self.op(h)
        if len(self.activations) == 1:
            return u if self.activations[0] is None else self.activations[0](u)
        blocks = u.split(self.sizes, dim=1)
        return torch.cat([b if a is None else a(b) for a, b in zip(self.activations, blocks)], dim=1)


@dataclass
class Reader:
    """A layer as a reader of earlier features: where each hidden feature sits in its input x_l (along dim 1)."""

    index: int  # position in the spec list; its output is feature index + 1
    sources: list[tuple[int, int, int]]  # (feature i ≥ 1, start, stop) of each hidden feature's block in x_l
    inverse: int | None = None  # position in TargetPropagation.inverses

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The part of x_l that holds hidden features: x_l itself unless the layer also reads the input h_0."""
        if all(prev[2] == nxt[1] for prev, nxt in zip(self.sources, self.sources[1:])):
            start, stop = self.sources[0][1], self.sources[-1][2]
            return x if (start, stop) == (0, x.shape[1]) else x[:, start:stop]
        return torch.cat([x[:, a:b] for _, a, b in self.sources], dim=1)

    @property
    def sizes(self) -> list[int]:
        return [b - a for _, a, b in self.sources]


def mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.stack(tensors).mean(0)


def lift(delta: torch.Tensor, pre, h: torch.Tensor) -> torch.Tensor:
    """Map a target difference for pre(h) back to h's space with pre's pseudo-inverse J⁺ = Jᵀ (J Jᵀ)⁻¹.

    For the maps the layered protocol allows (each output reads a disjoint window with equal non-negative
    weights: flatten, max-pool, average pools) J Jᵀ is diagonal with entries pre(Jᵀ1), so two vector-Jacobian
    products give it exactly: reshape for flatten, the arg-max position for max-pool, an even spread for a mean."""
    if pre is None or delta.shape == h.shape:
        return delta
    if delta.numel() == h.numel():  # flatten (or a pool of a 1×1 map): a reshape
        return delta.reshape(h.shape)
    with torch.enable_grad():
        hv = h.detach().requires_grad_()
        t = pre(hv)
        (jt1,) = torch.autograd.grad(t, hv, torch.ones_like(t), retain_graph=True)
        (lifted,) = torch.autograd.grad(t, hv, delta / pre(jt1))
    return lifted


class TargetPropagation(Rule):
    """Difference target propagation and its simplified variants; see the module docstring."""

    name = "dtp"
    Config = DTPConfig

    requires = (LAYERED,)
    stochastic = True
    probes = (
        ProbeSpec(
            "tp_target_norm", "‖ĥ − h‖ per example", title="Target propagation: size of each layer's target step"
        ),
        ProbeSpec(
            "tp_target_angle", "angle between ĥ − h and −∂L/∂h", "°", title="Target propagation: target vs gradient"
        ),
        ProbeSpec(
            "tp_inverse_error",
            "‖g(f(x)) − x‖ / ‖x‖",
            scale="log",
            title="Target propagation: inverse reconstruction error per layer",
        ),
    )

    def __init__(self, loss: str = "ce", **options: Any):
        super().__init__(loss=loss, **options)
        self.phase = "parallel" if self.config.schedule == "parallel" else "inverse"
        self.specs: list = []
        self.readers: list[Reader] = []
        self.inverses = nn.ModuleList()  # built by prepare(), from the example input's shapes
        self.register_buffer("aux", None)  # A: (aux_outputs, in_features of the output layer)
        self.optimizer: torch.optim.Optimizer | None = None
        self.names: list[str] = []

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        schedule = options.get("schedule")
        return f"{cls.name} ({schedule})" if schedule else cls.name

    # ----------------------------------------------------------------------------------------------- set-up
    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        self.refuse_converted(model)
        try:
            self.specs = layered_view(model)
        except IncompatibleError as err:
            raise IncompatibleError(f"rule {self.name!r} needs {LAYERED.needs}; here: {err}") from None
        if len(self.specs) < 2 or self.specs[-1].activation is not None:
            raise IncompatibleError(
                f"rule {self.name!r} needs at least one hidden layer and an output layer without activation"
            )
        if self.config.aux_outputs and not isinstance(self.specs[-1].module, nn.Linear):
            raise IncompatibleError("aux_outputs need a Linear output layer")
        if example_input is None:
            raise ConfigError(
                f"{self.name} builds its inverses from the layers' shapes: pass an example input, "
                f"convert(model, {self.name!r}, example_input=x[:1])"
            )
        names = {id(m): n for n, m in model.named_modules()}
        self.names = [names.get(id(s.module), f"layer{k + 1}") for k, s in enumerate(self.specs)]
        self.build(example_input, next(model.parameters()).dtype)
        # the targets come from rule.step, never from a backward pass: through the model or through its layers
        self.refuse_plain_backward(model, [spec.module for spec in self.specs])
        return model

    @torch.no_grad()
    def build(self, x: torch.Tensor, dtype: torch.dtype) -> None:
        """The inverses (and A, and the inverses' optimizer), sized by one forward pass of ``x[:1]``."""
        features = [x[:1].to(dtype)]
        inputs = []
        for spec in self.specs:
            inputs.append(spec.layer_input(features))
            features.append(spec.layer_output(inputs[-1]))
        last = len(self.specs) - 1
        device = x.device
        self.readers, modules = [], []
        for k, spec in enumerate(self.specs):
            start, sources = 0, []
            for i in spec.inputs:
                size = (features[i] if spec.pre is None else spec.pre(features[i])).shape[1]
                if i >= 1:
                    sources.append((i, start, start + size))
                start += size
            reader = Reader(k, sources)
            self.readers.append(reader)
            if not sources or (k == last and self.config.top_target == "gradient"):
                continue
            channels_in = features[k + 1].shape[1] + (self.config.aux_outputs if k == last else 0)
            op = transposed_op(spec.module, channels_in, reader.hidden(inputs[k]).shape)
            activations = [self.specs[i - 1].activation for i, _, _ in sources]
            reader.inverse = len(modules)
            modules.append(Inverse(op, activations, reader.sizes))
        self.inverses = nn.ModuleList(modules).to(device=device, dtype=dtype)
        if self.config.aux_outputs:
            out = self.specs[-1].module
            bound = 1.0 / out.in_features**0.5
            self.aux = torch.empty(self.config.aux_outputs, out.in_features, device=device, dtype=dtype)
            self.aux.uniform_(-bound, bound)
        params = list(self.inverses.parameters())
        if not params:  # e.g. dtp with one hidden layer: its target is the gradient step, no inverse needed
            self.optimizer = None
        elif self.config.inverse_optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=self.config.inverse_lr)
        else:
            self.optimizer = adam(params, lr=self.config.inverse_lr)

    def _follow(self, model: nn.Module) -> None:
        """Keep the inverses (with their optimizer state) on the model's device and dtype."""
        reference = next(model.parameters())
        where = {"device": reference.device, "dtype": reference.dtype}
        mine = next(self.inverses.parameters(), None)
        if mine is not None and (mine.device, mine.dtype) != (reference.device, reference.dtype):
            self.to(**where)  # in place: the optimizer keeps the same Parameter objects
            for state in self.optimizer.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        state[key] = value.to(**where)

    def noise_like(self, x: torch.Tensor) -> torch.Tensor:
        """σ·ε, ε ~ N(0, 1), shaped like x: drawn for the whole global batch and cut to this process's rows, so N
        data-parallel processes draw exactly what one process draws."""
        rows = self.dist.global_rows(len(x))
        eps = torch.empty(rows, *x.shape[1:], device=x.device, dtype=x.dtype).normal_(0, self.config.noise)
        return self.dist.share(eps)

    def start_epoch(self, epoch: int) -> None:
        if self.config.schedule == "alternating":
            phase = "inverse" if epoch % 2 == 0 else "forward"
            if phase == "inverse" and self.phase != "inverse" and self.optimizer is not None:
                # A fresh optimizer for each inverse epoch: Adam's moments from the last one describe the inverses
                # of forward weights that a whole forward epoch has since moved. Its small second moments (the
                # inverses had converged) divide the new, large gradients, so the first steps are many times
                # inverse_lr, saturate the inverses' units and leave them stuck, and the targets they give the next
                # forward epoch wreck the net (sdtp collapsed to chance on MNIST).
                self.optimizer.state.clear()
            self.phase = phase

    # ------------------------------------------------------------------------------------------- the rule
    def forward_layers(self, x: torch.Tensor, leaf_top: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features [h_0, …, h_L] and layer inputs [x_1, …, x_L]. Each x_l is built from detached features, so
        (with grad enabled) every h_l has a graph back to its own layer's parameters only. ``leaf_top``: x_L
        requires grad, to collect the one error step dtp takes, ∂L/∂x_L."""
        features, detached, inputs = [x], [x], []
        for k, spec in enumerate(self.specs):
            x_l = spec.layer_input(detached)
            if leaf_top and k == len(self.specs) - 1:
                x_l = x_l.detach().requires_grad_()
            inputs.append(x_l)
            features.append(spec.layer_output(x_l))
            detached.append(features[-1].detach())
        return features, inputs

    def top_space(self, out: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        """h_L as the output layer's inverse reads it: softmax(ŷ) for cross-entropy (ŷ for mse), plus z = A x."""
        h = out.softmax(-1) if self.loss_name == "ce" else out
        return h if self.aux is None else torch.cat([h, x_out @ self.aux.t()], dim=1)

    def inverse_of(self, reader: Reader, h: torch.Tensor) -> torch.Tensor:
        return self.inverses[reader.inverse](h)

    @torch.no_grad()
    def targets(
        self,
        features: list[torch.Tensor],
        inputs: list[torch.Tensor],
        y: torch.Tensor,
        top_grad: torch.Tensor | None,
    ) -> list[torch.Tensor | None]:
        """ĥ_i for every hidden feature i = 1..L−1 (index 0 and L are None).

        ``top_grad`` is ∂L/∂x_L (per example) for top_target=gradient."""
        last = len(self.specs) - 1
        shares: list[list[torch.Tensor]] = [[] for _ in features]  # target differences each feature receives
        for reader in reversed(self.readers):
            k = reader.index
            if not reader.sources:
                continue
            if k == last and self.config.top_target == "gradient":
                delta = reader.hidden(-self.config.alpha * top_grad)
            elif reader.inverse is None:
                continue
            else:
                h = features[k + 1]
                if k == last:
                    h = self.top_space(h, inputs[k])
                    target = F.one_hot(y, features[-1].shape[1]).to(h.dtype)
                    if self.aux is not None:
                        target = torch.cat([target, h[:, target.shape[1] :]], dim=1)  # aux units keep their value
                elif shares[k + 1]:
                    target = h + mean(shares[k + 1])
                else:
                    continue  # no reader sent this layer a target: nothing to pass down
                both = self.inverse_of(reader, torch.cat([target, h]))  # g(ĥ) and g(h) in one pass
                delta = both[: len(h)] - both[len(h) :]
            pre = self.specs[k].pre
            for (i, _, _), block in zip(reader.sources, delta.split(reader.sizes, dim=1)):
                shares[i].append(lift(block, pre, features[i]))
        targets: list[torch.Tensor | None] = [None] * len(features)
        for i in range(1, len(features) - 1):
            targets[i] = features[i] + mean(shares[i]) if shares[i] else features[i]
        return targets

    def step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        with rule_at_work():  # its own passes through the layers, which refuse anyone else's backward
            return self._step(model, x, y)

    def _step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self._follow(model)
        train_forward = self.phase in ("parallel", "forward")
        train_inverse = self.phase in ("parallel", "inverse") and len(self.inverses) > 0
        gradient_top = train_forward and self.config.top_target == "gradient"
        with torch.set_grad_enabled(train_forward):
            features, inputs = self.forward_layers(x, leaf_top=gradient_top)
            out = features[-1]
            loss = self.loss_fn(out, y)
        if train_forward:
            top_grad = None
            if gradient_top:
                (top_grad,) = torch.autograd.grad(loss, inputs[-1], retain_graph=True)
                top_grad = top_grad * len(y)  # per-example gradient: the mean loss divides by the batch size
            targets = self.targets(features, inputs, y, top_grad)
            local = sum(F.mse_loss(h, t, reduction="sum") for h, t in zip(features, targets) if t is not None)
            self.backward(loss + 0.5 * local / len(y))  # task loss at the output, ½‖h_l − ĥ_l‖² per example below
        if train_inverse:
            self.train_inverses(inputs)
        return batch_metrics(out, y, loss)

    def train_inverses(self, inputs: list[torch.Tensor]) -> None:
        """One step of the inverses' optimizer on ``inverse_loss`` (gradients averaged over data-parallel
        processes first, so every copy of the inverses stays identical)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.inverse_loss(inputs).backward()
        self.dist.average(self.inverses)
        self.optimizer.step()

    def inverse_loss(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Σ_l ½‖g_l(f_l(x̃_l)) − x*_l‖² per example, x̃_l = x_l + ε on the hidden part of x_l, and x*_l = x̃_l
        (noise-preserving) or x_l (de-noising); f_l runs without a graph, so only the inverses get gradients."""
        last = len(self.specs) - 1
        total = inputs[0].new_zeros(())
        for reader in self.readers:
            if reader.inverse is None:
                continue
            x = inputs[reader.index].detach()
            if reader.hidden(x) is x:
                noisy = x + self.noise_like(x)
            else:  # the input h_0 that a dense layer also reads is left clean
                noisy = x.clone()
                for _, a, b in reader.sources:
                    noisy[:, a:b] = x[:, a:b] + self.noise_like(x[:, a:b])
            with torch.no_grad():
                h = self.specs[reader.index].layer_output(noisy)
                if reader.index == last:
                    h = self.top_space(h, noisy)
            goal = reader.hidden(noisy if self.config.inverse_loss == "noise-preserving" else x)
            total = total + F.mse_loss(self.inverse_of(reader, h), goal, reduction="sum")
        return 0.5 * total / len(inputs[0])

    # -------------------------------------------------------------------------------------------- probes
    def probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Per layer: the inverse's relative reconstruction error ‖g(f(x)) − x‖/‖x‖ (clean input), the angle
        between the target step ĥ − h and −∂L/∂h (degrees), and the mean per-example norm ‖ĥ − h‖."""
        with rule_at_work():
            return self._probe(model, x, y)

    def _probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self._follow(model)
        with torch.enable_grad():
            features, inputs = [x], []
            for spec in self.specs:  # the full graph, for the true ∂L/∂h (autograd.grad leaves .grad alone)
                inputs.append(spec.layer_input(features))
                features.append(spec.layer_output(inputs[-1]))
            loss = self.loss_fn(features[-1], y) * len(y)  # per-example gradients, as the targets use
            grads = torch.autograd.grad(loss, [inputs[-1], *features[1:-1]])
        features, inputs = [f.detach() for f in features], [x_l.detach() for x_l in inputs]
        metrics: dict[str, float] = {}
        with torch.no_grad():
            targets = self.targets(features, inputs, y, grads[0])
            for k, (h, t, g) in enumerate(zip(features[1:-1], targets[1:-1], grads[1:])):
                step = (t - h).flatten(1)
                metrics[f"probe/tp_target_norm/{self.names[k]}"] = step.norm(dim=1).mean().item()
                metrics[f"probe/tp_target_angle/{self.names[k]}"] = angle_deg(step, -g)
            for reader in self.readers:
                if reader.inverse is None:
                    continue
                h = features[reader.index + 1]
                if reader.index == len(self.specs) - 1:
                    h = self.top_space(h, inputs[reader.index])
                original = reader.hidden(inputs[reader.index])
                error = (self.inverse_of(reader, h) - original).norm() / original.norm().clamp_min(1e-12)
                metrics[f"probe/tp_inverse_error/{self.names[reader.index]}"] = error.item()
        return metrics

    # --------------------------------------------------------------------------------------- checkpoints
    def get_extra_state(self) -> dict[str, Any]:
        """What state_dict() holds besides the inverses and A: the inverses' optimizer and the phase."""
        return {"optimizer": self.optimizer.state_dict() if self.optimizer else None, "phase": self.phase}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.phase = state["phase"]


@RULES.register("dtp")
class DifferenceTargetPropagation(TargetPropagation):
    """DTP (Lee et al. 2015): penultimate target by a gradient step, noise-preserving inverses."""

    name = "dtp"
    Config = DTPConfig


@RULES.register("sdtp")
class SimplifiedDifferenceTargetPropagation(TargetPropagation):
    """SDTP (Bartunov et al. 2018): the label is the top target, no gradient anywhere, de-noising inverses."""

    name = "sdtp"
    Config = SDTPConfig


@RULES.register("aosdtp")
class AuxiliaryOutputSDTP(TargetPropagation):
    """AO-SDTP (Bartunov et al. 2018): SDTP plus untrained random auxiliary outputs for the output inverse."""

    name = "aosdtp"
    Config = AOSDTPConfig
