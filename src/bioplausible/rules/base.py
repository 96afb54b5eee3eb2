"""The rule contract every learning rule implements.

A rule does two things (see DESIGN.md, "Contracts"):

* ``prepare(model)`` turns any ``nn.Module`` into one the rule can train: it swaps layers and attaches feedback
  state as buffers or parameters, so ``model.state_dict()`` checkpoints it;
* ``step(model, x, y)`` leaves a gradient in ``.grad`` of every trainable parameter and returns scalar metrics.

Any ``torch.optim`` optimizer then applies the gradients, so optimizers, schedulers, the data-parallel all-reduce
and the gradient probes work the same for every rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import build_options


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


class Rule:
    """Base class: plain backpropagation through whatever layers ``prepare`` installed.

    Subclasses set ``Config`` (a dataclass of options, documented per field) and override ``prepare`` and, when
    the error does not simply flow backward through the layers, ``step``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = RuleConfig

    def __init__(self, loss: str = "ce", **options: Any):
        self.config = build_options(self.Config, options, f"rule {self.name!r}")
        self.loss_fn = LOSSES[loss]
        self.layers: dict[str, nn.Module] = {}  # layers prepare() swapped, by name
        self.unchanged: list[str] = []  # layers with parameters that keep their true gradient

    def prepare(self, model: nn.Module) -> nn.Module:
        """Make ``model`` trainable by this rule, in place; returns it."""
        return model

    def start_epoch(self, epoch: int) -> None:
        """Called by the engine before each epoch (schedules that alternate between phases use it)."""

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fill ``.grad`` for one batch; returns detached 0-dim tensors (``loss``, ``accuracy``).

        Tensors rather than floats so a GPU step need not wait for the device; the engine reads them in bulk.
        """
        out = model(x)
        loss = self.loss_fn(out, y)
        loss.backward()
        return batch_metrics(out, y, loss)

    def probe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Rule-specific probes on a fixed batch, as ``probe/<kind>/<layer>`` metrics (logged with the generic
        alignment probes every ``probe_every`` epochs). Must not change the model or leave gradients."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Rule state that is not in the model (e.g. a second optimizer), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def batch_metrics(out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loss": loss.detach(), "accuracy": (out.detach().argmax(-1) == y).float().mean()}
