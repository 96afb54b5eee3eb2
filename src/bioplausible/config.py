"""Typed configuration: every option is a dataclass field whose metadata says all the library needs to know.

    option(default, help, choices=..., min=..., above=..., role=..., resumable=...)

* ``help`` becomes the CLI help; ``choices`` and the bounds (``min``/``max`` inclusive, ``above``/``below``
  exclusive) are checked by :func:`check_fields` for every options class alike, so no class writes range checks
  by hand (a ``validate`` method is left only for rules that relate two fields);
* ``role`` says what a field is: ``setting`` (what the run computes; the default), ``location`` (where and how it
  runs: folders, device, threads, progress bars: never part of an experiment's identity), or ``fact`` (recorded by
  the engine, never set: package version, device used, dataset read);
* ``resumable`` marks the settings that may change when a run is resumed (more epochs); every other setting must
  match the saved run.

``TrainConfig`` is saved whole in ``config.json``: its own fields and the rule's, architecture's and dataset's
options with every default filled in (see :func:`bioplausible.build.resolve_config`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import ConfigError

ROLES = ("setting", "location", "fact")


def option(
    default: Any,
    help: str,
    choices: tuple | None = None,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
    role: str = "setting",
    resumable: bool = False,
    why: str = "",
    finite: bool = True,
    nudged: bool = False,
) -> Any:
    """A dataclass field with its CLI help, valid values and role attached as metadata (``why``: what goes wrong
    outside the bounds, appended to the error; ``finite``: whether a bounded value must be finite, as it must unless
    infinity means something, like "never"; ``nudged``: an architecture option only a rule with a nudged phase
    reads, refused with any other rule when set, see ``unread_nudged_options``)."""
    assert role in ROLES, role
    meta = {"help": help, "choices": choices, "min": min, "max": max, "above": above, "below": below, "why": why}
    meta.update(finite=finite, nudged=nudged)
    meta.update(role=role, resumable=resumable or role == "location")
    if isinstance(default, (list, dict)):  # a mutable default needs a factory
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _bound_errors(name: str, value: Any, meta: dict[str, Any]) -> list[str]:
    values = value if isinstance(value, (tuple, list)) else (value,)
    checks = [
        ("min", ">=", lambda v, b: v >= b),
        ("max", "<=", lambda v, b: v <= b),
        ("above", ">", lambda v, b: v > b),
        ("below", "<", lambda v, b: v < b),
    ]
    errors = []
    shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)  # as the flag takes it
    bounded = any(meta.get(key) is not None for key, _, _ in checks)
    nan = any(isinstance(v, float) and math.isnan(v) for v in values)
    infinite = bounded and meta.get("finite", True) and any(isinstance(v, float) and math.isinf(v) for v in values)
    if nan or infinite:
        return [f"{name} must be a finite number (got {shown})"]  # inf passes "> 0"; nan fails every bound
    for key, sign, ok in checks:
        bound = meta.get(key)
        if bound is not None and any(isinstance(v, (int, float)) and not ok(v, bound) for v in values):
            why = f": {meta['why']}" if meta.get("why") else ""
            errors.append(f"{name} must be {sign} {bound} (got {shown}){why}")
    return errors


def check_fields(obj: Any, what: str) -> None:
    """ConfigError naming the first field of ``obj`` outside its declared choices or bounds."""
    prefix = f"{what}: " if what else ""
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{prefix}{f.name} must be one of {', '.join(map(str, choices))} (got {value!r})")
        errors = _bound_errors(f.name, value, meta)
        if errors:
            raise ConfigError(prefix + errors[0])


def _coerce(cls: type, options: dict[str, Any], what: str = "") -> dict[str, Any]:
    """Values as the fields' types want them: JSON's lists become tuples, ints become floats; a value of the wrong
    type (``"2"`` for a float, ``"last"`` for a tuple of names) is a ConfigError naming the field."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in options.items():
        out[key] = _as_type(hints.get(key), value, f"{what}: {key}" if what else key)
    return out


