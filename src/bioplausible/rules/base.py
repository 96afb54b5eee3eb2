"""The rule contract every learning rule implements, and what a rule declares about itself.

A rule (see DESIGN.md, "Contracts") is an ``nn.Module`` holding its own state (target propagation's inverses and
their optimizer, EP's persistent states), so ``rule.to(device)``, ``rule.state_dict()`` and the data-parallel path
see all of it. It does two things:

* ``prepare(model, example_input)`` makes any ``nn.Module`` trainable by the rule: it swaps layers and builds
  every shape-dependent piece (DFA's B, TP's inverses) from the example, once; nothing is drawn later;
* ``step(model, x, y, index=None)`` leaves a gradient in ``.grad`` of every trainable parameter of the model and
  returns scalar metrics; ``index`` holds the batch's dataset indices for rules with per-example state.

Any ``torch.optim`` optimizer then applies the gradients, so optimizers, schedulers, the data-parallel all-reduce
and the gradient probes work the same for every rule.

A rule *declares* (class attributes, read by the engine, the CLI, the report and the test matrix, which name no
rule): ``requires`` (protocols the model must offer), ``probes`` (the probe kinds it logs, with labels and units),
``figures`` (extra report figures), ``per_example_state`` (wants dataset indices) and ``stochastic`` (its step draws
random numbers).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import build_options
from ..distributed import SINGLE, Distributed
from ..errors import ConfigError, IncompatibleError
from ..layers.feedback import feedback_layers, true_gradient_requested
from ..probes.spec import ProbeSpec
from ..protocols import Protocol


@dataclass
class RuleConfig:
    """A rule without options."""


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error to one-hot targets, summed over classes and averaged over the batch."""
    target = F.one_hot(y, out.shape[-1]).to(out.dtype)
    return 0.5 * (out - target).pow(2).sum(-1).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"ce": cross_entropy, "mse": mse}
OUTPUT_NOT_A_TENSOR = (
    "rule {rule!r} trains a model whose forward returns one output tensor (N, classes); {model} returns something "
    "else (a tuple or a dict): wrap it in a module that returns the logits"
)


