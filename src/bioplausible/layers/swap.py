"""Swap the trainable layers of any ``nn.Module`` for their feedback versions, keeping the very same weights.

The swap matches modules by ``isinstance`` against the layer-type table (:mod:`.types`); the root module itself may
be a layer (``convert(nn.Linear(8, 4), "fa")`` returns the swapped layer). With an example input the model is
traced once (eval mode, no gradient, every random stream left as it was) to learn what only a forward pass shows:

* the order in which the layers run (feedback drawn per layer is drawn in that order, so a seed fixes it);
* each layer's input shape (DFA sizes its B from it; a convolution's input size is not in the module);
* the output layer: the one whose output *is* the model's output (``bp_layers=("last",)``); a model whose output
  is not one layer's output says so and asks for the layer's name;
* layers whose forward never runs: their weights are used functionally or not at all.

Modules that use their weights without calling their own forward (``FUNCTIONAL_USERS``: nn.MultiheadAttention),
and layer types the table does not know (nn.Embedding, nn.ConvTranspose2d, ...), keep backprop: they are listed
in the result's ``unchanged`` and named in a warning, never swapped silently to no effect.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError, IncompatibleError
from .feedback import FeedbackLayer, FeedbackMode
from .types import FUNCTIONAL_USERS, layer_type

OUTPUT_ALIASES = ("last", "output")


def kept_label(names: Iterable[str]) -> str:
    """How a rule with modules kept on backprop is labelled in tables and figures: "last layer bp", "stem, fc bp"."""
    shown = ["last layer" if n in OUTPUT_ALIASES else n for n in names]
    return f"{', '.join(dict.fromkeys(shown))} bp"


class KeptOnBackpropWarning(UserWarning):
    """Layers with weights that a rule cannot train keep their true gradient (backprop)."""


@dataclass
class Trace:
    """What one forward pass of the example input shows about the swappable layers."""

    order: list[str] = field(default_factory=list)  # layer names in the order they ran (first call)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # one sample's input shape per layer
    output_layer: str | None = None  # the layer whose output is the model's output
    output_shape: tuple[int, ...] = ()  # one sample's model output shape
    output_is_tensor: bool = True  # False for a model returning a tuple or a dict


@dataclass
class Swap:
    """The result of :func:`swap_layers`."""

    model: nn.Module  # the model (a new object only when the root itself was swapped)
    converted: list[str]  # swapped layers, in module order ("" is the root)
    unchanged: list[str]  # modules with parameters that keep their true gradient
    trace: Trace | None  # None without an example input
    kept_layers: set[str] = field(default_factory=set)  # swappable layers kept on backprop as asked (bp_layers)


def swappable_layers(model: nn.Module) -> list[str]:
    """Names of the modules a feedback rule can replace, in module order ("" for the root itself)."""
    names, skip = [], []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        if isinstance(module, FUNCTIONAL_USERS):
            skip.append(f"{name}." if name else "")
            continue
        if isinstance(module, FeedbackLayer):
            continue
        if layer_type(module) is not None:
            names.append(name)
    return names


@torch.no_grad()
def run_once(model: nn.Module, example_input: torch.Tensor):
    """``model(example_input)`` in eval mode on forked random streams, every module's mode restored after: a look
    at the model that changes nothing (no batch-norm statistics moved, no random number drawn)."""
    devices = [example_input.device] if example_input.device.type == "cuda" else []
    was_training = {m: m.training for m in model.modules()}
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            return model(example_input)
    finally:
        for module, mode in was_training.items():
            module.training = mode


@torch.no_grad()
def trace(model: nn.Module, example_input: torch.Tensor, names: Iterable[str]) -> Trace:
    """Run ``model`` once on ``example_input`` and record :class:`Trace` for the layers ``names``."""
    result = Trace()
    outputs: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args, output):
            if name not in result.input_shapes:
                result.order.append(name)
                result.input_shapes[name] = tuple(args[0].shape[1:])
                outputs[name] = output

        return record

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        out = run_once(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(out, torch.Tensor):
        result.output_shape = tuple(out.shape[1:])
        result.output_layer = next((n for n, o in outputs.items() if o is out), None)
    else:
        result.output_is_tensor = False
    return result


def resolve_kept(
    names: Iterable[str],
    candidates: list[str],
    found: Trace | None,
    others: Iterable[str] = (),
    holders: Iterable[str] = (),
) -> set[str]:
    """Module names to keep on backprop, with ``last`` / ``output`` resolved to the output layer. A name may be a
    swappable layer (``candidates``) or any other module holding weights (``holders``): one that no rule swaps
    (``others``: custom modules, attention; naming one says that keeping its true gradient is intended, and
    silences the KeptOnBackpropWarning about it) or one that contains layers (a block). A named module keeps its
    whole subtree on backprop."""
    resolved, others, holders = set(), list(others), set(holders)
    for name in names:
        if name in OUTPUT_ALIASES:
            if found is None:
                raise ConfigError(
                    f"bp_layers={name!r} needs to know which layer produces the model's output: pass an example "
                    "input (convert(model, rule, example_input=x[:1], ...)) or name the layer"
                )
            if found.output_layer is None:
                raise ConfigError(
                    f"bp_layers={name!r}: no single layer's output is the model's output (it is computed after the "
                    f"last layer), so name the layer to keep on backprop; layers: {', '.join(candidates)}"
                )
            name = found.output_layer
        if name not in candidates and name not in holders:
            raise ConfigError(
                f"bp_layers names {name!r}, which is not a module of the model holding weights; choose a layer the "
                "rule can swap (last, "
                + ", ".join(candidates)
                + ")"
                + (f", a module no rule swaps, to keep it without a warning ({', '.join(others)})" if others else "")
                + ", or a module containing layers (a block), which keeps all of them"
            )
        resolved.add(name)
    return resolved


LEGACY_REPARAMETRIZE = ("WeightNorm", "SpectralNorm")  # torch.nn.utils.weight_norm / spectral_norm's hooks


def refuse_reparametrized(name: str, layer: nn.Module) -> None:
    """IncompatibleError for a layer whose weight is computed from other parameters (weight_norm, spectral_norm,
    orthogonal, as parametrizations or as the older hooks): its feedback version would hold a copy of the weight
    and train it directly, or lose it."""
    hooks = [type(h).__name__ for h in layer._forward_pre_hooks.values() if type(h).__name__ in LEGACY_REPARAMETRIZE]
    if torch.nn.utils.parametrize.is_parametrized(layer) or hooks:
        kind = ", ".join(hooks) or ", ".join(layer.parametrizations.keys()) + " parametrized"
        raise IncompatibleError(
            f"layer {name or type(layer).__name__!r} has a reparametrized weight ({kind}), which the rule's feedback "
            "version cannot keep: remove it first (torch.nn.utils.parametrize.remove_parametrizations, or "
            "torch.nn.utils.remove_weight_norm / remove_spectral_norm), or keep the layer on backprop (bp_layers)"
        )


def swap_layers(
    model: nn.Module,
    mode: Callable[[str, nn.Module], FeedbackMode],
    keep: Iterable[str] = (),
    example_input: torch.Tensor | None = None,
) -> Swap:
    """Replace every swappable layer not in ``keep`` by its feedback version with ``mode(name, layer)``, in place.

    Raises:
        ConfigError: a name in ``keep`` that is not a swappable layer, or an output alias that cannot be resolved.
        IncompatibleError: a layer configuration the feedback version cannot serve (e.g. circular padding).
    """
    candidates = swappable_layers(model)
    found = trace(model, example_input, candidates) if example_input is not None else None
    kept = resolve_kept(keep, candidates, found, unswappable_owners(model, candidates), weight_holders(model))
    within = [n for n in candidates if n in kept or any(n.startswith(f"{k}.") for k in kept if k)]
    converted, never_ran = [], []
    for name in candidates:
        if name in within:  # named, or inside a named module: its whole subtree keeps backprop
            continue
        if found is not None and name not in found.order:  # its weights, if used at all, are used functionally:
            never_ran.append(name)  # swapped, it would be listed as the rule's while keeping its true gradient
            continue
        old = model.get_submodule(name)
        entry = layer_type(old)
        refuse_reparametrized(name, old)
        entry.check(old)
        new = entry.feedback_class.from_module(old, mode(name, old))
        # every name the layer is registered under (self.b = self.a): one left holding the old layer would run
        # it with its true gradient, unseen by named_modules' deduplicated listing
        for alias in [n for n, m in model.named_modules(remove_duplicate=False) if m is old]:
            if alias:
                parent, _, child = alias.rpartition(".")
                setattr(model.get_submodule(parent), child, new)
            else:
                model = new
        converted.append(name)
    owners = [owner_name(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
    unchanged = [n for n in dict.fromkeys(owners) if n not in converted]
    if converted:  # a model with nothing to convert is refused by the rule, with the reason
        warn_kept_on_backprop(model, never_ran, kept)
    return Swap(model, converted, unchanged, found, set(within))


# Modules whose parameters act unit by unit (normalisation's scale and shift, PReLU's slopes): their backward pass
# transports no weight matrix, and keeping their true gradient is the convention of Xiao et al. and BioTorch, so
# they are not warned about. Any other module with parameters of its own (a custom layer, even one built from
# vectors, such as a low-rank u vᵀ) is named.
ELEMENTWISE = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.PReLU,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip


def owner_name(name: str, module: nn.Module) -> str:
    """The module a parameter belongs to as the user sees it: a parametrization's holder (``fc.parametrizations.
    weight`` is ``fc``'s), else the module itself."""
    if isinstance(module, torch.nn.utils.parametrize.ParametrizationList):
        return name.rsplit(".parametrizations.", 1)[0] if ".parametrizations." in name else ""
    return name


