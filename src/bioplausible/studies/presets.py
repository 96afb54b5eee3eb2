"""The four seed studies as sweep specs (data, not code), each at two budgets.

``paper`` uses the published settings as far as the papers state them; ``small`` finishes on 2 CPU cores within
about an hour and says in its ``notes`` what it reduced, so a report never passes a small study off as the paper's.
Rules or architectures that are not registered yet are left out with a "not yet available" message
(``available_spec``); the rest of the study runs.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ConfigError

BUDGETS = ("small", "paper")
EARLY_STOP_SMALL = {"val_fraction": 0.1, "patience": 3}
EARLY_STOP_PAPER = {"val_fraction": 0.1, "patience": 10}
SIGN_RULES = ["usf", "frsf", "brsf", "fa"]


def _skip_connections(budget: str) -> dict[str, Any]:
    small = budget == "small"
    rules = ["bp", "fa", "dtp"]
    axes = {
        "rule": rules,
        "arch_options.depth": [3, 5, 7] if small else [3, 4, 5, 6, 7],
        "arch_options.activation": ["sigmoid", "relu"],
        "lr": [1e-3, 1e-2] if small else [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    }
    return {
        "name": f"skip-connections-{budget}",
        "notes": (
            "Im, Patil, Branson: NN vs DN on MNIST, every configuration's accuracy sorted best to worst. "
            + (
                "SMALL budget, reduced honestly: the 8x8 digits set (1437 train images) instead of MNIST; depths "
                "3, 5, 7 instead of 3-7; two learning rates (1e-3, 1e-2); width 64 (MLPs) and 16 channels "
                "(ConvNets); at most 15 epochs with early stopping (patience 3 on a 10 % validation split)."
                if small
                else "PAPER budget: MNIST, depth 3-7, five learning rates, width 256, up to 100 epochs with early "
                "stopping (patience 10 on a 10 % validation split)."
            )
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "epochs": 15 if small else 100,
            "batch_size": 64,
            "optimizer": "adam",
            **(EARLY_STOP_SMALL if small else EARLY_STOP_PAPER),
        },
        "grid": [
            {"arch": ["mlp", "dense-mlp"], **axes, "arch_options.width": [64 if small else 256]},
            {"arch": ["convnet", "dense-convnet"], **axes, "arch_options.channels": [16 if small else 32]},
        ],
        "seeds": [0],
    }


def _bartunov2018(budget: str) -> dict[str, Any]:
    small = budget == "small"
    tp = ["dtp", "sdtp", "aosdtp"]
    return {
        "name": f"bartunov2018-{budget}",
        "notes": (
            "Bartunov et al. 2018, Table 1: MNIST, FC 5x256 tanh and locally connected nets, random search per "
            "method over lr and Adam beta2/eps, and for the TP rules over alpha, noise (their ranges) and the "
            "inverse lr (log-uniform in [3e-4, 3e-2]: this library's range, where its own search found the stable "
            "alternating configurations; the rules without inverses ignore these). LeCun-normal initialisation "
            "(std 1/sqrt(fan_in), the variance-preserving kind of the TensorFlow codebases of the time): with "
            "PyTorch's default the top hidden layers of the 5x256 tanh net carry less signal than TP's noise. "
            + (
                "SMALL budget: the digits set instead of MNIST, 4 random configurations per (net, rule, schedule) "
                "instead of 60, 50 epochs instead of 500, the FC net only (LC nets are too slow for an hour on "
                "2 cores)."
                if small
                else "PAPER budget: MNIST, 60 configurations per method, 500 epochs (best test error)."
            )
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "epochs": 50 if small else 500,
            "batch_size": 64 if small else 128,
            "optimizer": "adam",
            "init": "lecun",
            "arch_options": {},
        },
        "grid": [
            {
                "arch": ["mlp"],
                "rule": ["bp", "fa", "dfa"],
                "arch_options.depth": [5],
                "arch_options.width": [256],
                "arch_options.activation": ["tanh"],
            },
            {
                "arch": ["mlp"],
                "rule": tp,
                "rule_options.schedule": ["parallel", "alternating"],
                "arch_options.depth": [5],
                "arch_options.width": [256],
                "arch_options.activation": ["tanh"],
            },
        ]  # fmt: skip
        + (
            []
            if small
            else [
                {"arch": ["lc-net"], "rule": ["bp", "fa", "dfa"]},
                {"arch": ["lc-net"], "rule": tp, "rule_options.schedule": ["parallel", "alternating"]},
            ]
        ),
        "random": {
            "n_trials": 4 if small else 60,
            "sampler": "random",
            "params": {
                "lr": {"low": 1e-5, "high": 3e-4, "log": True},
                "adam_beta2": {"choices": [0.99, 0.999]},
                "adam_eps": {"choices": [1e-4, 1e-6, 1e-8]},
                "rule_options.alpha": {"low": 0.01, "high": 0.2},
                "rule_options.noise": {"low": 0.01, "high": 0.3},
                "rule_options.inverse_lr": {"low": 3e-4, "high": 3e-2, "log": True},
            },
            "seed": 2018,
        },
        "seeds": [0],
    }


def _sign_symmetry(budget: str) -> dict[str, Any]:
    small = budget == "small"
    return {
        "name": f"sign-symmetry-{budget}",
        "notes": (
            "Xiao et al. 2018: BP, sign symmetry (uSF, frSF, brSF) and FA on a ResNet, last layer by BP or not; "
            "the report shows the alignment angles over training. "
            + (
                "SMALL budget: ResNet-20 at a quarter width on the 8x8 digits set, 30 epochs, Adam, instead of "
                "ResNet-18 on ImageNet."
                if small
                else "PAPER budget: ResNet-18 on ImageNet, SGD with momentum, 90 epochs, cosine schedule."
            )
        ),
        "base": {
            "dataset": "digits" if small else "imagenet",
            "arch": "resnet20" if small else "resnet18",
            "arch_options": {"width_multiplier": 0.25} if small else {},
            "epochs": 30 if small else 90,
            "batch_size": 64 if small else 256,
            "optimizer": "adam" if small else "sgd",
            "lr": 1e-3 if small else 0.1,
            "momentum": 0.0 if small else 0.9,
            "weight_decay": 0.0 if small else 1e-4,
            "lr_schedule": "constant" if small else "cosine",
        },
        "grid": [{"rule": ["bp"]}, {"rule": SIGN_RULES, "rule_options.bp_layers": [[], ["fc"]]}],
        "seeds": [0],
    }


def _layer_skipping_ep(budget: str) -> dict[str, Any]:
    small = budget == "small"
    depth = 5
    scales = [4.0**-i for i in range(depth + 1)]  # Gammell's factor 4 per layer, first hidden layer fastest
    return {
        "name": f"layer-skipping-ep-{budget}",
        "notes": (
            "Gammell et al. 2020: EP on a 100x5 layered energy net with one global lr, with per-layer lrs, and "
            "with small-world layer-skipping connections over p in {0.004, 0.016, 0.04, 0.1} (global lr). "
            "The per-layer scales (factor 4 per layer) extend Gammell's 3-layer schedule to 5 layers. "
            + (
                "SMALL budget: the 8x8 digits set (1437 train images) instead of MNIST; 40 epochs, i.e. about "
                "2,900 steps of batch 20 against the 30,000 of Gammell's 10-epoch MNIST p-sweep; at most 200 free / "
                "12 nudged settling steps with tolerance 1e-4 instead of 1000 / 12; one seed."
                if small
                else "PAPER budget: MNIST, 100 epochs, 1000 free / 12 nudged settling steps."
            )
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "arch": "energy-net",
            "rule": "ep",
            "epochs": 40 if small else 100,
            "batch_size": 20,
            "optimizer": "sgd",
            "loss": "mse",
            "rule_options": {"beta": 1.0, "nudging": "random-sign"},
            "arch_options": {
                "hidden_sizes": [100] * depth,
                "epsilon": 0.5,
                "free_steps": 200 if small else 1000,
                "nudged_steps": 12,
                "a": 0.168,
            },
        },
        "grid": [
            {"arch_options.topology": ["layered"], "lr": [0.015]},
            {"arch_options.topology": ["layered"], "lr": [0.128], "rule_options.layer_lr_scale": [scales]},
            {"arch_options.topology": ["skip"], "arch_options.p": [0.004, 0.016, 0.04, 0.1], "lr": [0.015]},
        ],
        "seeds": [0],
    }


PRESETS = {
    "skip-connections": _skip_connections,
    "bartunov2018": _bartunov2018,
    "sign-symmetry": _sign_symmetry,
    "layer-skipping-ep": _layer_skipping_ep,
}


def preset_spec(name: str, budget: str = "small") -> dict[str, Any]:
    """The spec of a preset at a budget (a fresh copy: callers may change it)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(PRESETS)}")
    if budget not in BUDGETS:
        raise ConfigError(f"budget must be one of {', '.join(BUDGETS)} (got {budget!r})")
    return copy.deepcopy(PRESETS[name](budget))