class Rule(nn.Module):
    """Base class: plain backpropagation through whatever layers ``prepare`` installed.

    Subclasses set ``name``, ``Config`` (a dataclass of options, one ``option`` per field) and their declarations,
    and override ``prepare`` and, when the error does not simply flow backward through the layers, ``step``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = RuleConfig
    requires: ClassVar[tuple[Protocol, ...]] = ()
    probes: ClassVar[tuple[ProbeSpec, ...]] = ()
    figures: ClassVar[tuple[Callable, ...]] = ()  # figure(runs, folder) -> [(title, png path)]
    per_example_state: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    loss_scaling: ClassVar[bool] = True  # its updates come from backward() of a loss (fp16 loss scaling applies)
    nudges: ClassVar[bool] = False  # runs a nudged phase: reads the architecture options marked ``nudged``
    # computes its whole update in the parameters' dtype, autocast or not (EP: bf16 cannot resolve a settling
    # tolerance): --precision is then refused as unread, not recorded as if it had been used
    full_precision: ClassVar[bool] = False

    def __init__(self, loss: str = "ce", **options: Any):
        super().__init__()
        self.config = build_options(self.Config, options, f"rule {self.name!r}")
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)} (got {loss!r})")
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]
        self.layers: dict[str, nn.Module] = {}  # layers prepare() swapped, by name (a plain dict: not submodules)
        self.unchanged: list[str] = []  # modules with parameters that keep their true gradient
        self.dist: Distributed = SINGLE  # the engine sets the data-parallel context
        self.probing = False  # True while a probe runs ``step`` to measure the rule (``probes.leaves_no_trace``)
        self.scaler = None  # the engine's fp16 loss scaler (torch.amp.GradScaler), if any

    @classmethod
    def describe(cls, options: dict[str, Any]) -> str:
        """The rule as a report labels it, from its (resolved) options: its name, plus what tells variants apart."""
        return cls.name

    def refuse_converted(self, model: nn.Module) -> None:
        """IncompatibleError when ``model`` was prepared by a rule already (marked by :meth:`mark_prepared`, or
        its layers carry a rule's feedback): its layers or hooks already belong to that rule."""
        converted = feedback_layers(model)
        owner = model.__dict__.get(PREPARED_BY)
        if owner or converted:
            what = f"rule {owner!r}" if owner else f"its layers carry {next(iter(converted.values())).feedback_mode!r}"
            raise IncompatibleError(
                f"{type(model).__name__} is already converted ({what}); rule {self.name!r} needs the original model: "
                "convert a fresh copy"
            )

    def mark_prepared(self, model: nn.Module) -> None:
        """Record on ``model`` that this rule prepared it (a copy of the model carries the mark, as it carries the
        rule's layers and hooks), so a second ``convert`` is refused for every rule alike."""
        model.__dict__[PREPARED_BY] = self.name

    def check_requirements(self, model: nn.Module) -> None:
        """IncompatibleError naming the first declared requirement ``model`` does not meet, or saying that the
        model was converted already."""
        self.refuse_converted(model)
        for protocol in self.requires:
            if not protocol(model):
                raise IncompatibleError(f"rule {self.name!r} needs {protocol.needs}; {protocol.why_not(model)}")

    def check_init(self, init: str, optimizer: str) -> None:
        """Told the scheme ``--init`` drew the weights with and the optimizer that will apply the updates (build
        calls it before :meth:`prepare`): a rule whose own draws assume another scale warns here where that
        matters. Nothing by default."""

    def prepare(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        """Make ``model`` trainable by this rule, in place; returns it (a new object only if the root was swapped).

        ``example_input``: a batch of inputs (one example suffices) to size shape-dependent state; rules that need
        one say so when it is missing."""
        self.check_requirements(model)
        return model

    def plan(self, epochs: int) -> None:
        """Called by the engine with the run's number of epochs before the first one: a rule whose options name an
        epoch refuses one the run never reaches (``ConfigError``), which would otherwise silently do nothing."""

    def start_epoch(self, epoch: int) -> None:
        """Called by the engine before each epoch (schedules that alternate between phases use it)."""

    def predict(self, model: nn.Module, x: torch.Tensor, split: str, offset: int, size: int | None = None):
        """The model's output (N, classes) on evaluation batch ``x``, examples ``offset`` … of ``split`` ("test",
        "val", "test-steps"), a set of ``size`` examples: ``model(x)``. A rule that keeps per-example evaluation
        state (EP's ``persistent_eval``) overrides it."""
        return model(x)

    def step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Fill ``.grad`` for one batch; returns detached 0-dim tensors (``loss``, ``accuracy``, ...).

        Tensors rather than floats so a GPU step need not wait for the device; the engine reads them in bulk.
        """
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise IncompatibleError(OUTPUT_NOT_A_TENSOR.format(rule=self.name, model=type(model).__name__))
        loss = self.loss_fn(out, y)
        self.backward(loss)
        return batch_metrics(out, y, loss)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled by the fp16 loss scaler when the engine uses one."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Rule-specific probes on a fixed batch, as ``probe/<kind>/<layer>`` metrics of the declared kinds (logged
        with the generic alignment probes every ``probe_every`` epochs). Must not change the model or the rule."""
        return {}

    def reference_loss(self, num_classes: int) -> float:
        """The loss of a chance-level prediction (zero output): divergence is judged against it."""
        out = torch.zeros(1, num_classes)
        return float(self.loss_fn(out, torch.zeros(1, dtype=torch.long)))

    def diverged(self, metrics: dict[str, float]) -> str | None:
        """A reason to end the run as diverged, from one step's metrics (beyond a non-finite or huge loss)."""
        return None

    def refuse_plain_backward(self, model: nn.Module, layers: Iterable[nn.Module] = ()) -> None:
        """For rules whose update is not a backward pass through the model (target propagation, EP): a
        ``loss.backward()`` on the output of the model, or of any of ``layers`` called on their own, outside the
        rule's own work (:func:`rule_at_work`) would silently train it by backprop, so a gradient reaching such an
        output raises instead (the true-gradient probes, inside ``exact_gradients``, pass)."""

        def watch(module, args, output):
            watched = module.training and isinstance(output, torch.Tensor) and output.requires_grad
            if watched and not true_gradient_requested() and not _AT_WORK.get():
                output.register_hook(refuse)

        def refuse(grad):
            raise IncompatibleError(
                f"rule {self.name!r} trains with rule.step(model, x, y); loss.backward() on its model's output "
                "would train the model by backprop, not by the rule"
            )

        for module in [model, *layers]:
            module.register_forward_hook(watch)


PREPARED_BY = "_bioplausible_prepared_by"  # the attribute that marks a model a rule has prepared
_AT_WORK: contextvars.ContextVar[bool] = contextvars.ContextVar("rule_at_work", default=False)


@contextmanager
def rule_at_work() -> Iterator[None]:
    """Within the block a rule's own forward and backward passes run (its step, its probes): the guard of
    :meth:`Rule.refuse_plain_backward` lets them through."""
    token = _AT_WORK.set(True)
    try:
        yield
    finally:
        _AT_WORK.reset(token)


def batch_metrics(out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loss": loss.detach(), "accuracy": (out.detach().argmax(-1) == y).float().mean()}
