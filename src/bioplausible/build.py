"""One builder for every entry point: ``resolve_config`` fills in every default, ``build`` makes the training state.

``fit`` (the engine), ``bench``, the scripts in ``benchmarks/`` and the sweeps all build a run the same way:

    config = resolve_config(config)          # every option of the rule, architecture and dataset, checked
    state = build(config, data, device)       # model, rule, optimizer, generator: one TrainState

so what a benchmark times is what a run trains, and a run's ``config.json`` holds every value that made it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .archs import ARCHS, create_arch
from .archs.init import initialize
from .config import (
    TrainConfig,
    Unread,
    build_options,
    default_of,
    resolved,
    unchecked_options,
    unread_nudged_options,
    unread_train_options,
)
from .distributed import SINGLE, Distributed
from .errors import ConfigError
from .optim import adam
from .registry import dataset_defaults
from .rules import RULES, Rule, create_rule

SMALL_MODEL_MACS = 5_000_000  # multiply-adds per example below which one CPU thread is fastest


def resolve_config(config: TrainConfig, saved: dict[str, Any] | None = None) -> TrainConfig:
    """A copy of ``config`` with the rule's, architecture's and dataset's options resolved: every field present
    with its default, every value checked (ConfigError naming the option otherwise).

    An option given a value the run would not read (``unread_options``) is refused, unless ``saved`` (the
    config.json of the run being resumed) holds the same value: an earlier version let it through, so the run
    continues with a warning."""
    config.validate()
    rule = RULES.get(config.rule)
    arch = ARCHS.get(config.arch)
    judge_unread(unread_options(config), config, saved)  # all at once, before the architecture's relational checks
    rule_options = resolved(build_options(rule.Config, config.rule_options, f"rule {config.rule!r}"))
    arch_config = build_options(arch.Config, config.arch_options, f"architecture {config.arch!r}", check_unread=False)
    arch_options = resolved(arch_config)
    defaults = dataset_defaults(config.dataset)
    unknown = sorted(set(config.dataset_options) - set(defaults))
    if unknown:
        raise ConfigError(
            f"dataset {config.dataset!r} has no option {', '.join(unknown)}; its options are: "
            f"{', '.join(sorted(defaults)) or '(none)'}"
        )
    dataset_options = {**defaults, **config.dataset_options}
    return dataclasses.replace(
        config, rule_options=rule_options, arch_options=arch_options, dataset_options=dataset_options
    )


def unread_options(config: TrainConfig) -> dict[str, Unread]:
    """The settings of ``config`` given a value the run would not read, by dotted key (``adam_eps``,
    ``arch_options.nudged_steps``): Adam's options under SGD, an energy net's nudged-phase options under a rule
    without a nudged phase, ω without block settling, ... The options are read as given, not checked. The one place
    that says what a run ignores: ``resolve_config`` refuses these, the sweeps drop the drawn ones, ``bench``
    leaves them out of the reference rule."""
    unread = dict(unread_train_options(config))
    rule, arch = RULES.get(config.rule), ARCHS.get(config.arch)
    if config.precision != "fp32" and (rule.full_precision or arch.full_precision):
        who = f"rule {config.rule!r}" if rule.full_precision else f"architecture {config.arch!r}"
        unread["precision"] = Unread(
            f"{who} computes in the parameters' dtype (fp32) whatever --precision says (got {config.precision}: a "
            "16-bit state cannot resolve the settling tolerance)",
            "drop --precision",
        )
    try:
        given = unchecked_options(arch.Config, config.arch_options)
    except (TypeError, ConfigError):  # an unknown or mistyped option: build_options says which
        return unread
    nudged = unread_nudged_options(config.rule, rule.nudges, config.arch, given)
    unread.update({f"arch_options.{k}": v for k, v in nudged.items()})
    what = f"architecture {config.arch!r}: "
    own = getattr(given, "unread", dict)()
    unread.update({f"arch_options.{k}": Unread(what + v.problem, v.fix) for k, v in own.items()})
    try:  # a rule's options that relate to each other (dtp's alpha under the label target)
        rule_given = unchecked_options(rule.Config, config.rule_options)
    except (TypeError, ConfigError):
        return unread
    what = f"rule {config.rule!r}: "
    own = getattr(rule_given, "unread", dict)()
    unread.update({f"rule_options.{k}": Unread(what + v.problem, v.fix) for k, v in own.items()})
    return unread


def judge_unread(unread: dict[str, Unread], config: TrainConfig, saved: dict[str, Any] | None) -> None:
    """Refuse the unread options, all in one line; those the resumed run's ``saved`` config holds with the same
    value are warned about instead."""
    given = json.loads(json.dumps(config.to_dict()))
    kept = {key for key in unread if saved is not None and dotted(saved, key) == dotted(given, key)}
    refused = list(dict.fromkeys(note for key, note in unread.items() if key not in kept))
    if refused:
        raise ConfigError("; ".join(note.refusal() for note in refused))
    for note in dict.fromkeys(unread.values()):
        warnings.warn(f"{note.problem}; the saved run holds it, and it still has no effect", UserWarning, stacklevel=3)


def dotted(data: dict[str, Any], key: str) -> Any:
    group, _, name = key.partition(".")
    return (data.get(group) or {}).get(name) if name else data.get(group)


def without_unread(config: TrainConfig) -> TrainConfig:
    """``config`` without the options it would not read (``unread_options``), dropped until none is left (leaving
    out ``nudged_settle`` can leave ``epsilon`` unread), e.g. bench's bp reference beside EP on one energy net; an
    unreadable config is returned as it is (``resolve_config`` then says why)."""
    while True:
        try:
            keys = list(unread_options(config))
        except (TypeError, ConfigError):
            return config
        if not keys:
            return config
        config = without_keys(config, keys)


def without_keys(config: TrainConfig, keys: list[str]) -> TrainConfig:
    """``config`` with the dotted ``keys`` at their defaults (a top-level field) or left out (an option)."""
    groups = {group: dict(getattr(config, group)) for group in ("rule_options", "arch_options")}
    top = {}
    for key in keys:
        group, _, name = key.partition(".")
        if name:
            groups[group].pop(name, None)
        else:
            top[key] = default_of(next(f for f in dataclasses.fields(config) if f.name == key))
    return dataclasses.replace(config, **groups, **top)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """cpu, or this process's GPU (``local_rank`` under torchrun); auto picks cuda when there is one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but PyTorch sees no CUDA device; use --device cpu (or auto)")
    return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def precision_context(config: TrainConfig, device: torch.device):
    """``torch.autocast`` for bf16/fp16 (the forward and every rule's backward run in it), else a no-op."""
    if config.precision == "fp32":
        return nullcontext()
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device (it trains with a loss scaler); on the CPU use bf16")
    dtype = torch.bfloat16 if config.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def set_backends(config: TrainConfig) -> dict[str, Any]:
    """Apply the TF32 switches (off unless asked) and return what is in effect, for config.json."""
    torch.backends.cuda.matmul.allow_tf32 = config.tf32
    torch.backends.cudnn.allow_tf32 = config.tf32
    return {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "memory_format": "channels_last" if config.channels_last else "contiguous",
        "precision": config.precision,
    }