def _as_type(hint: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args[-1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} takes a list (a tuple), e.g. [{value!r}]; got {value!r}")
        return tuple(_as_type(args[0], v, name) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {float: float, int: int, bool: bool, str: str}.get(hint)
    wrong = expected is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool)))
    if wrong:
        kind = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}[hint]
        raise ConfigError(f"{name} must be {kind}; got {value!r} ({type(value).__name__})")
    return value


def build_options(cls: type, options: dict[str, Any], what: str, check_unread: bool = True) -> Any:
    """Instantiate the options dataclass ``cls`` from a dict, checked; an unknown key lists the valid ones. With
    ``check_unread`` an option the object's ``unread()`` names (one its other choices make it ignore) is refused;
    ``resolve_config`` passes False and judges every kind of unread option in one place."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        valid = ", ".join(sorted(names)) or "(none)"
        raise ConfigError(f"{what} has no option {', '.join(unknown)}; its options are: {valid}")
    obj = cls(**_coerce(cls, options, what))
    check_fields(obj, what)
    relate = getattr(obj, "validate", None)  # checks that relate two fields
    if relate:
        relate()
    unread = getattr(obj, "unread", None)
    first = next(iter(unread().values()), None) if unread and check_unread else None
    if first:
        raise ConfigError(f"{what}: {first.refusal()}" if what else first.refusal())
    return obj


def unchecked_options(cls: type, options: dict[str, Any]) -> Any:
    """The options object as given, typed but not checked (to ask it what it would not read)."""
    return cls(**_coerce(cls, options))


def resolved(obj: Any) -> dict[str, Any]:
    """Every field of an options object, defaults included, as plain values."""
    return dataclasses.asdict(obj)


class Unread(NamedTuple):
    """An option given a value the run would not read: what is wrong, and what to do. A fresh run is refused with
    ``refusal``; a resumed one, whose saved settings an earlier version let through, is warned (``build``)."""

    problem: str
    fix: str

    def refusal(self) -> str:
        return f"{self.problem}: {self.fix}"


def flags(names: list[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def changed(obj: Any, names: Any = None) -> list[str]:
    """The fields of the dataclass ``obj`` (among ``names``, if given) whose value is not their default."""
    return [
        f.name
        for f in dataclasses.fields(obj)
        if (names is None or f.name in names) and getattr(obj, f.name) != default_of(f)
    ]


def unread_train_options(config: TrainConfig) -> dict[str, Unread]:
    """Training settings given a value that the chosen optimizer or schedule does not read, by field name."""
    unread = {}
    if config.momentum and config.optimizer != "sgd":
        unread["momentum"] = Unread(
            f"momentum is SGD's (--optimizer sgd); {config.optimizer} has its own moments", "drop --momentum"
        )
    if config.lr_milestones and config.lr_schedule != "step":
        unread["lr_milestones"] = Unread(
            f"lr_milestones apply to --lr-schedule step only (got {config.lr_schedule})",
            "drop --lr-milestones, or use --lr-schedule step",
        )
    adam = changed(config, {f.name for f in dataclasses.fields(config) if f.name.startswith("adam_")})
    if adam and config.optimizer != "adam":
        one = len(adam) == 1
        note = Unread(
            f"{flags(adam)} {'is an option' if one else 'are options'} of Adam (--optimizer adam), which "
            f"{config.optimizer} does not read",
            f"drop {'it' if one else 'them'}",
        )
        unread.update(dict.fromkeys(adam, note))
    return unread


def unread_nudged_options(rule_name: str, rule_nudges: bool, arch_name: str, arch_config: Any) -> dict[str, Unread]:
    """Architecture options marked ``nudged`` (read only by a nudged phase, such as an energy net's
    ``nudged_steps``) that differ from their default while the rule runs no nudged phase: backprop through an
    energy net's free phase would otherwise train as if they were not there."""
    nudged = {f.name for f in dataclasses.fields(arch_config) if f.metadata.get("nudged")}
    names = [] if rule_nudges else changed(arch_config, nudged)
    if not names:
        return {}
    one = len(names) == 1
    note = Unread(
        f"{flags(names)} set{'s' if one else ''} the nudged phase of {arch_name}, which rule {rule_name!r} does not "
        "run (it trains through the free phase only)",
        f"drop {'it' if one else 'them'}, or use a rule with a nudged phase (ep)",
    )
    return dict.fromkeys(names, note)