def available_spec(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The spec without the rules and architectures that are not registered; and a message for each left out.

    Returns ``None`` for the spec when nothing of it can run.
    """
    from ..cli import _load_registries
    from ..registry import ARCHS, RULES

    _load_registries()
    spec = copy.deepcopy(spec)
    base = spec.get("base", {})
    missing: dict[str, set[str]] = {"rule": set(), "arch": set()}
    registries = {"rule": RULES, "arch": ARCHS}
    grids = spec.get("grid", {})
    kept = []
    for grid in grids if isinstance(grids, list) else [grids]:
        grid = dict(grid)
        for kind, registry in registries.items():
            if kind in grid:
                missing[kind] |= {v for v in grid[kind] if v not in registry}
                grid[kind] = [v for v in grid[kind] if v in registry]
            elif base.get(kind) is not None and base[kind] not in registry:
                missing[kind].add(base[kind])
                grid[kind] = []
        if all(grid.get(k, [None]) for k in registries):
            kept.append(grid)
    messages = [
        f"{kind} {name!r} is not yet available; the study runs without it (available: {', '.join(registries[kind])})"
        for kind in registries
        for name in sorted(missing[kind])
    ]
    if not kept:
        return None, messages
    spec["grid"] = kept if isinstance(grids, list) else kept[0]
    return spec, messages