def macs_per_example(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one forward pass per example, counted on the weight layers (an estimate for threads)."""
    total = 0

    def count(module, args, output):
        nonlocal total
        if isinstance(output, torch.Tensor) and getattr(module, "weight", None) is not None:
            per_output = module.weight[0].numel() if module.weight.dim() >= 2 else 1
            total += output[0].numel() * per_output

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    was = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()(example[:1])
    except Exception:  # noqa: BLE001  (an energy net or a custom model: any estimate is better than none)
        total = SMALL_MODEL_MACS
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return total


def auto_threads(model: nn.Module, example: torch.Tensor, workers: int = 1) -> int:
    """CPU threads for one process: 1 for a small model (per-operation overhead dominates, and more threads only
    wait on each other), else the cores not already busy (load average), shared among ``workers`` processes."""
    cores = os.cpu_count() or 1
    if macs_per_example(model, example) < SMALL_MODEL_MACS:
        return 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy) // workers)


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The learning-rate multiplier of epoch ``epoch`` (0-based): a pure function of the epoch and the
    configuration, so a resumed run (even one given more epochs) follows the schedule it states."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    if config.lr_schedule == "step":
        return 0.1 ** sum(epoch >= m for m in config.lr_milestones)
    return 1.0


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return adam(
        params,
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )


@dataclass
class TrainState:
    """A run's whole training state, saved and restored as one object (``checkpoint.pt``).

    ``loop`` is the engine's bookkeeping (epoch, step, best accuracy, ...); ``generator`` orders the data.
    """

    model: nn.Module
    rule: Rule
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    device: torch.device
    scaler: Any = None  # torch.amp.GradScaler for fp16
    loop: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: weights, optimizer and rule state, every RNG stream."""
        cuda = self.device.type == "cuda"
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rule": self.rule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "state": dict(self.loop),
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.generator.get_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
            },
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.rule.load_state_dict(ckpt["rule"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.loop = dict(ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.generator.set_state(ckpt["rng"]["shuffle"])
        if self.device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)


def build(config: TrainConfig, data, device: torch.device | str = "cpu", dist: Distributed = SINGLE) -> TrainState:
    """Model, rule and optimizer for a resolved ``config`` on ``data`` (already on ``device``), seeded.

    The seed fixes the initialisation, every random feedback matrix and the data order."""
    device = torch.device(device)
    seed_everything(config.seed)
    model = create_arch(config.arch, data.input_shape, data.num_classes, check_unread=False, **config.arch_options)
    model = initialize(model, config.init).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rule = create_rule(config.rule, loss=config.loss, **config.rule_options)
    rule.dist = dist
    rule.check_init(config.init, config.optimizer)
    rule.check_requirements(model)  # declared requirements are checked here, whatever prepare does
    model = rule.prepare(model, data.sample(2)[0].to(device))
    rule.mark_prepared(model)
    rule.to(device)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    generator = torch.Generator().manual_seed(config.seed)
    return TrainState(model, rule, make_optimizer(config, model), generator, device, scaler)