def weight_holders(model: nn.Module) -> list[str]:
    """Names of the modules (not the root, not a parametrization's internals) with parameters in their subtree."""
    return [
        n for n, m in model.named_modules() if n and ".parametrizations" not in n and any(True for _ in m.parameters())
    ]


def unswappable_owners(model: nn.Module, candidates: list[str]) -> list[str]:
    """Names of the modules with weights of their own that no rule swaps and the KeptOnBackpropWarning would name
    (custom modules, those using their weights functionally), outside the swappable ``candidates``."""
    owners = []
    for name, module in model.named_modules():
        if not name or name in candidates or isinstance(module, ELEMENTWISE):
            continue
        if isinstance(module, FUNCTIONAL_USERS) or (
            layer_type(module) is None and any(True for _ in module.parameters(False))
        ):
            owners.append(owner_name(name, module))
    return [n for n in dict.fromkeys(owners) if n]


def warn_kept_on_backprop(model: nn.Module, never_ran: list[str], kept: Iterable[str] = ()) -> None:
    """One warning naming the weight-bearing modules that keep backprop without being asked to; ``never_ran``:
    the layers left unswapped because they did not run on the example input; ``kept``: the layers asked to keep
    backprop (``bp_layers``), whose own parts are not named either."""
    silent = [f"{n} (never ran on the example input)" for n in never_ran]
    asked = set(kept) | set(never_ran)
    for name, module in model.named_modules():
        label = owner_name(name, module) or "the model's own parameters"
        if label in asked or any(label.startswith(f"{k}.") for k in asked if k):
            continue
        if isinstance(module, FUNCTIONAL_USERS):
            silent.append(f"{label} ({type(module).__name__}: uses its weights functionally)")
        elif layer_type(module) is None and not isinstance(module, ELEMENTWISE):
            params = ", ".join(n for n, _ in module.named_parameters(recurse=False))
            if params:
                silent.append(f"{label} {params} ({type(module).__name__}: no feedback version)")
    if silent:
        warnings.warn(
            "these modules keep their true gradient (backprop), not the rule's: " + "; ".join(silent),
            KeptOnBackpropWarning,
            stacklevel=4,
        )