def fields_with(cls: type, role: str) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("role", "setting") == role]


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved whole (resolved) as ``config.json`` in the run folder."""

    rule: str = option("bp", "learning rule (see `bioplausible list rules`)")
    arch: str = option("mlp", "architecture (see `bioplausible list archs`)")
    dataset: str = option("digits", "dataset (see `bioplausible list datasets`); digits needs no download")
    data_dir: str | None = option(
        None, "where datasets live (default: $BIOPLAUSIBLE_DATA, else ~/.cache/bioplausible)", role="location"
    )
    download: bool = option(True, "download a missing dataset from its official source", role="location")
    epochs: int = option(10, "number of passes over the training set", min=1, resumable=True)
    batch_size: int = option(64, "training mini-batch size (the global size under torchrun)", min=1)
    eval_batch_size: int = option(1000, "batch size for evaluation", min=1, role="location")
    lr: float = option(1e-3, "learning rate of the forward weights", above=0)
    optimizer: str = option("adam", "optimizer applied to the gradients the rule leaves", choices=("adam", "sgd"))
    lr_schedule: str = option(
        "constant",
        "learning-rate schedule over epochs: constant, cosine decay to 0, or step decay (×0.1 at lr_milestones)",
        choices=("constant", "cosine", "step"),
    )
    lr_milestones: tuple[int, ...] = option(
        (), "epochs after which the step schedule multiplies the rate by 0.1 (e.g. 100,150)", min=1
    )
    momentum: float = option(0.0, "SGD momentum", min=0, below=1)
    weight_decay: float = option(0.0, "L2 weight decay (added by the optimizer)", min=0)
    adam_beta1: float = option(0.9, "Adam beta1", min=0, below=1)
    adam_beta2: float = option(0.999, "Adam beta2", min=0, below=1)
    adam_eps: float = option(1e-8, "Adam epsilon", above=0)
    augment: bool = option(True, "use the dataset's standard training augmentation, if it has one (cifar10, imagenet)")
    loss: str = option(
        "ce",
        "the training loss of feed-forward rules and the test loss of every run: cross-entropy or squared error "
        "to one-hot targets (energy-based rules train on their own cost: see their --cost)",
        choices=("ce", "mse"),
    )
    init: str = option(
        "default",
        "weight initialisation: the architecture's own (default), or re-drawn lecun / xavier / orthogonal",
        choices=("default", "lecun", "xavier", "orthogonal"),
    )
    precision: str = option(
        "fp32",
        "fp32, or the forward and every rule's backward under torch.autocast in bf16, or fp16 (CUDA only, with a "
        "loss scaler)",
        choices=("fp32", "bf16", "fp16"),
    )
    channels_last: bool = option(
        False, "store image batches and conv weights channels-last (faster convs on some CPUs)"
    )
    tf32: bool = option(False, "allow TF32 matmuls and convolutions on CUDA (off: full fp32)")
    seed: int = option(0, "random seed: fixes initialisation, feedback matrices and data order", min=0)
    device: str = option(
        "auto", "where to train: auto picks cuda when available", choices=("auto", "cpu", "cuda"), role="location"
    )
    out: str | None = option(None, "run folder (default: runs/<dataset>-<arch>-<rule>-s<seed>-<time>)", role="location")
    resume: bool = option(
        False, "continue the run in --out from its last checkpoint (its saved settings are used)", role="location"
    )
    val_fraction: float = option(0.0, "fraction of the training set held out for validation (0: none)", min=0, below=1)
    patience: int = option(0, "early stopping: epochs without validation improvement before stopping (0: off)", min=0)
    max_batches: int = option(0, "train on at most this many batches per epoch (0: all), for quick checks", min=0)
    max_steps: int = option(
        0,
        "train for this many optimizer steps in all (0: off); sets the number of epochs to what they need",
        min=0,
        resumable=True,
    )
    eval_steps: tuple[int, ...] = option(
        (),
        "also evaluate on the test set after these global steps (mid-epoch), e.g. early-stopping points",
        min=1,
        resumable=True,
    )
    probe_every: int = option(
        1, "log alignment and gradient-norm probes every N epochs (0: never)", min=0, role="location"
    )
    probe_batch_size: int = option(256, "batch size the probes use", min=1, role="location")
    diverge_factor: float = option(
        100.0,
        "the run diverged when the loss exceeds this times the chance-level loss (or becomes NaN/inf; inf: never)",
        above=1,
        finite=False,
    )
    threads: int = option(
        0,
        "CPU threads for torch (0: auto: one for small models or a busy machine, else the idle cores)",
        min=0,
        role="location",
    )
    progress: bool = option(True, "show a progress bar on a terminal", role="location")
    rule_options: dict = option({}, "options of the rule (see `bioplausible train --rule NAME --help`)")
    arch_options: dict = option({}, "options of the architecture (see `bioplausible train --arch NAME --help`)")
    dataset_options: dict = option({}, "options of the dataset (see `bioplausible train --dataset NAME --help`)")
    # facts: written by the engine into config.json, never set by a user (dropped when a config is reused)
    version: str | None = option(
        None, "bioplausible version that started the run (drew its weights); summary.json: the last", role="fact"
    )
    torch_version: str | None = option(None, "torch version that ran it", role="fact")
    device_used: str | None = option(None, "the device it ran on", role="fact")
    world_size: int | None = option(None, "number of data-parallel processes", role="fact")
    threads_used: int | None = option(None, "CPU threads torch used", role="fact")
    backends: dict | None = option(None, "matmul / cuDNN TF32 flags and memory format in effect", role="fact")
    data_source: dict | None = option(None, "what the dataset loader read (layout, folder, description)", role="fact")
    augmentation: str | None = option(
        None, "the training augmentation in effect (none: --no-augment, or the dataset has none)", role="fact"
    )

    def validate(self) -> None:
        """Raise ConfigError for a setting out of range or not among its choices, naming the setting."""
        check_fields(self, "")
        if self.lr_schedule == "step" and not self.lr_milestones:
            raise ConfigError("lr_schedule step needs lr_milestones (e.g. --lr-milestones 100,150)")
        if any(b <= a for a, b in zip(self.lr_milestones, self.lr_milestones[1:])):  # a repeat decays twice at once
            raise ConfigError(f"lr_milestones must be strictly increasing epochs (got {self.lr_milestones})")
        if self.patience and not self.val_fraction:  # early stopping would take a split nobody asked for
            raise ConfigError("patience needs a validation split to stop on: give --val-fraction (e.g. 0.1)")
        if list(self.eval_steps) != sorted(set(self.eval_steps)):
            raise ConfigError(f"eval_steps must increase, each step once (got {','.join(map(str, self.eval_steps))})")
        late = [s for s in self.eval_steps if self.max_steps and s > self.max_steps]
        if late:  # they would silently never be evaluated
            raise ConfigError(
                f"eval_steps {', '.join(map(str, late))} come after max_steps {self.max_steps}; raise --max-steps "
                "or drop them"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def settings(self) -> dict[str, Any]:
        """The fields that define the experiment (role ``setting``), options dicts included."""
        return {k: v for k, v in self.to_dict().items() if k in SETTINGS}

    @classmethod
    def from_dict(cls, data: dict[str, Any], drop_facts: bool = False) -> TrainConfig:
        """A config from ``config.json``-style data; ``drop_facts`` forgets what a previous run recorded."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if drop_facts:
            data = {k: v for k, v in data.items() if k not in FACTS}
        return cls(**_coerce(cls, data))


SETTINGS = frozenset(fields_with(TrainConfig, "setting"))
FACTS = frozenset(fields_with(TrainConfig, "fact"))
RESUMABLE = frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"])
# Fields (and run facts) that say where and how a run was executed, not what it computed: two runs that differ only
# in these are the same experiment (reports and study results leave them out).
NOT_SETTINGS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - SETTINGS
