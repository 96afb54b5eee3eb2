"""Typed configuration. Each field's ``help`` becomes the CLI help; ``TrainConfig`` is saved with every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


def option(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with CLI help (and optional choices) attached as metadata."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):  # a mutable default needs a factory
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def build_options(cls: type, options: dict[str, Any], what: str) -> Any:
    """Instantiate the options dataclass ``cls`` from a dict; an unknown key lists the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        valid = ", ".join(sorted(names)) or "(none)"
        raise ConfigError(f"{what} has no option {', '.join(unknown)}; its options are: {valid}")
    obj = cls(**options)
    check = getattr(obj, "validate", None)
    if check:
        check()
    return obj


# Config fields (and run facts) that say where and how a run was executed, not what it computed: two runs that
# differ only in these are the same experiment (reports and study results leave them out).
NOT_SETTINGS = frozenset({
    "out", "resume", "progress", "device", "threads", "data_dir", "download", "version", "device_used",
    "world_size", "eval_batch_size", "probe_every", "probe_batch_size",
})  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run folder."""

    rule: str = option("bp", "learning rule (see `bioplausible list rules`)")
    arch: str = option("mlp", "architecture (see `bioplausible list archs`)")
    dataset: str = option("digits", "dataset (see `bioplausible list datasets`); digits needs no download")
    data_dir: str | None = option(None, "where datasets live (default: $BIOPLAUSIBLE_DATA, else ~/.cache/bioplausible)")
    download: bool = option(True, "download a missing dataset from its official source")
    epochs: int = option(10, "number of passes over the training set")
    batch_size: int = option(64, "training mini-batch size")
    eval_batch_size: int = option(1000, "batch size for evaluation")
    lr: float = option(1e-3, "learning rate of the forward weights")
    optimizer: str = option("adam", "optimizer applied to the gradients the rule leaves", choices=("adam", "sgd"))
    lr_schedule: str = option(
        "constant", "learning-rate schedule over epochs: constant, or cosine decay to 0", choices=("constant", "cosine")
    )
    momentum: float = option(0.0, "SGD momentum")
    weight_decay: float = option(0.0, "L2 weight decay (added by the optimizer)")
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_beta2: float = option(0.999, "Adam beta2")
    adam_eps: float = option(1e-8, "Adam epsilon")
    augment: bool = option(True, "use the dataset's standard training augmentation, if it has one (cifar10, imagenet)")
    loss: str = option(
        "ce", "output loss: cross-entropy or mean squared error on one-hot targets", choices=("ce", "mse")
    )
    init: str = option(
        "default",
        "weight initialisation: the architecture's own (default), or re-drawn lecun / xavier / orthogonal",
        choices=("default", "lecun", "xavier", "orthogonal"),
    )
    seed: int = option(0, "random seed: fixes initialisation, feedback matrices and data order")
    device: str = option("auto", "where to train: auto picks cuda when available", choices=("auto", "cpu", "cuda"))
    out: str | None = option(None, "run folder (default: runs/<dataset>-<arch>-<rule>-s<seed>-<time>)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    val_fraction: float = option(0.0, "fraction of the training set held out for validation (0: none)")
    patience: int = option(0, "early stopping: epochs without validation improvement before stopping (0: off)")
    max_batches: int = option(0, "train on at most this many batches per epoch (0: all), for quick checks")
    max_steps: int = option(
        0, "train for this many optimizer steps in all (0: off); sets the number of epochs to what they need"
    )
    eval_steps: tuple[int, ...] = option(
        (), "also evaluate on the test set after these global steps (mid-epoch), e.g. early-stopping points"
    )
    probe_every: int = option(1, "log alignment and gradient-norm probes every N epochs (0: never)")
    probe_batch_size: int = option(256, "batch size the probes use")
    diverge_factor: float = option(100.0, "the run diverged when the loss exceeds this times its initial value")
    threads: int = option(0, "CPU threads for torch (0: torch's default)")
    progress: bool = option(True, "show a progress bar on a terminal")
    rule_options: dict = option({}, "options of the rule (see `bioplausible train --help`)")
    arch_options: dict = option({}, "options of the architecture (depth, width, activation, ...)")

    def validate(self) -> None:
        """Raise ConfigError for a setting out of range, naming the setting and the valid range."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})"),
            (self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1 (got {self.eval_batch_size})"),
            (0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1) (got {self.val_fraction})"),
            (self.patience >= 0, f"patience must be >= 0 (got {self.patience})"),
            (self.max_batches >= 0, f"max_batches must be >= 0 (got {self.max_batches})"),
            (self.max_steps >= 0, f"max_steps must be >= 0 (got {self.max_steps})"),
            (all(s >= 1 for s in self.eval_steps), f"eval_steps must be >= 1 (got {self.eval_steps})"),
            (self.probe_every >= 0, f"probe_every must be >= 0 (got {self.probe_every})"),
            (self.diverge_factor > 1, f"diverge_factor must be > 1 (got {self.diverge_factor})"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})"),
        ]
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            checks.append(
                (not choices or value in choices, f"{f.name} must be one of {', '.join(choices or ())} (got {value!r})")
            )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)
